"""Command line: ``python -m facepruning`` (or the ``facepruning`` script).

``run-notebook`` is what every DVC stage calls: it executes a notebook with papermill, its
parameters taken from sections of params.yaml plus ``--set key=value`` overrides, and writes the
executed copy atomically.

``export`` writes a saved model as an ONNX embedding network (:mod:`facepruning.export`);
``pick`` writes notebook 04's SqueezerFaceNet pick as a model and an ONNX embedder
(:mod:`facepruning.pick`).

``prepare``, ``train`` and ``prune`` run the same stages without a notebook
(:mod:`facepruning.stages`), with the same parameters from the same files (the section named
after the command); paths left out are where the pipeline writes
(:func:`~facepruning.parameters.command_line_paths`: ``data/processed``,
``models/<arch>/baseline.pt``, ...). Unknown names and wrong types are rejected before anything
runs (``--help`` lists every parameter, its type, the default a plain run uses and its
meaning). Under ``torchrun`` train and prune run data-parallel::

    python -m facepruning train --params params.yaml --set arch=resnet50
    torchrun --standalone --nproc_per_node=4 -m facepruning prune --params params-paper.yaml \\
        --set arch=squeezenet criterion=taylor_activation

Every command computes with the same kernels and threads on any x86 CPU with AVX2
(:mod:`facepruning.kernels`), so the pipeline's numbers do not depend on the CPU.

``readme`` (run by ``make repro`` after ``dvc repro``) regenerates README.md's result blocks from
metrics/analysis.json (:mod:`facepruning.readme`); ``--check`` only fails when they are stale.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import sys
from collections.abc import Callable, Sequence

import yaml

from . import parameters
from .errors import FacePruningError, ParameterError
from .kernels import pin_cpu_kernels
from .project import load_params, run_notebook

__all__ = ["main", "parse_assignments"]

STAGE_COMMANDS = ("prepare", "train", "prune")


def parse_assignments(items: Sequence[str]) -> dict:
    """``["a=1", "b=[1, 2]", "c=text"]`` -> ``{"a": 1, "b": [1, 2], "c": "text"}`` (YAML values)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ParameterError(f"--set expects key=value, got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            raise ParameterError(
                f"--set {item!r}: the value is not valid YAML; quote text, e.g. {key}='...'"
            ) from None
    return out


def _given(args: argparse.Namespace, sections: Sequence[str]) -> dict:
    params = load_params(args.params, sections) if sections else {}
    params.update(parse_assignments(args.set))
    return params


def _run_notebook(args: argparse.Namespace) -> None:
    given = _given(args, args.section)
    stage = args.stage or (args.section[-1] if args.section else None)
    shown = None
    if stage in parameters.STAGES:  # refuse bad names and types before papermill starts
        values = dataclasses.asdict(parameters.parse(stage, given))
        shown = _RUN_HEADER.format(sections=", ".join(args.section)) + parameters.notebook_cell(
            stage, values
        )
    run_notebook(args.notebook, args.output, parameters=given, run_parameters=shown)


_RUN_HEADER = "# This run's parameters: params.yaml's section(s) {sections} and the --set values\n"


def _stage_given(command: str, args: argparse.Namespace) -> dict:
    """A stage command's parameters: params.yaml's section and ``--set``, then the paths where
    the pipeline writes for whatever they leave out (never the test suite's build/nbval/)."""
    given = _given(args, args.section or [command])
    return {**given, **parameters.command_line_paths(command, given)}


def _run_stage(args: argparse.Namespace) -> None:
    # validated before any process group or data loading
    params = parameters.parse(args.command, _stage_given(args.command, args))
    # Only the stage asked for is imported: ``run-notebook`` never loads the stages' code.
    stage = importlib.import_module(f"{__package__}.stages.{args.command}")
    distributed = importlib.import_module(f"{__package__}.distributed")
    try:
        stage.run(params)
        if distributed.is_main():
            written = params.out_dir if args.command == "prepare" else params.model_path
            print(f"facepruning {args.command}: wrote {written}")
    finally:
        distributed.shutdown()


def _readme(args: argparse.Namespace) -> None:
    # imported by name, like the stages: the pipeline's stages do not depend on this module
    readme = importlib.import_module(f"{__package__}.readme")
    changed = readme.update_readme(args.readme, args.metrics, check=args.check)
    state = "updated" if changed else "up to date"
    print(f"facepruning readme: {args.readme} {state} from {args.metrics}")


