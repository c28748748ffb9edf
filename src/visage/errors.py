"""Exceptions raised by visage. Every one carries a message meant for a person."""

from __future__ import annotations


class VisageError(Exception):
    """Base class: anything visage refuses to do, with a readable reason."""


class ImageError(VisageError):
    """An input could not be read as an image (missing, corrupt, truncated, too large...)."""


class ModelError(VisageError):
    """A pretrained model file is missing, corrupt or of the wrong version."""


class FaceCountError(VisageError):
    """The caller asked for exactly one face and the image had none or several."""


class GalleryError(VisageError):
    """A gallery cannot be opened or changed as asked (corrupt or foreign file, mixed encoders...)."""


class SpoofError(VisageError):
    """A liveness check refused the input: a presentation attack, or not enough evidence of a live face.

    ``result`` holds the :class:`visage.liveness.LivenessResult` that explains the refusal.
    """

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result
