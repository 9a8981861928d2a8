"""Command line: ``python -m facepruning`` (or the ``facepruning`` script).

``run-notebook`` is what every DVC stage calls: it executes a notebook with papermill, its
parameters taken from sections of params.yaml plus ``--set key=value`` overrides, and writes the
executed copy atomically.

``train`` and ``prune`` run the same stages without a notebook (:mod:`facepruning.stages`), with
the same parameters from the same files; unknown names are rejected before anything runs. Under
``torchrun`` they run data-parallel over the launched processes::

    python -m facepruning train --params params.yaml --section train --set arch=resnet50
    torchrun --standalone --nproc_per_node=4 -m facepruning prune --params params-paper.yaml \\
        --section prune --set arch=squeezenet criterion=taylor_activation
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


def _stage_params(args: argparse.Namespace) -> dict:
    params = load_params(args.params, args.section or [args.command])
    params.update(parse_assignments(args.set))
    return params


def _run_stage(args: argparse.Namespace) -> None:
    from . import distributed, stages

    params = _stage_params(args)
    accepted = stages.TRAIN_PARAMETERS if args.command == "train" else stages.PRUNE_PARAMETERS
    stages.check_parameters(params, accepted, stage=args.command)  # before any process group
    stage = stages.train_stage if args.command == "train" else stages.prune_stage
    try:
        run = stage(**params)
        if distributed.is_main():
            print(f"facepruning {args.command}: wrote {run.params['model_path']}")
    finally:
        distributed.shutdown()


def _add_param_options(parser: argparse.ArgumentParser, default_section: str) -> None:
    parser.add_argument(
        "--params", default="params.yaml", help="parameters file (default params.yaml)"
    )
    parser.add_argument(
        "--section",
        action="append",
        default=[],
        help=f"section(s) of the parameters file to pass, in order (default: {default_section})",
    )
    parser.add_argument(
        "--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE", help="overrides"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facepruning", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    nb = sub.add_parser("run-notebook", help="execute a notebook with parameters (a DVC stage)")
    nb.add_argument("notebook")
    nb.add_argument("output")
    _add_param_options(nb, "none")
    nb.set_defaults(func=_run_notebook)
    for name, text in (
        ("train", "train a baseline (notebook 02's parameters; torchrun for several processes)"),
        ("prune", "prune a baseline (notebook 03's parameters; torchrun for several processes)"),
    ):
        stage = sub.add_parser(name, help=text)
        _add_param_options(stage, name)
        stage.set_defaults(func=_run_stage)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except FacePruningError as err:
        print(f"facepruning: error: {err}", file=sys.stderr)
        return 2
    return 0
