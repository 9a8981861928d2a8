"""Closer numbers on any x86 machine: every stage computes with AVX2 kernels.

PyTorch, oneDNN and MKL pick the widest vector kernels the CPU offers. Wider kernels add floating
point numbers in another order, so a CPU with AVX-512 trains through other roundings than one
with AVX2 only, the runs part from the first epoch, and every result file differs.
:func:`pin_cpu_kernels` makes every stage use AVX2 kernels (ATen's dispatch, oneDNN's
instruction set and MKL's conditional numerical reproducibility), on any x86 CPU that has AVX2.
It sets environment variables, so it must run before the first computation, and the kernels
papermill starts inherit them.

The pin narrows, but does not close, the gap between CPUs: with it, SqueezeNet trained byte for
byte alike on an AVX2-only AMD CPU and an AVX-512 Intel CPU, MobileNetV2 and ResNet50 did not
(every oneDNN primitive ran its AVX2 code on both; what else oneDNN or MKL tunes to the CPU was
not found). Only ``python -m facepruning`` pins by itself; a script calls
:func:`pin_cpu_kernels` before importing torch's kernels.

Set ``FACEPRUNING_NATIVE_KERNELS=1`` to lift the pin for speed (a large machine, a GPU run): the
results are then reproducible on the same kind of CPU only. GPUs are not affected by the pin.
"""

from __future__ import annotations

import os
import platform

__all__ = ["PINNED", "LIFT_VARIABLE", "pin_cpu_kernels", "kernels_pinned"]

PINNED = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}
LIFT_VARIABLE = "FACEPRUNING_NATIVE_KERNELS"


def kernels_pinned() -> bool:
    """Whether this process pins the kernels: on x86-64, unless lifted."""
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    return x86 and os.environ.get(LIFT_VARIABLE, "") not in ("1", "true", "yes")


def pin_cpu_kernels() -> dict[str, str]:
    """Set the AVX2 pin in this process's environment (what child processes inherit too);
    returns what was set (nothing where the pin is lifted or the CPU is not x86-64)."""
    if not kernels_pinned():
        return {}
    os.environ.update(PINNED)
    return dict(PINNED)
