"""Reading prepared data: what every stage needs to feed images to a network.

Training, pruning and evaluation import only this package: the manifest schema and reader
(:mod:`.manifest`), image decoding and the face crop (:mod:`.images`), and the datasets and batch
transform (:mod:`.loaders`). Writing the prepared data is :mod:`facepruning.prepare`'s job; this
package never imports it.
"""

from .images import (
    GRAYSCALE_MODES,
    ON_ERROR,
    Box,
    check_on_error,
    face_tensor,
    image_to_tensor,
    load_face,
    loose_box_crop,
    read_image,
    resize_center_square,
)
from .loaders import BatchTransform, FaceDataset, PreparedData, load_prepared
from .manifest import BOX_COLUMNS, BOX_LINE_COLUMN, MANIFEST_COLUMNS, SPLITS, read_manifest

__all__ = [
    "BOX_COLUMNS",
    "BOX_LINE_COLUMN",
    "GRAYSCALE_MODES",
    "MANIFEST_COLUMNS",
    "ON_ERROR",
    "SPLITS",
    "BatchTransform",
    "Box",
    "FaceDataset",
    "PreparedData",
    "check_on_error",
    "face_tensor",
    "image_to_tensor",
    "load_face",
    "load_prepared",
    "loose_box_crop",
    "read_image",
    "read_manifest",
    "resize_center_square",
]
