"""One resume protocol for every long run: ``last.pt`` with the run identity it belongs to.

Training and the pruning loop both save their state after each finished unit of work (an epoch,
a step) to one file, together with the run identity (a JSON-able dict of everything that decides
the result) and its fingerprint. A later run with the same identity resumes from it; a checkpoint
of another identity is moved aside to ``last.<its fingerprint>.pt`` with one line naming what
changed, never overwritten and never resumed. Under torch.distributed every rank reads, rank 0
writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import artifacts, distributed

__all__ = ["RunCheckpoint"]


@dataclass
class RunCheckpoint:
    """``path`` (None: no checkpointing) holding one run's state, for ``run_identity``.

    ``remedy`` says what to rerun when the file is unreadable (in the error message).
    """

    path: Path | None
    run_identity: dict[str, Any] = field(default_factory=dict)
    remedy: str = "the run (it starts again)"

    @classmethod
    def in_folder(
        cls, folder: str | Path | None, run_identity: Mapping[str, Any] | None, remedy: str
    ) -> RunCheckpoint:
        """``<folder>/last.pt``, or no checkpointing when ``folder`` is empty or None."""
        path = Path(folder) / "last.pt" if folder else None
        return cls(path, artifacts.jsonable(dict(run_identity or {})), remedy)

    @property
    def fingerprint(self) -> str:
        return artifacts.fingerprint(self.run_identity)

    def load(self) -> dict[str, Any] | None:
        """This run's saved state, or None: no checkpoint, or another run's (moved aside with a
        message naming what changed)."""
        if self.path is None or not self.path.exists():
            return None
        state = artifacts.load_torch(self.path, remedy=self.remedy)
        distributed.barrier()  # every rank has read the file before rank 0 may move it
        if not isinstance(state, Mapping) or not artifacts.belongs_to_run(
            self.path, state, self.run_identity, set_aside=distributed.is_main()
        ):
            return None
        return dict(state)

    def save(self, state: Mapping[str, Any]) -> None:
        """Write ``state`` with this run's identity and fingerprint (rank 0), then wait for it."""
        if self.path is None:
            return
        if distributed.is_main():
            artifacts.save_torch(
                self.path,
                {"fingerprint": self.fingerprint, "run_identity": self.run_identity, **state},
            )
        distributed.barrier()
