"""Loaders: reading the prepared folder, FaceDataset (cache and streaming), BatchTransform."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from facepruning.data import BatchTransform, FaceDataset, load_prepared
from facepruning.errors import DataError, ParameterError
from facepruning.prepare import prepare_dataset


@pytest.fixture(scope="module")
def orl(tmp_path_factory):
    base = tmp_path_factory.mktemp("orl")
    prepare_dataset(dataset="orl", raw_dir=base / "raw", out_dir=base / "processed", progress=False)
    return load_prepared(base / "processed")


@pytest.fixture(scope="module")
def boxed(tmp_path_factory):
    """A colour folder tree with loose boxes, so streaming must crop like the cache."""
    base = tmp_path_factory.mktemp("boxed")
    rng = np.random.default_rng(0)
    rows = ["NAME_ID,X,Y,W,H"]
    for n in range(5):
        for k in range(4):
            path = base / "faces" / f"n{n:06d}" / f"{k:04d}_01.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(path)
            rows.append(f"n{n:06d}/{k:04d}_01,{n},{k},{15 + n},{20 + k}")
    (base / "bb.csv").write_text("\n".join(rows))
    prepare_dataset(
        dataset="vggface2",
        data_root=base / "faces",
        bbox_file=base / "bb.csv",
        out_dir=base / "processed",
        test_identities=2,
        val_per_identity=1,
        min_images_per_identity=2,
        resize=12,
        image_size=10,
        progress=False,
    )
    return load_prepared(base / "processed")


def test_orl_prepared_counts(orl):
    m = orl.manifest
    assert len(m) == 400 and m.identity.nunique() == 40
    assert orl.images.shape == (400, 1, 73, 73) and orl.images.dtype == torch.uint8
    assert orl.info["counts"] == {"train": 240, "val": 60, "test": 100}
    assert orl.num_classes == 30 and orl.pairs is None
    assert not set(m[m.split == "test"].identity) & set(m[m.split != "test"].identity)


def test_load_prepared_missing_says_run_notebook_01(tmp_path):
    with pytest.raises(DataError, match="notebook 01"):
        load_prepared(tmp_path / "processed")


def test_load_prepared_refuses_a_cache_from_another_run(tmp_path, orl):
    import shutil

    from facepruning.artifacts import save_torch

    src = orl.data_root.parent.parent / "processed"
    shutil.copytree(src, tmp_path / "p")
    save_torch(tmp_path / "p" / "images.pt", {"images": orl.images[:10]})
    with pytest.raises(DataError, match="10 images but the manifest 400 rows"):
        load_prepared(tmp_path / "p")


def test_face_dataset_items_and_splits(orl):
    train = FaceDataset(orl, "train")
    assert len(train) == 240
    image, label, index = train[5]
    row = orl.manifest.iloc[index]
    assert row.split == "train" and label == row.label >= 0
    assert torch.equal(image, orl.images[index]) and image.shape == (1, 73, 73)
    test = FaceDataset(orl, "test")
    assert {test[i][1] for i in range(len(test))} == {-1}
    assert len(FaceDataset(orl, ("train", "val"))) == 300
    with pytest.raises(ParameterError, match="unknown split"):
        FaceDataset(orl, "validation")


@pytest.mark.parametrize("name", ["orl", "boxed"])
def test_streaming_decodes_exactly_what_the_cache_holds(name, request):
    prepared = request.getfixturevalue(name)
    streaming = dataclasses.replace(prepared, images=None)
    for split in ("train", "test"):
        cached, streamed = FaceDataset(prepared, split), FaceDataset(streaming, split)
        for i in range(0, len(cached), max(1, len(cached) // 7)):
            a, b = cached[i], streamed[i]
            assert torch.equal(a[0], b[0]) and a[1:] == b[1:]


def test_boxes_change_the_crop(boxed):
    # Guard for the test above: without the box the decoded image differs.
    from facepruning.data import load_face

    row = boxed.manifest.iloc[0]
    whole = load_face(boxed.data_root / row.path, size=12, channels=3)
    assert not torch.equal(whole, boxed.images[0])


def test_streaming_box_error_names_the_image_and_the_box_file_line(boxed):
    manifest = boxed.manifest.copy()
    row = int(np.flatnonzero(manifest.split == "train")[0])
    manifest.loc[row, "box_x"] = 500.0  # far outside the 30-pixel-wide image
    line = int(manifest.loc[row, "box_line"])
    streaming = dataclasses.replace(boxed, manifest=manifest, images=None)
    with pytest.raises(DataError) as caught:
        FaceDataset(streaming, "train")[0]
    message = str(caught.value)
    assert manifest.loc[row, "path"] in message
    assert f"bb.csv:{line}" in message and "np.float64" not in message
    # The line really is the one that holds this image's box.
    text = (boxed.data_root.parent / "bb.csv").read_text().splitlines()
    assert text[line - 1].startswith(manifest.loc[row, "path"].rsplit(".", 1)[0] + ",")


# ----------------------------------------------------------------------------- BatchTransform


def _position_batch(b: int = 64, s: int = 9) -> torch.Tensor:
    """Grayscale images whose pixel value encodes its position: value = 10 * row + col."""
    grid = (torch.arange(s)[:, None] * 10 + torch.arange(s)[None, :]).to(torch.uint8)
    return grid.expand(b, 1, s, s).clone()


def test_eval_is_the_centre_crop_normalised():
    rng = np.random.default_rng(1)
    batch = torch.from_numpy(rng.integers(0, 256, (4, 3, 11, 11), dtype=np.uint8))
    mean, std = (10.0, 20.0, 30.0), (2.0, 4.0, 8.0)
    out = BatchTransform(image_size=8, mean=mean, std=std, train=False)(batch)
    assert out.shape == (4, 3, 8, 8) and out.dtype == torch.float32
    assert out.is_contiguous(memory_format=torch.channels_last)
    expected = batch[:, :, 1:9, 1:9].double().numpy()
    expected = (expected - np.array(mean)[None, :, None, None]) / np.array(std)[None, :, None, None]
    assert np.allclose(out.numpy(), expected, atol=1e-5)


def test_grayscale_is_replicated_to_three_channels():
    batch = _position_batch(b=2, s=9)
    out = BatchTransform(image_size=9, mean=1.0, std=2.0, train=False)(batch)
    assert out.shape == (2, 3, 9, 9)
    expected = (batch.float() - 1.0) / 2.0
    for c in range(3):
        assert torch.equal(out[:, c : c + 1], expected)


def test_train_crops_and_flips_are_real_crops_and_flips():
    s, crop = 9, 6
    batch = _position_batch(b=64, s=s)
    out = (
        BatchTransform(image_size=crop, mean=0, std=1, train=True)(
            batch, torch.Generator().manual_seed(0)
        )[:, 0]
        .round()
        .long()
    )
    seen_offsets, seen_flips = set(), set()
    for img in out:
        flipped = bool(img[0, 1] < img[0, 0])
        corner = int(img[0, -1] if flipped else img[0, 0])  # top-left of the original window
        top, left = divmod(corner, 10)
        window = batch[0, 0, top : top + crop, left : left + crop].long()
        assert torch.equal(img, window.flip(-1) if flipped else window)
        seen_offsets.add((top, left))
        seen_flips.add(flipped)
    assert seen_flips == {True, False} and len(seen_offsets) > 5
    assert all(0 <= t <= s - crop and 0 <= lf <= s - crop for t, lf in seen_offsets)


def test_train_is_deterministic_for_a_seeded_generator_and_leaves_global_rng_alone():
    batch = _position_batch(b=16)
    t = BatchTransform(image_size=5, mean=0, std=1, train=True)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = t(batch, torch.Generator().manual_seed(7))
    b = t(batch, torch.Generator().manual_seed(7))
    c = t(batch, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.get_rng_state(), state)
    g = torch.Generator().manual_seed(7)
    first, second = t(batch, g), t(batch, g)
    assert not torch.equal(first, second)  # the generator advances between batches


def test_train_without_crop_and_flip_equals_eval():
    batch = _position_batch(b=8)
    plain = BatchTransform(image_size=5, mean=3, std=2, train=True, hflip=False, random_crop=False)
    evaluation = BatchTransform(image_size=5, mean=3, std=2, train=False)
    assert torch.equal(plain(batch, torch.Generator().manual_seed(0)), evaluation(batch))


def test_batch_transform_rejects_bad_input():
    t = BatchTransform(image_size=12, mean=0, std=1, train=False)
    with pytest.raises(DataError, match="uint8"):
        t(torch.zeros((2, 3, 12, 12)))
    with pytest.raises(ParameterError, match="larger than"):
        t(torch.zeros((2, 3, 8, 8), dtype=torch.uint8))
    with pytest.raises(ParameterError, match="std must be positive"):
        BatchTransform(image_size=4, mean=0, std=0, train=False)
    with pytest.raises(ParameterError, match="1 or 3 values"):
        BatchTransform(image_size=4, mean=(1, 2), std=1, train=False)
