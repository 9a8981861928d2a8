"""The same numbers on any x86 CPU: with the pin, training computes with AVX2 kernels whatever
kernels the CPU (or the user's environment) would pick, so the bytes of the result are equal."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from facepruning.kernels import LIFT_VARIABLE, PINNED, kernels_pinned, pin_cpu_kernels

TRAIN = """
import hashlib, io, sys
from facepruning.kernels import pin_cpu_kernels
pin_cpu_kernels()
import torch
from facepruning.models import build_model
torch.manual_seed(0)
model = build_model("squeezenet", num_classes=4).to(memory_format=torch.channels_last)
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
g = torch.Generator().manual_seed(1)
for _ in range(3):  # one short epoch
    x = torch.randn(8, 3, 32, 32, generator=g).to(memory_format=torch.channels_last)
    y = torch.randint(0, 4, (8,), generator=g)
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
buffer = io.BytesIO()
torch.save(model.state_dict(), buffer)
print(torch.backends.cpu.get_cpu_capability(), hashlib.sha256(buffer.getvalue()).hexdigest())
"""

x86 = platform.machine().lower() in ("x86_64", "amd64")


def _train(capability: str) -> tuple[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (LIFT_VARIABLE, *PINNED)}
    env["ATEN_CPU_CAPABILITY"] = capability  # what the machine or the user would pick
    out = subprocess.run(
        [sys.executable, "-c", TRAIN], env=env, capture_output=True, text=True, check=True
    )
    capability_used, digest = out.stdout.split()
    return capability_used, digest


@pytest.mark.skipif(not x86, reason="the pin is for x86 CPUs")
def test_training_under_two_cpu_capabilities_gives_the_same_bytes_with_the_pin():
    used_default, default = _train("default")
    used_native, native = _train("avx512")
    assert used_default == used_native == "AVX2"
    assert default == native


def test_the_pin_can_be_lifted(monkeypatch):
    monkeypatch.setenv(LIFT_VARIABLE, "1")
    assert not kernels_pinned() and pin_cpu_kernels() == {}
    monkeypatch.delenv(LIFT_VARIABLE)
    for key in PINNED:
        monkeypatch.delenv(key, raising=False)
    if x86:
        assert pin_cpu_kernels() == PINNED and all(os.environ[k] == v for k, v in PINNED.items())
