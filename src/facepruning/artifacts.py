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
import logging
import os
import pickle
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from .errors import ArtifactError

_UMASK = os.umask(0)
os.umask(_UMASK)

log = logging.getLogger(__name__)

__all__ = [
    "atomic_path",
    "write_text",
    "write_bytes",
    "write_json",
    "read_json",
    "write_csv",
    "save_torch",
    "load_torch",
    "claim_outputs",
    "fingerprint",
    "files_fingerprint",
    "code_fingerprint",
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
    carry the temporary file's name, and two saves of the same object would differ in bytes. Every
    tensor is saved from a storage of its own, so equal values give equal bytes however the
    tensors were made (a resumed run's loaded tensors, an uninterrupted run's views).
    """
    buffer = io.BytesIO()
    torch.save(_own_storage(obj), buffer)
    write_bytes(path, buffer.getvalue())


def _own_storage(obj: Any) -> Any:
    """``obj`` with every tensor copied into a storage of its own, every container new and every
    string interned: torch saves a tensor's whole storage, so a view (a row of a bigger tensor, a
    tensor that shared memory before a resume) would write other bytes for the same values; and
    pickle writes an object met twice as a reference, so equal strings that are one object in an
    uninterrupted run and two after a resume would too."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if type(obj) is str:
        return sys.intern(obj)
    if isinstance(obj, Mapping):
        return type(obj)((_own_storage(k), _own_storage(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_own_storage(v) for v in obj)
    return obj


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
    :class:`~facepruning.errors.ArtifactError` with a one-line message: what the file is (an ONNX
    model, text, a pickle that holds code, ...) or that it is truncated or corrupt, and the fix
    (delete it and rerun ``remedy``). A file holding code is refused, never run.
    """
    path = Path(path)
    with open(path, "rb") as f:  # FileNotFoundError, IsADirectoryError, PermissionError as such
        head = f.read(8)
    if not head:
        raise _corrupt(path, ValueError("the file is empty"), remedy)
    kind = _not_torch(head)
    if kind:
        fix = _remedy_of(kind, remedy)
        raise ArtifactError(f"{path} is {kind}, not a file this package saves with torch: {fix}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except _NOT_CORRUPTION:
        raise
    except pickle.UnpicklingError as e:
        if "GLOBAL" in str(e) or _pickle_imports(path):  # what loading it would import and run
            raise ArtifactError(
                f"{path} holds Python objects beyond tensors and plain containers (code could "
                f"run when loading them), so it is refused: use files written by this package, "
                f"or rerun {remedy}"
            ) from None
        # torch's own text would advise weights_only=False: never repeat that
        raise _corrupt(
            path, ValueError("not a torch archive or a plain-data pickle"), remedy
        ) from None
    except (*_UNREADABLE, KeyError, IndexError, TypeError, AttributeError) as e:
        raise _corrupt(path, e, remedy) from None


def _corrupt(path: Path, e: BaseException, remedy: str) -> ArtifactError:
    reason = " ".join(str(e).split())[:160] or type(e).__name__
    return ArtifactError(
        f"{path} is truncated or corrupt ({type(e).__name__}: {reason}): delete it and rerun "
        f"{remedy}"
    )


def _pickle_imports(path: Path) -> bool:
    """Whether a plain pickle file would import or call anything (read, never run)."""
    import pickletools

    try:
        ops = pickletools.genops(path.read_bytes())
        return any(op.name in _CODE_OPS for op, _, _ in ops)
    except Exception:  # not a pickle either: the caller reports it as corrupt
        return False


_CODE_OPS = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX"}


def _not_torch(head: bytes) -> str:
    """What a file that torch's zip format cannot be is, from its first bytes ("" if it may be
    a torch file)."""
    if head.startswith(b"PK"):
        return ""  # torch's zip archive
    if head[:1] == b"\x80":
        return ""  # a legacy torch/pickle file: torch.load decides (weights_only)
    if head.startswith(b"\x08") or head[:2] in (b"\x08\x07", b"\x08\x08"):
        return "an ONNX model"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return ""
    # text is printable; other bytes that happen to decode go to torch.load, which names them
    return "text" if "".join(text.split()).isprintable() else ""


def _remedy_of(kind: str, remedy: str) -> str:
    if kind == "an ONNX model":
        return "load ONNX models with facepruning.load_embedder"
    return f"delete it and rerun {remedy}"


@contextlib.contextmanager
def claim_outputs(
    paths: Iterable[str | os.PathLike], *, locks: str | os.PathLike | None = None
) -> Iterator[None]:
    """Hold one lock per output for the block: a second run writing the same outputs stops at
    once with one line naming the output and the lock, instead of both writing and the last one
    winning. The outputs' folders are created and checked writable first, before any work.

    The locks are files under ``locks`` (default: ``facepruning-locks-<user>`` in the system's
    temporary folder, one per user so another user's folder never blocks; ``filelock``), named by
    each output's absolute path, so nothing is left beside the outputs themselves.
    """
    from filelock import FileLock, Timeout

    locks = Path(locks) if locks else Path(tempfile.gettempdir()) / f"facepruning-locks-{_user()}"
    outputs = [Path(p) for p in paths if p]
    for path in outputs:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a file where a folder should be, no permission, ...
            raise ArtifactError(
                f"cannot create {path.parent} for {path.name} ({e.strerror or e}): remove what "
                "is in the way or choose another output path"
            ) from None
        if not os.access(path.parent, os.W_OK):
            raise ArtifactError(
                f"{path.parent} is not writable, so {path.name} cannot be written there: fix its "
                "permissions or choose another output path"
            )
    with contextlib.ExitStack() as stack:
        for path in outputs:
            key = hashlib.sha256(os.fsencode(path.resolve())).hexdigest()[:16]
            lock = FileLock(locks / f"{key}.lock")
            try:
                locks.mkdir(parents=True, exist_ok=True)
                stack.enter_context(lock.acquire(timeout=0))
            except Timeout:
                raise ArtifactError(
                    f"{path} is being written by another run right now (lock {lock.lock_file}): "
                    "wait for it to finish, or give this run other output paths"
                ) from None
            except OSError as e:
                raise ArtifactError(
                    f"cannot create the lock {lock.lock_file} for {path} ({e.strerror or e}): "
                    "make that folder writable, or set TMPDIR to a writable folder"
                ) from None
        yield


def _user() -> str:
    """The current user's id (or name), to keep each user's lock folder apart."""
    if hasattr(os, "getuid"):
        return str(os.getuid())
    import getpass

    return getpass.getuser()


def fingerprint(params: Mapping[str, Any]) -> str:
    """A short stable hash of a parameter dict, to tell whether a checkpoint belongs to a run."""
    blob = json.dumps(jsonable(params), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def files_fingerprint(paths: Iterable[str | os.PathLike], *, root: str | os.PathLike = "") -> str:
    """A short hash of the contents of ``paths`` (folders walked, in sorted order), with each
    file's path relative to ``root``: what a run read, so a changed byte changes its identity."""
    digest = hashlib.sha256()
    files: list[Path] = []
    for path in map(Path, paths):
        files.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    for file in files:
        name = os.path.relpath(file, root) if root else os.fspath(file)
        digest.update(os.fsencode(name) + b"\0")
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def code_fingerprint() -> str:
    """A short hash of this package's source files: a run's identity includes the code it ran, so
    a checkpoint written by other code is never resumed."""
    package = Path(__file__).parent
    return files_fingerprint(sorted(package.rglob("*.py")), root=package)


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
        log.warning(
            f"facepruning: {path} is a checkpoint of another run (changed: {changes}); "
            f"moved it to {aside} and starting over"
        )
    return False
