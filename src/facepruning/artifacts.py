"""Writing outputs so that an interrupted run never leaves a half-written file behind.

Every file is written to a temporary sibling and moved into place with ``os.replace``, which is
atomic on POSIX and Windows. Checkpoints hold only tensors and plain containers, so they load with
``torch.load(..., weights_only=True)``: loading never unpickles code.

The same content gives the same bytes: torch files are serialised in memory (``torch.save``
would otherwise write the temporary file's name into the archive), CSV files always end lines
with a line feed. A torch file that cannot be read (cut short by a full disk, a killed copy) raises
:class:`~facepruning.errors.ArtifactError`, whose message names the file and the fix.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from .errors import ArtifactError

_UMASK = os.umask(0)
os.umask(_UMASK)

__all__ = [
    "atomic_path",
    "write_text",
    "write_bytes",
    "write_json",
    "read_json",
    "write_csv",
    "save_torch",
    "load_torch",
    "fingerprint",
    "jsonable",
    "identity_changes",
    "belongs_to_run",
]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` only if the block succeeds.

    The parent folder is created when missing. On error the temporary file is removed and any
    previous ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp creates 0600; outputs are shared files
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_csv(path: str | os.PathLike, frame: Any, **to_csv_kwargs: Any) -> None:
    """Write a pandas ``frame`` as CSV, atomically, with line-feed line ends on every platform.

    ``to_csv_kwargs`` go to :meth:`pandas.DataFrame.to_csv` (``index=False``, ...).
    """
    to_csv_kwargs.setdefault("lineterminator", "\n")
    write_bytes(path, frame.to_csv(None, **to_csv_kwargs).encode("utf-8"))


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types: tensors and tuples become lists, numpy scalars numbers,
    paths strings, NaN None."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return jsonable(value.tolist())
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and value != value:  # NaN is not JSON; null is
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically; tensors and numpy scalars become numbers."""
    write_text(path, json.dumps(jsonable(data), indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` atomically. Keep ``obj`` to tensors and plain containers.

    The archive is built in memory, where torch names it ``archive``: saved to a file, it would
    carry the temporary file's name, and two saves of the same object would differ in bytes.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes(path, buffer.getvalue())


# What torch.load raises on a cut-short or damaged file: "PytorchStreamReader failed reading zip
# archive" (RuntimeError), "[Errno 22] Invalid argument" (OSError), an unpickling error, ...
_UNREADABLE = (
    RuntimeError,
    OSError,
    EOFError,
    ValueError,
    pickle.UnpicklingError,
    zipfile.BadZipFile,
)
_NOT_CORRUPTION = (FileNotFoundError, IsADirectoryError, PermissionError)


def load_torch(
    path: str | os.PathLike, *, remedy: str = "the stage that writes it (dvc repro)"
) -> Any:
    """``torch.load`` with ``weights_only=True``: tensors and plain containers, never code.

    A missing file raises ``FileNotFoundError``. A file that exists but cannot be read raises
    :class:`~facepruning.errors.ArtifactError` with a one-line message: the file, that it is
    truncated or corrupt, and the fix (delete it and rerun ``remedy``).
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except _NOT_CORRUPTION:
        raise
    except _UNREADABLE as e:
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        raise ArtifactError(
            f"{os.fspath(path)} is truncated or corrupt ({type(e).__name__}: {reason}): "
            f"delete it and rerun {remedy}"
        ) from e


def fingerprint(params: Mapping[str, Any]) -> str:
    """A short stable hash of a parameter dict, to tell whether a checkpoint belongs to a run."""
    blob = json.dumps(jsonable(params), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    else:
        out[prefix] = value
    return out


def identity_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What differs between two run identities: ``"key.sub: old -> new"`` per dotted key whose
    value changed (nested dicts are walked; lists are compared whole), in sorted key order."""
    before = _flatten(jsonable(old), "", {})
    after = _flatten(jsonable(new), "", {})

    def show(flat: dict[str, Any], key: str) -> str:
        return json.dumps(flat[key]) if key in flat else "(absent)"

    return [
        f"{key}: {show(before, key)} -> {show(after, key)}"
        for key in sorted(before.keys() | after.keys())
        if (key in before) != (key in after) or before.get(key) != after.get(key)
    ]


def _aside_path(path: Path, old_fingerprint: str) -> Path:
    base = f"{path.stem}.{old_fingerprint or 'unknown'}"
    aside, n = path.with_name(f"{base}{path.suffix}"), 1
    while aside.exists():  # never overwrite an older checkpoint set aside before
        aside, n = path.with_name(f"{base}.{n}{path.suffix}"), n + 1
    return aside


def belongs_to_run(
    path: str | os.PathLike,
    stored: Mapping[str, Any],
    run_identity: Mapping[str, Any],
    *,
    set_aside: bool = True,
) -> bool:
    """Whether the checkpoint at ``path`` belongs to the run ``run_identity`` (its fingerprint).

    ``stored`` is what the checkpoint recorded: ``"fingerprint"`` and ``"run_identity"``. When
    it belongs to another run and ``set_aside`` (rank 0 only, under torch.distributed), the file
    is moved to ``<stem>.<its fingerprint><suffix>`` in the same folder (``last.<fp>.pt``), never
    deleted, and one line on stderr names the parameters that changed and where it went.
    """
    old_fingerprint = str(stored.get("fingerprint", ""))
    if old_fingerprint == fingerprint(run_identity):
        return True
    if set_aside:
        path = Path(path)
        aside = _aside_path(path, old_fingerprint)
        os.replace(path, aside)
        old_identity = stored.get("run_identity")
        if isinstance(old_identity, Mapping):
            changes = "; ".join(identity_changes(old_identity, run_identity)) or "none found"
        else:
            changes = "unknown, the old checkpoint does not record its parameters"
        print(
            f"facepruning: {path} is a checkpoint of another run (changed: {changes}); "
            f"moved it to {aside} and starting over",
            file=sys.stderr,
            flush=True,
        )
    return False
