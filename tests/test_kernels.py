"""The same numbers on any x86 CPU: with the pin, training and scoring compute with the same
kernels and threads whatever the CPU (or the user's environment) would pick, so the bytes of the
result are equal."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from facepruning.kernels import (
    LIFT_VARIABLE,
    PINNED,
    cpu_has,
    kernels_pinned,
    pin_cpu_kernels,
)

# MobileNetV2 has all the kinds of computation the pin covers: convolutions and depthwise
# convolutions (oneDNN), BatchNorm (ATen), a Linear head (MKL); the scores are numpy's (OpenBLAS).
TRAIN = """
import hashlib, io, sys
from facepruning.kernels import pin_cpu_kernels
pin_cpu_kernels()
import numpy as np
import torch
from facepruning.models import build_model
torch.manual_seed(0)
model = build_model("mobilenet_v2", num_classes=4).to(memory_format=torch.channels_last)
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
g = torch.Generator().manual_seed(1)
for _ in range(3):  # one short epoch
    x = torch.randn(8, 3, 64, 64, generator=g).to(memory_format=torch.channels_last)
    y = torch.randint(0, 4, (8,), generator=g)
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
buffer = io.BytesIO()
torch.save(model.state_dict(), buffer)
descriptors = np.random.default_rng(0).standard_normal((300, 1280))
scores = descriptors @ descriptors.T
print(torch.backends.cpu.get_cpu_capability(), torch.get_num_threads(),
      hashlib.sha256(buffer.getvalue()).hexdigest(), hashlib.sha256(scores.tobytes()).hexdigest())
"""

x86 = platform.machine().lower() in ("x86_64", "amd64")

# What two machines would pick: the first has no AVX-512, 1 core, and an MKL that cannot run its
# AVX2 branch (as on a non-Intel CPU); the second picks everything wide, with more threads.
NARROW_MACHINE = {
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
    "OPENBLAS_CORETYPE": "Sandybridge",
    "OMP_NUM_THREADS": "1",
}


# ATen dies of an illegal instruction when told to use AVX-512 on a CPU without it
WIDE_MACHINE = {
    "ATEN_CPU_CAPABILITY": "avx512" if cpu_has("avx512f", unknown=False) else "avx2",
    "OMP_NUM_THREADS": "4",
}


def _train(machine: dict[str, str], *, pinned: bool = True) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in (LIFT_VARIABLE, *PINNED)}
    env.update(machine)
    if not pinned:
        env[LIFT_VARIABLE] = "1"
    out = subprocess.run(
        [sys.executable, "-c", TRAIN], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.split()


@pytest.mark.skipif(not kernels_pinned(), reason="the pin is for x86 CPUs with AVX2")
def test_training_and_scores_on_two_machines_give_the_same_bytes_with_the_pin():
    narrow, wide = _train(NARROW_MACHINE), _train(WIDE_MACHINE)
    assert narrow[:2] == wide[:2] == ["AVX2", "2"]  # kernels and threads as pinned
    assert narrow[2:] == wide[2:]  # the trained weights and the scores, to the byte


@pytest.mark.skipif(not kernels_pinned(), reason="the pin is for x86 CPUs with AVX2")
def test_without_the_pin_the_two_machines_differ():
    """The pin is what makes them equal: the same two runs, lifted, train differently."""
    narrow, wide = _train(NARROW_MACHINE, pinned=False), _train(WIDE_MACHINE, pinned=False)
    assert narrow[0] != "AVX2" and narrow[1] == "1" and wide[1] != "1"
    assert narrow[2] != wide[2] and narrow[3] != wide[3]  # the weights and the scores


def test_the_command_line_pins_before_torch_and_numpy_load():
    """OpenMP and OpenBLAS read the pin only when they load, so the CLI must not load them first."""
    code = "import sys, facepruning.cli; print(sorted({'torch', 'numpy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_pin_can_be_lifted(monkeypatch):
    monkeypatch.setenv(LIFT_VARIABLE, "1")
    assert not kernels_pinned() and pin_cpu_kernels() == {}
    monkeypatch.delenv(LIFT_VARIABLE)
    for key in PINNED:  # set, then removed: monkeypatch restores the real state afterwards
        monkeypatch.setenv(key, "unset")
        monkeypatch.delenv(key)
    monkeypatch.setattr(sys, "modules", {k: v for k, v in sys.modules.items() if k != "torch"})
    if kernels_pinned():
        assert pin_cpu_kernels() == PINNED and all(os.environ[k] == v for k, v in PINNED.items())
