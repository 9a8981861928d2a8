"""Exceptions raised for bad input: each message names the problem and the fix."""

__all__ = [
    "FacePruningError",
    "DataError",
    "ModelError",
    "PruningError",
    "ParameterError",
    "ArtifactError",
]


class FacePruningError(Exception):
    """Base class of the errors this package raises on purpose."""


class DataError(FacePruningError, ValueError):
    """The data set on disk cannot be used as asked (missing folder, too few images, ...)."""


class ModelError(FacePruningError, ValueError):
    """An unknown architecture, or weights that cannot be found or do not fit."""


class PruningError(FacePruningError, ValueError):
    """An impossible pruning request (more filters than can go, unknown criterion, ...)."""


class ParameterError(FacePruningError, ValueError):
    """A parameter that is unknown or out of range."""


class ArtifactError(FacePruningError, ValueError):
    """A file this package wrote (images, checkpoint, model) is truncated or corrupt."""
