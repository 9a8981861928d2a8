"""Where the project lives, and running its notebooks with parameters (the pipeline's stages).

Parameters in notebooks and params.yaml give paths relative to the repository root. Notebooks call
:func:`chdir_to_project_root` first, so the same defaults work under nbval (which starts a kernel in
``notebooks/``) and under papermill (started from the root by ``dvc repro``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .errors import ParameterError
from .progress import QUIET_VARIABLE

__all__ = [
    "project_root",
    "chdir_to_project_root",
    "load_params",
    "read_yaml",
    "notebook_parameters",
    "run_notebook",
    "tidy_executed",
]

_MARKER = "dvc.yaml"


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: the working directory) with dvc.yaml."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / _MARKER).is_file():
            return folder
    raise FileNotFoundError(
        f"no {_MARKER} found in {here} or any folder above it: run this from inside the "
        "facepruning repository (or pass the repository folder explicitly)"
    )


def chdir_to_project_root() -> Path:
    """Make the repository root the working directory and return it."""
    root = project_root()
    os.chdir(root)
    return root


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the last
    silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # ``<<: *base``: later keys override
                continue
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                hash(key)
            except TypeError:
                raise ParameterError(
                    f"{self.name}: the key at line {line} is a {type(key).__name__}; keys must "
                    "be plain names or numbers"
                ) from None
            if key in seen:
                raise ParameterError(
                    f"{self.name}: key {key!r} at line {line} repeats the one at line "
                    f"{seen[key]}; keep one of them"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | os.PathLike) -> Any:
    """A YAML file's content; one line naming the file, the line and the fix for a syntax error,
    a repeated key or bytes that are not UTF-8."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ParameterError(
            f"{path}: byte {e.start} is not UTF-8; save the file as UTF-8"
        ) from None
    loader = None
    try:
        loader = _UniqueKeyLoader(text)  # checks for unprintable characters already
        loader.name = str(path)
        return loader.get_single_data()
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ParameterError(
            f"{path}: {problem}{where}; fix the YAML there (indentation, quotes, colons)"
        ) from None
    finally:
        if loader is not None:
            loader.dispose()


def load_params(path: str | os.PathLike, sections: Sequence[str]) -> dict[str, Any]:
    """Merge the named top-level sections of a params.yaml, later sections winning."""
    try:
        params = read_yaml(path) or {}
    except FileNotFoundError:
        raise ParameterError(f"{path}: no such parameters file; pass --params FILE") from None
    if not isinstance(params, Mapping):
        raise ParameterError(f"{path} holds a {type(params).__name__}: give sections of key: value")
    merged: dict[str, Any] = {}
    for section in sections:
        if section not in params:
            raise ParameterError(f"{path} has no section {section!r}; it has {sorted(params)}")
        if not isinstance(params[section], Mapping):
            raise ParameterError(
                f"{path}: section {section!r} is a {type(params[section]).__name__}, not a "
                "mapping of parameter: value lines"
            )
        merged.update(params[section])
    return merged


def notebook_parameters(notebook: str | os.PathLike) -> dict[str, Any]:
    """The names and defaults declared in a notebook's cell tagged ``parameters``."""
    import papermill

    declared = papermill.inspect_notebook(str(notebook))
    return {name: info.get("default") for name, info in declared.items()}


