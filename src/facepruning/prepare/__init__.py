"""Preparing a data set (notebook 01 / the prepare stage): only this step imports this package.

:mod:`.sources` finds the images (the ORL copy, any folder-per-identity tree), :mod:`.protocols`
parses the evaluation protocol files (LFW pairs, VGGFace2 pose templates and face boxes),
:mod:`.manifest` splits the identities into the manifest table, :mod:`.cache` decodes the image
cache and its statistics, and :mod:`.dataset` puts it all together in :func:`prepare_dataset`.
What reads the result back lives in :mod:`facepruning.data`.
"""

from .cache import build_cache, channel_stats, detect_channels
from .dataset import DATASETS, prepare_dataset, write_prepared
from .manifest import build_manifest, index_pairs, split_identities
from .protocols import (
    POSE_BLOCK,
    POSES,
    bbox_key,
    lfw_image_path,
    parse_lfw_pairs,
    parse_loose_bbox_lines,
    parse_loose_bboxes,
    parse_pose_templates,
)
from .sources import (
    IMAGE_EXTENSIONS,
    ORL_IDENTITIES,
    ORL_IMAGES_PER_IDENTITY,
    copy_orl,
    duplicate_folders,
    natural_key,
    orl_source_dir,
    orl_source_files,
    scan_identity_folders,
)

__all__ = [
    "DATASETS",
    "IMAGE_EXTENSIONS",
    "ORL_IDENTITIES",
    "ORL_IMAGES_PER_IDENTITY",
    "POSES",
    "POSE_BLOCK",
    "bbox_key",
    "build_cache",
    "build_manifest",
    "channel_stats",
    "copy_orl",
    "detect_channels",
    "duplicate_folders",
    "index_pairs",
    "lfw_image_path",
    "natural_key",
    "orl_source_dir",
    "orl_source_files",
    "parse_lfw_pairs",
    "parse_loose_bbox_lines",
    "parse_loose_bboxes",
    "parse_pose_templates",
    "prepare_dataset",
    "scan_identity_folders",
    "split_identities",
    "write_prepared",
]
