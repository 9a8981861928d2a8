"""Command line: ``python -m facepruning`` (or the ``facepruning`` script).

``run-notebook`` is what every DVC stage calls: it executes a notebook with papermill, its
parameters taken from sections of params.yaml plus ``--set key=value`` overrides, and writes the
executed copy atomically.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import yaml

from .errors import FacePruningError, ParameterError
from .project import load_params, run_notebook

__all__ = ["main", "parse_assignments"]


def parse_assignments(items: Sequence[str]) -> dict:
    """``["a=1", "b=[1, 2]", "c=text"]`` -> ``{"a": 1, "b": [1, 2], "c": "text"}`` (YAML values)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ParameterError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return out


def _run_notebook(args: argparse.Namespace) -> None:
    params = load_params(args.params, args.section) if args.section else {}
    params.update(parse_assignments(args.set))
    run_notebook(args.notebook, args.output, parameters=params)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facepruning", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    nb = sub.add_parser("run-notebook", help="execute a notebook with parameters (a DVC stage)")
    nb.add_argument("notebook")
    nb.add_argument("output")
    nb.add_argument("--params", default="params.yaml", help="parameters file (default params.yaml)")
    nb.add_argument(
        "--section", action="append", default=[], help="params.yaml section(s) to pass, in order"
    )
    nb.add_argument(
        "--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE", help="overrides"
    )
    nb.set_defaults(func=_run_notebook)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except FacePruningError as err:
        print(f"facepruning: error: {err}", file=sys.stderr)
        return 2
    return 0
