"""ONNX export and the embedding API: ONNX Runtime computes what PyTorch computes, pruned or not,
the metadata says how to prepare images, and ``.pt`` and ``.onnx`` embedders agree."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image
from synthetic import randomise_batchnorm
from torch import nn

import facepruning
from facepruning.errors import ModelError
from facepruning.export import EmbeddingNet, export_onnx
from facepruning.models import build_model, save_model
from facepruning.pruning import prunable_groups, remove_channels

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

SIZE = 32
META = {
    "image_size": SIZE,
    "resize": 36,
    "pixel_mean": [131.0, 104.0, 91.5],
    "pixel_std": [60.0, 55.0, 50.0],
    "criterion": "taylor_activation",
    "filters_removed_pct": 12.5,
    "eer_threshold": 0.25,
}


def prepared(arch: str, *, pruned: bool) -> nn.Module:
    """Random BN statistics (so masking matters) and, if ``pruned``, a quarter of the channels of
    every other group removed."""
    torch.manual_seed(0)
    model = build_model(arch, num_classes=6)
    randomise_batchnorm(model, bias_std=0.2, mean_std=0.1)
    if pruned:
        x = torch.zeros(1, 3, SIZE, SIZE)
        groups = prunable_groups(model, example_input=x)
        plan = {g.name: list(range(0, g.size, 4)) for g in groups[::2] if g.size > 1}
        remove_channels(model, plan, example_input=x)
    return model.eval()


def torch_descriptors(model, x: torch.Tensor) -> np.ndarray:
    net = EmbeddingNet(model, pixel_mean=META["pixel_mean"], pixel_std=META["pixel_std"])
    with torch.no_grad():
        return net.eval()(x).numpy()


@pytest.mark.parametrize("pruned", [False, True], ids=["unpruned", "pruned"])
@pytest.mark.parametrize("arch", ["squeezenet", "mobilenet_v2", "resnet50"])
def test_onnx_matches_torch(arch, pruned, tmp_path):
    model = prepared(arch, pruned=pruned)
    before = copy.deepcopy(model.state_dict())
    out = tmp_path / f"{arch}.onnx"
    written = export_onnx(model, out, meta=META)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    g = torch.Generator().manual_seed(1)
    for n in (1, 3):
        x = torch.rand(n, 3, SIZE, SIZE, generator=g) * 255
        got = session.run(None, {"images": x.numpy()})[0]
        ref = torch_descriptors(model, x)
        diff = float(np.abs(got - ref).max())
        state = "pruned" if pruned else "unpruned"
        print(f"{arch} {state} batch {n}: max |onnx - torch| {diff:.2e}")
        assert got.shape == (n, model.descriptor_size)
        assert diff < 1e-4
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    props = session.get_modelmeta().custom_metadata_map
    assert props == written
    assert props["arch"] == arch and props["crop"] == "center"
    assert props["image_size"] == str(SIZE) and props["resize"] == "36"
    assert props["pixel_mean"] == "[131.0, 104.0, 91.5]"
    assert props["descriptor_size"] == str(model.descriptor_size)
    assert props["eer_threshold"] == "0.25" and props["criterion"] == "taylor_activation"
    assert props["filters_removed_pct"] == "12.5" and int(props["parameters"]) > 0
    assert "replicate" in props["grayscale"]


def test_export_is_deterministic_and_has_no_paths(tmp_path):
    model = prepared("squeezenet", pruned=True)
    save_model(tmp_path / "m.pt", model, meta=META)
    a, b = tmp_path / "a" / "x.onnx", tmp_path / "b" / "x.onnx"
    export_onnx(tmp_path / "m.pt", a)
    export_onnx(tmp_path / "m.pt", b)
    data = a.read_bytes()
    assert data == b.read_bytes()
    assert str(tmp_path).encode() not in data
    proto = onnx.load(str(a))
    assert not proto.doc_string and not any(n.doc_string for n in proto.graph.node)
    assert sorted(p.name for p in a.parent.iterdir()) == ["x.onnx"]  # no temporary left


def test_export_needs_the_preprocessing(tmp_path):
    with pytest.raises(ModelError, match="pixel_mean"):
        export_onnx(prepared("squeezenet", pruned=False), tmp_path / "x.onnx", meta={})
    assert not (tmp_path / "x.onnx").exists()


def test_cli_export(tmp_path, capsys):
    from facepruning.cli import main

    save_model(tmp_path / "m.pt", prepared("squeezenet", pruned=False), meta=META)
    assert main(["export", str(tmp_path / "m.pt"), str(tmp_path / "m.onnx")]) == 0
    assert "wrote" in capsys.readouterr().out
    assert (tmp_path / "m.onnx").stat().st_size > 0


def face_images(tmp_path):
    """PNG files and PIL images: RGB and grayscale, several sizes and aspect ratios."""
    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 256, (50, 40, 3), dtype=np.uint8), "RGB"),
        Image.fromarray(rng.integers(0, 256, (36, 36), dtype=np.uint8), "L"),
        Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8), "RGB"),
        Image.fromarray(rng.integers(0, 256, (64, 48), dtype=np.uint8), "L"),
    ]
    paths = []
    for i, img in enumerate(images):
        paths.append(tmp_path / f"face{i}.png")
        img.save(paths[-1])
    return images, paths


@pytest.mark.parametrize("arch", ["squeezenet", "mobilenet_v2"])
def test_pt_and_onnx_embedders_agree(arch, tmp_path):
    save_model(tmp_path / "m.pt", prepared(arch, pruned=True), meta=META)
    facepruning.export_onnx(tmp_path / "m.pt", tmp_path / "m.onnx")
    images, paths = face_images(tmp_path)
    pt = facepruning.load_embedder(tmp_path / "m.pt")
    ox = facepruning.load_embedder(tmp_path / "m.onnx")
    d_pt, d_ox = pt.embed(images), ox.embed(paths)
    assert d_pt.shape == (4, facepruning.load_model(tmp_path / "m.pt")[0].descriptor_size)
    assert float(np.abs(d_pt - d_ox).max()) < 1e-4
    assert float(np.abs(pt.embed(paths) - d_pt).max()) == 0.0  # paths and PIL images alike
    np.testing.assert_allclose(np.linalg.norm(d_ox, axis=1), 1.0, atol=1e-5)
    assert pt.threshold == ox.threshold == 0.25
    # one image at a time gives the same rows (batching does not matter)
    assert float(np.abs(ox.embed(paths[2]) - d_ox[2:3]).max()) < 1e-5


def _prepared_from_metadata(img: Image.Image, meta: dict) -> np.ndarray:
    """The input the ONNX metadata describes, computed from its words alone (``preparation``),
    without this package."""
    size, resize = int(meta["image_size"]), int(meta["resize"])
    w, h = img.size
    scale = resize / min(w, h)
    nw, nh = max(resize, round(w * scale)), max(resize, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=3.0)
    left, top = (nw - resize) // 2, (nh - resize) // 2
    img = img.crop((left, top, left + resize, top + resize))
    gray = json.loads(meta.get("channels", "3")) == 1 or img.mode in ("L", "I", "F")
    img = img.convert("L").convert("RGB") if gray else img.convert("RGB")
    arr = np.asarray(img, dtype=np.float32).transpose(2, 0, 1)
    off = (resize - size) // 2
    return arr[:, off : off + size, off : off + size]


@pytest.mark.parametrize("channels", [1, 3])
def test_onnx_embeds_from_its_metadata_alone_as_load_embedder_does(channels, tmp_path):
    # odd sizes, so that cropping the central square first and then the input matters
    save_model(
        tmp_path / "m.pt",
        prepared("squeezenet", pruned=True),
        meta={**META, "resize": 37, "image_size": 32, "channels": channels},
    )
    facepruning.export_onnx(tmp_path / "m.pt", tmp_path / "m.onnx")
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert "inside the graph" in meta["normalization"] and "bilinear" in meta["interpolation"]
    images, _ = face_images(tmp_path)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    batch = np.stack([_prepared_from_metadata(img, meta) for img in images])
    (from_metadata,) = session.run(None, {session.get_inputs()[0].name: batch})
    from_package = facepruning.load_embedder(tmp_path / "m.pt").embed(images)
    assert float(np.abs(from_metadata - from_package).max()) < 1e-5
    # applying the normalisation a second time, the mistake the metadata warns of, ruins them
    mean = np.asarray(json.loads(meta["pixel_mean"]), dtype=np.float32)[None, :, None, None]
    std = np.asarray(json.loads(meta["pixel_std"]), dtype=np.float32)[None, :, None, None]
    (twice,) = session.run(None, {session.get_inputs()[0].name: (batch - mean) / std})
    assert float(np.abs(twice - from_package).max()) > 1e-2


def test_preprocessing_is_the_pipelines(tmp_path):
    """Grayscale replicated, shortest side to ``resize``, centre crop of ``image_size``."""
    from facepruning.data import BatchTransform
    from facepruning.data.images import image_to_tensor, resize_center_square

    save_model(tmp_path / "m.pt", prepared("squeezenet", pruned=False), meta=META)
    face = facepruning.load_embedder(tmp_path / "m.pt")
    images, _ = face_images(tmp_path)
    transform = BatchTransform(image_size=SIZE, mean=0.0, std=1.0, train=False)
    for img in images:
        channels = 1 if img.mode == "L" else 3
        cached = image_to_tensor(resize_center_square(img, 36), channels=channels)
        expected = transform(cached[None])[0].numpy()
        assert np.array_equal(face.prepare(img), expected)


def test_verify_and_similarity(tmp_path):
    save_model(tmp_path / "m.pt", prepared("squeezenet", pruned=False), meta=META)
    images, paths = face_images(tmp_path)
    face = facepruning.load_embedder(tmp_path / "m.pt")
    assert face.similarity(paths[0], images[0]) == pytest.approx(1.0, abs=1e-6)
    assert face.verify(paths[0], paths[0])
    s = face.similarity(paths[0], paths[2])
    d = face.embed([paths[0], paths[2]])
    assert face.similarity(d[0], d[1]) == pytest.approx(s, abs=1e-6)
    strict = facepruning.load_embedder(tmp_path / "m.pt", threshold=s + 1e-3)
    assert strict.verify(paths[0], paths[2]) is False
    assert facepruning.load_embedder(tmp_path / "m.pt", threshold=s - 1e-3).verify(*paths[::2])
    no_threshold = {k: v for k, v in META.items() if k != "eer_threshold"}
    save_model(tmp_path / "n.pt", prepared("squeezenet", pruned=False), meta=no_threshold)
    with pytest.raises(ModelError, match=r"load_embedder\(path, threshold=\.\.\.\)"):
        facepruning.load_embedder(tmp_path / "n.pt").verify(paths[0], paths[1])


def test_import_stays_light():
    import subprocess
    import sys

    code = "import sys, facepruning; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert {"build_model", "save_model", "load_model", "export_onnx", "load_embedder"} <= set(
        facepruning.__all__
    )
