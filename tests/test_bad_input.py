"""Every bad input and fault a hostile but fair user tried gets a named answer: one line of the
package's own naming the file or parameter, the problem and the fix; nothing silent."""

from __future__ import annotations

import io
import json
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from test_export import META, face_images, prepared

import facepruning
from facepruning.artifacts import load_torch
from facepruning.data import load_prepared
from facepruning.errors import ArtifactError, DataError, ModelError, ParameterError, PruningError
from facepruning.models import save_model
from facepruning.parameters import PrepareParameters, PruneParameters, TrainParameters
from facepruning.prepare import scan_identity_folders
from facepruning.prepare.cache import detect_channels
from facepruning.prepare.protocols import parse_lfw_pairs, parse_loose_bbox_lines
from facepruning.project import load_params
from facepruning.pruning import select_channels


# -- parameters ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cls, kwargs, message",
    [
        (PruneParameters, {"lr": -0.1}, "lr=-0.1: give a positive rate"),
        (PruneParameters, {"finetune_lr": 0}, "finetune_lr=0: give a positive rate"),
        (PruneParameters, {"momentum": -0.5}, r"momentum=-0.5: must lie in \[0, 1\)"),
        (PruneParameters, {"weight_decay": -1e-4}, "weight_decay=-0.0001: must be at least 0"),
        (TrainParameters, {"num_workers": -1}, "num_workers=-1: must be at least 0"),
        (TrainParameters, {"lr_levels": [0.01, float("nan")]}, "give a finite number"),
        (PruneParameters, {"lr": float("inf")}, "lr=inf: give a finite number"),
        (PrepareParameters, {"seed": -1}, "seed=-1: must be at least 0"),
        (PrepareParameters, {"bbox_enlarge": -0.1}, "bbox_enlarge=-0.1: must be at least 0"),
        (TrainParameters, {"seed": -3}, "seed=-3: must be at least 0"),
        (TrainParameters, {"pixel_std": [1.0, 0.0, 1.0]}, r"pixel_std=\[1.0, 0.0, 1.0\]: give pos"),
    ],
)
def test_values_that_passed_the_checks_and_failed_later_are_named(cls, kwargs, message):
    with pytest.raises(ParameterError, match=message):
        cls(**kwargs)


def test_impossible_rounding_advises_what_the_checks_allow():
    from facepruning.pruning.loop import _Selection
    from facepruning.pruning.surgery import ChannelGroup

    groups = [ChannelGroup("a", 64, ["a"], ["a"]), ChannelGroup("b", 32, ["b"], ["b"])]
    with pytest.raises(PruningError) as info:
        _Selection(4, 3, None, 1, 100_000).check(groups)
    assert "lower steps to 0" not in str(info.value)
    assert "lower step_fraction" in str(info.value) and "channel_multiple" in str(info.value)


@pytest.mark.parametrize("m", [3, 7, 8, 16])
def test_channel_multiple_guarantees_multiples_for_any_m(m):
    # the promise for any m: every group the step touches ends on a multiple of m; a group
    # narrower than m, or one the step leaves alone, keeps its width
    g = torch.Generator().manual_seed(m)
    sizes = {"a": 25, "b": 64, "c": 5, "d": 130}
    scores = {k: torch.rand(n, generator=g, dtype=torch.float64) for k, n in sizes.items()}
    plan = select_channels(scores, count=20, channel_multiple=m)
    for name, removed in plan.items():
        assert (sizes[name] - len(removed)) % m == 0, (name, m)
    assert "c" not in plan or m <= 5


def test_a_multiple_that_does_not_divide_the_widths_is_said(caplog):
    from torch import nn

    from facepruning.pruning.loop import _Selection
    from facepruning.pruning.surgery import prunable_groups

    net = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 24, 3), nn.ReLU())
    groups = prunable_groups(net, example_input=torch.zeros(1, 3, 8, 8), ignored=[net[2]])
    for m, said in ((8, False), (7, True)):
        caplog.clear()
        with caplog.at_level("INFO", logger="facepruning"):
            _Selection(1, 1, None, 1, m).check(groups)
        assert (f"channel_multiple={m} does not divide the width of 1 of 1" in caplog.text) is said


