"""dvc.yaml's dependencies cannot go stale: each stage's import closure (its notebook's imports of
``facepruning`` and the ``python -m facepruning`` runner, followed through the package) must be
covered by the stage's deps, and every source dep must be in the closure.

The closure is computed statically from the source (every ``import`` anywhere in a module, at
module level or inside functions), so code that runs only on some paths still counts.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import yaml

from facepruning.project import project_root

ROOT = project_root(__file__)
SRC = ROOT / "src"
PACKAGE = "facepruning"


def _module_file(name: str) -> Path | None:
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every facepruning module ``tree`` imports: ``from a import b`` counts ``a.b`` if a module."""
    package = module if is_package else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {
        name for name in found if name.split(".")[0] == PACKAGE and _module_file(name) is not None
    }


def _with_parents(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[: i + 1]) for i in range(len(parts))}


def closure(roots: set[str]) -> set[Path]:
    """The files of every module reachable from ``roots`` (package ``__init__``s included)."""
    todo = set().union(*(_with_parents(r) for r in roots))
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(name)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for imported in _imports(tree, name, path.name == "__init__.py"):
            todo |= _with_parents(imported) - seen
    return {_module_file(name).relative_to(ROOT) for name in seen}


def notebook_imports(notebook: Path) -> set[str]:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return _imports(ast.parse(source), "__notebook__", False)


def _stages():
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    variables = {k: v for entry in pipeline.get("vars", []) for k, v in entry.items()}
    for name, stage in pipeline["stages"].items():
        body = stage.get("do", stage)
        deps = [d for d in body.get("deps", []) if "${" not in d]
        cmd = body["cmd"]
        for key, value in variables.items():
            cmd = cmd.replace("${" + key + "}", str(value))
        yield name, cmd, deps


STAGES = list(_stages())


@pytest.mark.parametrize(("name", "cmd", "deps"), STAGES, ids=[s[0] for s in STAGES])
def test_stage_deps_cover_its_import_closure(name, cmd, deps):
    notebooks = [d for d in deps if d.endswith(".ipynb")]
    assert len(notebooks) <= 1, f"{name}: more than one notebook dependency: {notebooks}"
    roots = set()
    if notebooks:
        assert notebooks[0] in cmd, f"{name}: runs a notebook that is not its dependency"
        roots = notebook_imports(ROOT / notebooks[0])
    words = cmd.split()
    for i, word in enumerate(words[:-1]):
        if word == "-m" and words[i + 1] == PACKAGE:
            roots.add(f"{PACKAGE}.__main__")
            # `python -m facepruning export ...` runs the module of that name (imported lazily)
            command = words[i + 2] if i + 2 < len(words) else ""
            if _module_file(f"{PACKAGE}.{command}") is not None:
                roots.add(f"{PACKAGE}.{command}")
    needed = closure(roots)
    covered = [Path(d) for d in deps]

    def is_covered(path: Path) -> bool:
        return any(path == dep or dep in path.parents for dep in covered)

    missing = sorted(str(p) for p in needed if not is_covered(p))
    assert not missing, f"dvc.yaml stage {name!r} imports {missing} but does not depend on them"
    src_deps = [dep for dep in covered if dep.parts[:1] == ("src",)]
    unused = [str(d) for d in src_deps if not any(p == d or d in p.parents for p in needed)]
    assert not unused, f"dvc.yaml stage {name!r} depends on {unused}, which it never imports"


def test_closure_follows_imports_inside_functions(tmp_path, monkeypatch):
    # The checker itself: a module imported only inside a function is part of the closure.
    assert Path("src/facepruning/stages/train.py") in closure({"facepruning.stages.train"})
    assert Path("src/facepruning/training.py") in closure({"facepruning.stages.train"})
    cli_closure = closure({"facepruning.__main__"})
    assert Path("src/facepruning/parameters.py") in cli_closure
    # run-notebook never loads a stage's code (the CLI imports the stage asked for by name)
    assert not any("stages" in p.parts for p in cli_closure)
