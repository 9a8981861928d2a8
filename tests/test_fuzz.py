"""Fuzzing, as the field does it (Hypothesis): arbitrary values and bytes given to the parameter
checks, the protocol parsers and the model loaders give either a valid result or the package's
own one-line error, never another exception."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facepruning import parameters
from facepruning.artifacts import load_torch
from facepruning.errors import FacePruningError
from facepruning.export import check_meta
from facepruning.models import build_model, load_model, load_pruned, save_model
from facepruning.prepare.protocols import (
    parse_lfw_pairs,
    parse_loose_bbox_lines,
    parse_pose_templates,
)
from facepruning.project import load_params

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.floats(allow_nan=True), max_size=4),
)
STAGE_FIELDS = [
    (stage, f.name) for stage, cls in parameters.STAGES.items() for f in dataclasses.fields(cls)
]


def _one_line(error: FacePruningError) -> None:
    assert str(error) and "\n" not in str(error)


@FUZZ
@given(field=st.sampled_from(STAGE_FIELDS), value=values)
def test_any_parameter_value_is_accepted_or_named(field, value):
    stage, name = field
    try:
        parameters.resolve(stage, None, {name: value})
    except FacePruningError as e:
        _one_line(e)


def _file(data: bytes, suffix: str) -> Path:
    folder = Path(tempfile.mkdtemp())
    path = folder / f"f{suffix}"
    path.write_bytes(data)
    return path


@FUZZ
@given(data=st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_any_pairs_file_is_read_or_refused_in_one_line(data):
    try:
        parse_lfw_pairs(_file(data, ".txt"))
    except FacePruningError as e:
        _one_line(e)


pose_lines = st.lists(
    st.tuples(st.sampled_from(["n000001", "n000002", "", "x/y"]), st.text(max_size=8)).map(
        lambda t: f"{t[0]}/{t[1]}.jpg"
    ),
    max_size=70,
)


@FUZZ
@given(body=pose_lines, raw=st.binary(max_size=60))
def test_any_pose_template_list_is_read_or_refused_in_one_line(body, raw):
    text = "\n".join(body) + "\n"
    for data in (text.encode(), raw):
        try:
            parse_pose_templates(_file(data, ".txt"))
        except FacePruningError as e:
            _one_line(e)


@FUZZ
@given(meta=st.dictionaries(st.sampled_from(["image_size", "resize", "eer_threshold",
    "pixel_mean", "pixel_std"]), values))  # fmt: skip
def test_any_model_metadata_is_accepted_or_named(meta):
    try:
        check_meta(meta, source="m.onnx")
    except FacePruningError as e:
        _one_line(e)


box_lines = st.lists(
    st.tuples(
        st.text(max_size=6),
        *[st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=4)] * 4,
    ).map(lambda t: ",".join(map(str, t))),
    max_size=6,
)


@FUZZ
@given(body=box_lines, raw=st.binary(max_size=60))
def test_any_box_file_is_read_or_refused_in_one_line(body, raw):
    text = "NAME_ID,X,Y,W,H\n" + "\n".join(body) + "\n"
    for data in (text.encode(), text.encode() + raw, raw):
        try:
            parse_loose_bbox_lines(_file(data, ".csv"))
        except FacePruningError as e:
            _one_line(e)


@FUZZ
@given(data=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_params_file_is_read_or_refused_in_one_line(data):
    try:
        load_params(_file(data, ".yaml"), ["prune"])
    except FacePruningError as e:
        _one_line(e)


_MODEL = build_model("squeezenet", num_classes=3)
_SAVED = Path(tempfile.mkdtemp()) / "m.pt"
save_model(_SAVED, _MODEL, meta={})


@settings(max_examples=60, deadline=None)
@given(
    cut=st.integers(min_value=0, max_value=_SAVED.stat().st_size),
    flips=st.lists(st.integers(min_value=0, max_value=_SAVED.stat().st_size - 1), max_size=3),
    junk=st.binary(max_size=200),
)
def test_any_damaged_model_file_is_refused_in_one_line(cut, flips, junk):
    blob = bytearray(_SAVED.read_bytes()[:cut])
    for i in flips:
        if i < len(blob):
            blob[i] ^= 0xFF
    for data in (bytes(blob), junk):
        path = _file(data, ".pt")
        for load in (load_torch, load_model, lambda p: load_pruned(p, torch.nn.Linear(2, 2))):
            try:
                load(path)
            except FacePruningError as e:
                _one_line(e)