def test_params_file_repeated_keys_wrong_shapes_and_encodings(tmp_path):
    twice = tmp_path / "twice.yaml"
    twice.write_text("prune:\n  lr: 0.1\n  lr: 0.2\n")
    with pytest.raises(ParameterError, match=r"key 'lr' at line 3 repeats the one at line 2"):
        load_params(twice, ["prune"])
    listed = tmp_path / "listed.yaml"
    listed.write_text("train: [1, 2]\n")
    with pytest.raises(ParameterError, match="section 'train' is a list"):
        load_params(listed, ["train"])
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"prune:\n  run: Jos\xe9\n")
    with pytest.raises(ParameterError, match="is not UTF-8; save the file as UTF-8"):
        load_params(latin, ["prune"])
    listed_key = tmp_path / "listed_key.yaml"
    listed_key.write_text("prune:\n  ? [1, 2]\n  : 3\n")
    with pytest.raises(ParameterError, match="key at line 2 is a list"):
        load_params(listed_key, ["prune"])


def test_yaml_merge_keys_are_followed_not_taken_for_repeats(tmp_path):
    merged = tmp_path / "merged.yaml"
    merged.write_text("base: &base\n  lr: 0.1\n  seed: 3\nprune:\n  <<: *base\n  lr: 0.2\n")
    assert load_params(merged, ["prune"]) == {"lr": 0.2, "seed": 3}


def test_a_criterion_typo_is_named_wherever_it_is_read():
    from facepruning.stages.prune import display_label_of, variant_of

    for read in (variant_of, display_label_of):
        with pytest.raises(ParameterError, match="criterion='taylr': choose one of"):
            read("taylr", True)


def test_an_unwritable_lock_folder_is_named(tmp_path):
    from facepruning.artifacts import claim_outputs

    blocked = tmp_path / "locks"
    blocked.write_text("a file where the lock folder should be")
    claim = claim_outputs([tmp_path / "out.json"], locks=blocked)
    with pytest.raises(ArtifactError, match=r"cannot create the lock .*set TMPDIR"), claim:
        pass


# -- real-world data files ----------------------------------------------------------------------
def test_latin1_pairs_are_read_and_bad_pairs_named(tmp_path):
    pairs = tmp_path / "pairs.txt"
    pairs.write_bytes("1 1\nJosé_María 1 2\nAnna 1 Bob 1\n".encode("latin-1"))
    table = parse_lfw_pairs(pairs)
    assert table.a[0] == "José_María/José_María_0001.jpg"
    pairs.write_text("1 1\nAnna 1 1\nAnna 1 Bob 1\n")
    with pytest.raises(DataError, match=r"pairs.txt:2: pairs image .* with itself"):
        parse_lfw_pairs(pairs)
    pairs.write_text("1 1\nAnna 1 2\nBob 1 Bob 2\n")
    with pytest.raises(DataError, match=r"pairs.txt:3: a mismatched pair of one person \(Bob\)"):
        parse_lfw_pairs(pairs)


@pytest.mark.parametrize(
    "line, message",
    [
        ("n1/0001_01,nan,1,10,10", "is not finite"),
        ("n1/0001_01,1,1,inf,10", "is not finite"),
        ("n1/0001_01,1,1,0.001,10", "at least 1 pixel"),
        ("n1/0001_01,1,1,10,10\nn1/0001_01,2,2,10,10", r":3: a second box for n1/0001_01"),
    ],
)
def test_degenerate_and_repeated_boxes_are_named(tmp_path, line, message):
    boxes = tmp_path / "bb.csv"
    boxes.write_text("NAME_ID,X,Y,W,H\n" + line + "\n")
    with pytest.raises(DataError, match=message):
        parse_loose_bbox_lines(boxes)


def test_names_that_are_not_utf8_are_refused_in_one_line(tmp_path):
    root = os.fsencode(tmp_path / "faces")
    os.makedirs(root + b"/Jos\xe9")
    Image.new("L", (8, 8)).save(os.fsdecode(root + b"/Jos\xe9/1.png"))
    with pytest.raises(DataError, match=r"not UTF-8, e\.g\. b'Jos\\xe9/1\.png'.*convmv"):
        scan_identity_folders(os.fsdecode(root))


