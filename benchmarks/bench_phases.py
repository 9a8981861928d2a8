"""Section 8: where a pruning run's time goes, phase by phase, at the pipeline's full size.

Each network's Taylor path runs exactly as the pipeline's prune stage runs it (params.yaml's
``prune`` section, the pipeline's trained baseline and data), writing to a temporary folder, with
a timer around each phase of the loop:

- ``scoring``: the mini-batches that accumulate the importance scores (``score_pass``);
- ``removal``: ranking the channels and removing them from the network (``remove_channels``);
- ``batchnorm``: re-estimating the BatchNorm statistics after each removal (``after_removal``);
- ``evaluation``: measuring every recorded row (validation accuracy, test pair scores);
- ``finetuning``: the short fine-tuning after each step, and ``final_finetuning`` of the trunk;
- ``other``: the rest (loading, checkpoints, writing results).

A phase nested in another counts only in the inner one, except in the final fine-tuning, which
keeps the time of the ``finetune`` calls it is made of. Opt-in (``--only phases``): it needs the
pipeline's ``models/<arch>/baseline.pt`` and ``data/processed`` and takes minutes.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from common import ROOT, Settings

ARCHS = ("squeezenet", "mobilenet_v2", "resnet50")
PHASES = (
    "scoring",
    "removal",
    "batchnorm",
    "evaluation",
    "finetuning",
    "final_finetuning",
)


#: Phases that keep the time of whatever runs inside them: the final fine-tuning is made of
#: ``finetune`` calls, which would otherwise count as the per-step fine-tuning.
WHOLE = ("final_finetuning",)


class PhaseClock:
    """Exclusive time per phase: a phase entered inside another pauses the outer one, except
    inside a :data:`WHOLE` phase, which keeps all its time."""

    def __init__(self, now: Callable[[], float] = time.perf_counter) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self._stack: list[tuple[str, float]] = []
        self._now = now

    def wrap(self, phase: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            if self._stack and self._stack[-1][0] in WHOLE:
                return fn(*args, **kwargs)
            now = self._now()
            if self._stack:
                outer, since = self._stack[-1]
                self.seconds[outer] += now - since
            self._stack.append((phase, now))
            try:
                return fn(*args, **kwargs)
            finally:
                _, since = self._stack.pop()
                end = self._now()
                self.seconds[phase] += end - since
                if self._stack:
                    self._stack[-1] = (self._stack[-1][0], end)

        return timed


def _patched(clock: PhaseClock) -> ExitStack:
    """The prune stage's phases wrapped by ``clock`` until the returned stack closes."""
    from unittest import mock

    from facepruning.pruning import loop
    from facepruning.stages import prune

    targets = [
        (prune.FaceTraining, "score_pass", "scoring"),
        (prune.FaceTraining, "after_removal", "batchnorm"),
        (prune.FaceTraining, "finetune", "finetuning"),
        (prune.FaceTraining, "final_finetune", "final_finetuning"),
        (loop, "remove_channels", "removal"),
        (loop._Selection, "plan", "removal"),
        (prune, "evaluate", "evaluation"),
    ]
    stack = ExitStack()
    for owner, name, phase in targets:
        stack.enter_context(mock.patch.object(owner, name, clock.wrap(phase, getattr(owner, name))))
    return stack


def profile_run(arch: str, out: Path, **overrides: Any) -> dict[str, Any]:
    """One Taylor path of ``arch`` as the pipeline prunes it, timed by phase."""
    from facepruning import parameters
    from facepruning.project import load_params
    from facepruning.stages import prune

    given = load_params(ROOT / "params.yaml", ["prune"])
    key = f"{arch}-taylor_activation"
    given.update(
        run=key,
        arch=arch,
        criterion="taylor_activation",
        normalize_scores=True,
        data_dir=str(ROOT / "data" / "processed"),
        baseline_path=str(ROOT / "models" / arch / "baseline.pt"),
        model_path=str(out / f"{key}.pt"),
        metrics_path=str(out / f"{key}.json"),
        history_path=str(out / f"{key}_history.csv"),
        scores_path=str(out / f"{key}_scores.pt"),
        layers_path=str(out / f"{key}_layers.csv"),
        checkpoint_dir=str(out / "checkpoints" / key),
        **overrides,
    )
    clock = PhaseClock()
    start = time.perf_counter()
    with _patched(clock):
        result = prune.run(parameters.parse("prune", given))
    total = time.perf_counter() - start
    seconds = {**clock.seconds, "other": total - sum(clock.seconds.values())}
    return {"total_s": total, "steps": int(result.history["step"].max()), "seconds": seconds}


def run(settings: Settings) -> dict[str, Any]:
    archs = ("squeezenet",) if settings.quick else ARCHS
    missing = [a for a in archs if not (ROOT / "models" / a / "baseline.pt").is_file()]
    if missing or not (ROOT / "data" / "processed").is_dir():
        raise FileNotFoundError(
            f"phases: no trained baseline for {missing or 'the data'}: run make repro first"
        )
    overrides = {"max_steps": 2, "final_finetune_epochs": 1} if settings.quick else {}
    runs = {}
    with tempfile.TemporaryDirectory(prefix="bench_phases_") as tmp:
        for arch in archs:
            runs[arch] = profile_run(arch, Path(tmp), **overrides)
    return {
        "note": "each network's Taylor path at the pipeline's settings (params.yaml `prune`), "
        "timed by phase; a nested phase counts in the inner one only (the final fine-tuning keeps "
        "its own)",
        "runs": runs,
    }