def _export(args: argparse.Namespace) -> None:
    # imported by name, like the stages: the other commands never load torch.onnx
    export = importlib.import_module(f"{__package__}.export")
    meta = {} if args.threshold is None else {"eer_threshold": args.threshold}
    written = export.export_onnx(args.model, args.output, meta=meta, opset=args.opset)
    print(
        f"facepruning export: wrote {args.output} ({written['arch']}, input "
        f"[N, 3, {written['image_size']}, {written['image_size']}] 0..255 RGB, "
        f"{written['descriptor_size']}-d unit descriptors)"
    )


def _pick(args: argparse.Namespace) -> None:
    # imported by name, like export: only this command loads the pruning code
    pick = importlib.import_module(f"{__package__}.pick")
    chosen = pick.run(args.analysis, args.model, args.onnx, params_path=args.params)
    print(
        f"facepruning pick: wrote {args.model} and {args.onnx} ({chosen['run']}, step "
        f"{chosen['step']}, {chosen['stage']}; replayed and checked against its history row)"
    )


def _add_pick(sub: argparse._SubParsersAction) -> None:
    pk = sub.add_parser(
        "pick",
        help="write notebook 04's SqueezerFaceNet pick as a model (.pt) and an ONNX embedder",
    )
    pk.add_argument("analysis", help="the analysis summary naming the pick (metrics/analysis.json)")
    pk.add_argument("model", help="where to write the model (.pt)")
    pk.add_argument("onnx", help="where to write its ONNX embedder (.onnx)")
    pk.add_argument("--params", default="params.yaml", help="parameters file (default params.yaml)")
    pk.set_defaults(func=_pick)


def _add_export(sub: argparse._SubParsersAction) -> None:
    ex = sub.add_parser("export", help="write a saved model (.pt) as an ONNX embedding network")
    ex.add_argument("model", help="a model file written by train or prune (.pt)")
    ex.add_argument("output", help="the ONNX file to write")
    ex.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    ex.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="verification threshold to store (default: the model's eer_threshold, if any)",
    )
    ex.set_defaults(func=_export)


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


_STAGE_HELP = {
    "prepare": "prepare a data set (notebook 01's parameters)",
    "train": "train a baseline (notebook 02's parameters; torchrun for several processes)",
    "prune": "prune a baseline (notebook 03's parameters; torchrun for several processes)",
}


def _parameters_help(command: str) -> str:
    """The parameters with the defaults a plain run here uses: params.yaml's section (when this
    folder has one), the declaration for what it leaves out, the pipeline's paths."""
    try:
        section = load_params("params.yaml", [command])
        source = f"params.yaml's {command!r} section, then the declaration"
    except ParameterError:
        section, source = {}, "the declaration (no params.yaml here)"
    defaults = {**section, **parameters.command_line_paths(command, section)}
    return f"parameters (--set NAME=VALUE; defaults: {source}):\n" + parameters.describe(
        command, defaults
    )


class _Parser(argparse.ArgumentParser):
    """An argument parser whose epilog is written only when its help is shown: a stage's epilog
    reads params.yaml, which no other use of the parser needs."""

    def __init__(self, *args, epilog_from: Callable[[], str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._epilog_from = epilog_from

    def format_help(self) -> str:
        if self._epilog_from is not None:
            self.epilog = self._epilog_from()
        return super().format_help()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facepruning", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    nb = sub.add_parser("run-notebook", help="execute a notebook with parameters (a DVC stage)")
    nb.add_argument("notebook")
    nb.add_argument("output")
    nb.add_argument(
        "--stage",
        choices=list(parameters.STAGES),
        help="the stage whose declared parameters to check (default: the last --section)",
    )
    _add_param_options(nb, "none")
    nb.set_defaults(func=_run_notebook)
    for name in STAGE_COMMANDS:
        stage = sub.add_parser(
            name,
            help=_STAGE_HELP[name],
            epilog_from=functools.partial(_parameters_help, name),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_param_options(stage, name)
        stage.set_defaults(func=_run_stage)
    _add_export(sub)
    _add_pick(sub)
    readme = sub.add_parser(
        "readme", help="regenerate README.md's result blocks from metrics/analysis.json"
    )
    readme.add_argument("--readme", default="README.md", help="default README.md")
    readme.add_argument(
        "--metrics", default="metrics/analysis.json", help="default metrics/analysis.json"
    )
    readme.add_argument(
        "--check", action="store_true", help="write nothing; fail when the README is out of date"
    )
    readme.set_defaults(func=_readme)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    pin_cpu_kernels()  # before torch and numpy load (this module imports neither): same numbers
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except FacePruningError as err:
        print(f"facepruning: error: {err}", file=sys.stderr)
        return 2
    return 0
