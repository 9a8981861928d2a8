"""The same numbers on any x86 machine: every stage computes with fixed kernels and threads.

PyTorch, oneDNN, MKL and OpenBLAS pick the widest vector kernels the CPU offers, and OpenMP splits
reductions over as many threads as the CPU has cores. Either choice adds floating point numbers in
another order, so training on another CPU parts from the committed run in the first epoch and every
result file differs. :func:`pin_cpu_kernels` fixes both:

- ATen's dispatch (``ATEN_CPU_CAPABILITY``) and oneDNN's instruction set (``ONEDNN_MAX_CPU_ISA``):
  their AVX2 code on any x86 CPU that has AVX2;
- MKL, which computes torch's Linear layers (MobileNetV2's and ResNet50's classifiers): its one
  SSE2 code path (``MKL_CBWR=COMPATIBLE``). Its ``AVX2`` branch is not enough: MKL documents that
  on non-Intel CPUs only ``AUTO`` and ``COMPATIBLE`` apply, and runs ``AUTO`` otherwise.
  ``tests/test_kernels.py`` shows the difference with MKL restricted to SSE4.2. That fallback
  fits what was seen with the ``AVX2`` branch: MobileNetV2 and ResNet50 (Linear heads) trained
  differently on an AMD and an Intel CPU, SqueezeNet (no Linear layer) did not; no AMD CPU was
  at hand to rerun them since;
- numpy's OpenBLAS, which computes the similarity scores in float64: its AVX2 (``Haswell``)
  kernels, since its AVX-512 ones give other last bits, hence other bytes in every scores file;
- two intra-op threads (``PINNED_THREADS``, the cores of the machine that made the committed
  results): 1, 2 and 4 threads gave three different trainings of each network.

The libraries read these environment variables when they load (OpenBLAS, OpenMP) or first compute
(ATen, oneDNN, MKL). ``python -m facepruning`` pins before torch or numpy load (its command line
loads neither), and the kernels papermill starts inherit the pin. A script of your own calls
:func:`pin_cpu_kernels` before it imports torch or numpy; a torch already loaded still gets the
thread count. The pin needs AVX2 (every x86 CPU since 2015); without it, nothing is pinned.

Set ``FACEPRUNING_NATIVE_KERNELS=1`` to lift the pin for speed (a large machine, a GPU run): the
results are then reproducible on the same kind of CPU with the same core count only. GPUs are not
affected by the pin. oneDNN may still fit its blocking to the CPU's cache sizes; no setting fixes
that, and no run here has shown it to matter.
"""

from __future__ import annotations

import os
import platform
import sys

__all__ = [
    "PINNED",
    "PINNED_THREADS",
    "LIFT_VARIABLE",
    "pin_cpu_kernels",
    "kernel_settings",
    "kernels_pinned",
    "cpu_has",
]

PINNED_THREADS = 2
PINNED = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "COMPATIBLE",
    "OMP_NUM_THREADS": str(PINNED_THREADS),
    "MKL_NUM_THREADS": str(PINNED_THREADS),
    "OPENBLAS_CORETYPE": "Haswell",
}
LIFT_VARIABLE = "FACEPRUNING_NATIVE_KERNELS"


def cpu_has(flag: str, *, unknown: bool = True) -> bool:
    """Whether the CPU lists ``flag`` (e.g. ``avx2``) in /proc/cpuinfo; ``unknown`` where the
    file cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            return any(line.startswith("flags") and flag in line.split() for line in cpuinfo)
    except OSError:
        return unknown


def kernels_pinned() -> bool:
    """Whether this process pins the kernels: on an x86-64 CPU with AVX2, unless lifted."""
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    lifted = os.environ.get(LIFT_VARIABLE, "") in ("1", "true", "yes")
    return x86 and not lifted and cpu_has("avx2")


def pin_cpu_kernels() -> dict[str, str]:
    """Set the pin in this process's environment (what child processes inherit too) and its
    thread count in an already imported torch; returns what was set (nothing where the pin is
    lifted, or the CPU is not x86-64 or lacks AVX2)."""
    if not kernels_pinned():
        return {}
    os.environ.update(PINNED)
    if "torch" in sys.modules:  # OpenMP read its thread count when torch loaded
        sys.modules["torch"].set_num_threads(PINNED_THREADS)
    return dict(PINNED)


def kernel_settings() -> dict[str, str]:
    """The kernel settings this process computes with (the pinned variables as set, ``""`` where
    unset, and torch's thread count), for a run's identity: a checkpoint written under other
    kernels is not resumed."""
    settings = {key: os.environ.get(key, "") for key in PINNED}
    if "torch" in sys.modules:
        settings["threads"] = str(sys.modules["torch"].get_num_threads())
    return settings