def test_a_truncated_dataset_json_is_named(tmp_path):
    (tmp_path / "dataset.json").write_text('{"dataset": "orl", "num')
    with pytest.raises(DataError, match=r"dataset.json is truncated or corrupt.*prepare"):
        load_prepared(tmp_path)


def test_a_truncated_colour_image_does_not_make_gray_data_colour(tmp_path):
    for i in range(3):
        Image.new("L", (16, 16), i * 40).save(tmp_path / f"gray{i}.png")
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(buffer, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buffer.getvalue()[:200])  # header intact, data cut
    paths = ["gray0.png", "cut.jpg", "gray1.png", "gray2.png"]
    assert detect_channels(paths, root=tmp_path) == 1


# -- files given as models ----------------------------------------------------------------------
def test_what_is_not_a_model_is_named(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a model")
    with pytest.raises(ArtifactError, match=r"notes.pt is text, not a file this package saves"):
        facepruning.load_embedder(text)
    save_model(tmp_path / "m.pt", prepared("squeezenet", pruned=False), meta=META)
    facepruning.export_onnx(tmp_path / "m.pt", tmp_path / "m.onnx")
    as_pt = tmp_path / "onnx.pt"
    as_pt.write_bytes((tmp_path / "m.onnx").read_bytes())
    with pytest.raises(ArtifactError, match="is an ONNX model.*load_embedder"):
        facepruning.load_model(as_pt)
    fake = tmp_path / "fake.onnx"
    fake.write_text("hello")
    with pytest.raises(ModelError, match=r"fake.onnx is not an ONNX model onnxruntime can load"):
        facepruning.load_embedder(fake)
    pt_named_onnx = tmp_path / "model.onnx"
    pt_named_onnx.write_bytes((tmp_path / "m.pt").read_bytes())
    with pytest.raises(ModelError, match="not an ONNX model"):
        facepruning.load_embedder(pt_named_onnx)
    with pytest.raises(ArtifactError, match=r"notes.pt is text, not a file this package saves"):
        facepruning.export_onnx(text, tmp_path / "out.onnx")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(bytes(range(1, 9)) * 8)
    with pytest.raises(ArtifactError, match=r"junk.pt is truncated or corrupt"):
        facepruning.load_model(junk)
    with pytest.raises(ModelError, match=r"is a folder: give the model file"):
        facepruning.load_embedder(tmp_path)


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        ("image_size", '"abc"', r"unusable image_size in its metadata \('abc'; expected a whole"),
        ("resize", '"abc"', r"unusable resize in its metadata \('abc'"),
        ("resize", "-5", r"unusable resize .*at least image_size"),
        ("eer_threshold", '"abc"', r"unusable eer_threshold .*a finite number"),
        ("pixel_std", "[0, 1, 1]", r"unusable pixel_std .*positive numbers"),
    ],
)
def test_bad_model_metadata_is_named(tmp_path, key, value, said):
    """In an ONNX file's metadata, or in a .pt's meta (load_embedder and export both)."""
    import onnx

    save_model(tmp_path / "m.pt", prepared("squeezenet", pruned=False), meta=META)
    facepruning.export_onnx(tmp_path / "m.pt", tmp_path / "m.onnx")
    proto = onnx.load(tmp_path / "m.onnx")
    for prop in proto.metadata_props:
        if prop.key == key:
            prop.value = value
    onnx.save(proto, tmp_path / "bad.onnx")
    with pytest.raises(ModelError, match=r"bad\.onnx has an " + said):
        facepruning.load_embedder(tmp_path / "bad.onnx")
    bad_meta = {**META, "eer_threshold": 0.5, key: json.loads(value)}
    save_model(tmp_path / "bad.pt", prepared("squeezenet", pruned=False), meta=bad_meta)
    with pytest.raises(ModelError, match=r"bad\.pt has an " + said):
        facepruning.load_embedder(tmp_path / "bad.pt")
    with pytest.raises(ModelError, match=r"bad\.pt has an " + said):
        facepruning.export_onnx(tmp_path / "bad.pt", tmp_path / "out.onnx")


