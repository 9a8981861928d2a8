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

from facepruning.cli import STAGE_COMMANDS
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
            # `python -m facepruning export ...` runs the module of that name, and `... train`
            # the stage of that name (both imported lazily, by name)
            command = words[i + 2] if i + 2 < len(words) else ""
            if command in STAGE_COMMANDS:
                roots.add(f"{PACKAGE}.stages.{command}")
            elif _module_file(f"{PACKAGE}.{command}") is not None:
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


def _src_deps(name: str) -> list[str]:
    return [d for n, _, deps in STAGES if n == name for d in deps if d.startswith("src/")]


def test_source_dependencies_are_files_so_bytecode_never_counts():
    # A folder dependency would hash whatever Python writes into it (__pycache__/*.pyc).
    for name, _, deps in STAGES:
        folders = [d for d in deps if d.startswith("src/") and not d.endswith(".py")]
        assert not folders, f"stage {name!r} depends on source folders {folders}: list the files"


def test_a_change_reruns_only_the_stages_that_use_it():
    train = _src_deps("train")
    assert not [d for d in train if "/pruning/" in d], "training must not depend on pruning/"
    assert not [d for d in train if d.endswith(("plots/analysis.py", "plots/pruning.py"))]
    for name, _, _ in STAGES:
        uses_analysis = [d for d in _src_deps(name) if "/analysis/" in d]
        assert name == "analysis" or not uses_analysis, f"{name} depends on {uses_analysis}"
        if name != "analysis":
            assert "src/facepruning/plots/analysis.py" not in _src_deps(name)


def test_no_module_is_too_long_to_read():
    # "about 600 lines": one concern a module; verification.py (630) is the longest
    long = {
        str(p.relative_to(ROOT)): n
        for p in sorted((SRC / PACKAGE).rglob("*.py"))
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 650
    }
    assert not long, f"split these modules by concern: {long}"


def test_importing_the_package_with_bytecode_on_changes_no_dependency(tmp_path):
    """As a user runs it (PYTHONDONTWRITEBYTECODE unset): importing every module writes
    __pycache__ folders, and `dvc status` must not change."""
    import os
    import subprocess
    import sys

    dvc = Path(sys.executable).with_name("dvc")
    if not dvc.exists() or not (ROOT / ".git").exists():
        pytest.skip("needs dvc beside this Python and a git checkout")

    def status() -> str:
        out = subprocess.run(
            [str(dvc), "status", "--json"], cwd=ROOT, capture_output=True, text=True, check=True
        )
        return out.stdout

    before = status()
    modules = sorted(
        ".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        for p in (SRC / PACKAGE).rglob("*.py")
        if p.name != "__main__.py"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    code = "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)"
    subprocess.run([sys.executable, "-c", code, *modules], env=env, check=True, cwd=tmp_path)
    assert list((SRC / PACKAGE).rglob("__pycache__")), "the import wrote no bytecode"
    assert status() == before


def test_the_lock_holds_no_stage_the_pipeline_lost():
    """A stage renamed or removed in dvc.yaml must leave dvc.lock too: a stale entry claims the
    same outputs with other hashes."""
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    names = set()
    for name, stage in pipeline["stages"].items():
        if "foreach" not in stage:
            names.add(name)
            continue
        items = params[stage["foreach"].strip("${}")]
        names |= {f"{name}@{key}" for key in items}
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())
    assert set(lock["stages"]) <= names, sorted(set(lock["stages"]) - names)
