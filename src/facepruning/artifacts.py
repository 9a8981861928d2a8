"""Writing outputs so that an interrupted run never leaves a half-written file behind.

Every file is written to a temporary sibling and moved into place with ``os.replace``, which is
atomic on POSIX and Windows. Checkpoints hold only tensors and plain containers, so they load with
``torch.load(..., weights_only=True)``: loading never unpickles code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

_UMASK = os.umask(0)
os.umask(_UMASK)

__all__ = [
    "atomic_path",
    "write_text",
    "write_json",
    "read_json",
    "save_torch",
    "load_torch",
    "fingerprint",
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


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _jsonable(value.tolist())
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and value != value:  # NaN is not JSON; null is
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically; tensors and numpy scalars become numbers."""
    write_text(path, json.dumps(_jsonable(data), indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` atomically. Keep ``obj`` to tensors and plain containers."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_torch(path: str | os.PathLike) -> Any:
    """``torch.load`` with ``weights_only=True``: tensors and plain containers, never code."""
    return torch.load(path, map_location="cpu", weights_only=True)


def fingerprint(params: Mapping[str, Any]) -> str:
    """A short stable hash of a parameter dict, to tell whether a checkpoint belongs to a run."""
    blob = json.dumps(_jsonable(params), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