def test_a_pickle_holding_code_is_refused_and_never_advised_to_run(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo never",))

    for name, data in (("plain", pickle.dumps(Payload())), ("torch", _torch_bytes(Payload()))):
        path = tmp_path / f"{name}.pt"
        path.write_bytes(data)
        with pytest.raises(ArtifactError) as info:
            load_torch(path)
        message = str(info.value)
        assert "refused" in message and "weights_only" not in message, message


def _torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save({"x": obj}, buffer)
    return buffer.getvalue()


def test_a_crafted_layout_is_refused_before_allocating(tmp_path):
    model = prepared("squeezenet", pruned=False)
    save_model(tmp_path / "m.pt", model, meta=META)
    saved = torch.load(tmp_path / "m.pt", weights_only=True)
    name = next(iter(saved["layout"]))
    saved["layout"][name]["out"] = 10**12
    torch.save(saved, tmp_path / "huge.pt")
    with pytest.raises(ModelError, match=r"out=1000000000000 is not a channel count"):
        facepruning.load_model(tmp_path / "huge.pt")


def test_export_checks_opset_and_output_path_first(tmp_path):
    save_model(tmp_path / "m.pt", prepared("squeezenet", pruned=False), meta=META)
    with pytest.raises(ModelError, match=r"opset=3: the exporter writes ONNX opsets 11 to 20"):
        facepruning.export_onnx(tmp_path / "m.pt", tmp_path / "m.onnx", opset=3)
    with pytest.raises(ModelError, match="is a folder: give the ONNX file's path"):
        facepruning.export_onnx(tmp_path / "m.pt", tmp_path)


def test_embed_and_similarity_check_their_arguments(tmp_path):
    save_model(tmp_path / "m.pt", prepared("squeezenet", pruned=False), meta=META)
    face = facepruning.load_embedder(tmp_path / "m.pt")
    with pytest.raises(DataError, match=r"embed\(\) got a NoneType"):
        face.embed(None)
    with pytest.raises(DataError, match=r"embed\(\) got int among the images"):
        face.embed([3])
    with pytest.raises(DataError, match="of a 30-value and a 7-value descriptor"):
        face.similarity(np.ones(30, dtype=np.float32), np.ones(7, dtype=np.float32))
    with pytest.raises(DataError, match="descriptor holding NaN or infinity"):
        face.similarity(np.full(30, np.nan, dtype=np.float32), np.ones(30, dtype=np.float32))


def test_onnx_embedder_runs_from_its_metadata_alone(tmp_path):
    """An outsider with onnxruntime and the file's metadata, nothing of this package, gets the
    descriptors load_embedder gives (the normalisation is inside the graph, as it says)."""
    import onnxruntime as ort

    save_model(tmp_path / "m.pt", prepared("squeezenet", pruned=True), meta=META)
    facepruning.export_onnx(tmp_path / "m.pt", tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert "inside the graph" in meta["normalization"] and "bilinear" in meta["interpolation"]
    size, resize = json.loads(meta["image_size"]), json.loads(meta["resize"])
    _, paths = face_images(tmp_path)
    batch = []
    for path in paths:
        img = Image.open(path)
        img = img.convert("L") if json.loads(meta.get("channels", "3")) == 1 else img
        w, h = img.size
        scale = resize / min(w, h)
        img = img.resize(
            (max(resize, round(w * scale)), max(resize, round(h * scale))),
            Image.Resampling.BILINEAR,
            reducing_gap=3.0,
        )
        left, top = (img.width - size) // 2, (img.height - size) // 2
        arr = np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.float32)
        arr = np.repeat(arr[None], 3, 0) if arr.ndim == 2 else arr.transpose(2, 0, 1)
        batch.append(arr)
    outsider = session.run(None, {session.get_inputs()[0].name: np.stack(batch)})[0]
    ours = facepruning.load_embedder(tmp_path / "m.onnx").embed(paths)
    np.testing.assert_allclose(outsider, ours, atol=1e-5)