def tidy_executed(
    path: str | os.PathLike, output: str | os.PathLike, *, run_parameters: str | None = None
) -> None:
    """Make an executed notebook at ``path`` read as the report ``output`` it becomes.

    A report shows its own run: with ``run_parameters`` (the source of a parameters cell holding
    the run's values, :func:`facepruning.parameters.notebook_cell`) the ``parameters`` cell shows
    them instead of the notebook's test defaults and papermill's injected cell goes; the cells
    tagged ``regression-check`` (a comparison that only the test defaults have) go too.

    Every tqdm bar leaves its widget model in the notebook's metadata: hundreds of kilobytes that
    no static viewer renders, so it goes (the outputs keep their plain-text form). Papermill
    records where it wrote the notebook, a scratch file under whatever folder the run happened
    in; the report records ``output`` instead, as given (relative in the pipeline). The start and
    end times and durations of the run and of every cell go, and the injected parameters cell
    gets a fixed id (papermill draws a random one), so that the same inputs give the same bytes.
    """
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    nb.metadata.pop("widgets", None)
    if "papermill" in nb.metadata:
        nb.metadata.papermill["output_path"] = str(output)
        for key in _RUN_DEPENDENT:
            nb.metadata.papermill.pop(key, None)
    kept = []
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "regression-check" in tags:
            continue
        if run_parameters is not None and "injected-parameters" in tags:
            continue
        if run_parameters is not None and "parameters" in tags:
            cell.source = run_parameters
        for key in _RUN_DEPENDENT:
            cell.metadata.get("papermill", {}).pop(key, None)
        cell.metadata.pop("execution", None)  # nbclient's per-cell timestamps
        if "injected-parameters" in tags:
            cell["id"] = "injected-parameters"  # papermill draws a random id on every run
        kept.append(cell)
    nb.cells = kept
    nbformat.write(nb, str(path))


#: What papermill records that differs on every run with the same inputs: a rerun must leave the
#: report's bytes (and so ``git status``) unchanged.
_RUN_DEPENDENT = ("start_time", "end_time", "duration")


# Names of this package's exceptions: a notebook that raises one failed on bad input, and its
# one-line message is what the user needs, not papermill's cell traceback.
_OUR_ERRORS = {"FacePruningError", "DataError", "ModelError", "PruningError", "ParameterError"}


def run_notebook(
    notebook: str | os.PathLike,
    output: str | os.PathLike,
    *,
    parameters: Mapping[str, Any],
    cwd: str | os.PathLike | None = None,
    run_parameters: str | None = None,
) -> None:
    """Execute ``notebook`` with papermill and write the executed copy to ``output``.

    Unknown parameter names are rejected before anything runs. The notebook runs into
    ``build/notebooks/`` under the project root and is moved onto ``output`` only when every cell
    succeeded, so an interrupted or failed run leaves nothing beside ``output`` and any previous
    ``output`` untouched; a failed run keeps its partial notebook as
    ``build/notebooks/<output stem>.failed.ipynb`` and says so. An error this package raised on
    purpose inside the notebook (bad input) is re-raised with its one-line message.
    ``run_parameters``: what the report's parameters cell shows (:func:`tidy_executed`).
    """
    import papermill

    notebook, output = Path(notebook), Path(output)
    declared = notebook_parameters(notebook)
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise ParameterError(
            f"{notebook.name} has no parameter(s) {unknown}; it declares {sorted(declared)}. "
            "Fix the name in params.yaml or dvc.yaml."
        )
    root = Path(cwd or project_root(notebook.parent))
    scratch = root / "build" / "notebooks"
    scratch.mkdir(parents=True, exist_ok=True)
    failed = scratch / f"{output.stem}.failed.ipynb"
    tmp = scratch / f"{output.stem}.running.ipynb"
    os.environ[QUIET_VARIABLE] = "1"  # no frozen progress widgets in the executed report
    try:
        papermill.execute_notebook(
            str(notebook),
            str(tmp),
            parameters=dict(parameters),
            cwd=str(root),
            kernel_name="python3",
            progress_bar=False,
        )
    except papermill.PapermillExecutionError as err:
        os.replace(tmp, failed)
        if err.ename in _OUR_ERRORS:
            raise ParameterError(f"{notebook.name}: {err.evalue}") from None
        raise
    except BaseException:
        if tmp.exists():
            os.replace(tmp, failed)
        raise
    finally:
        os.environ.pop(QUIET_VARIABLE, None)
    tidy_executed(tmp, output, run_parameters=run_parameters)
    output.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, output)
    if failed.exists():
        failed.unlink()
