"""Exceptions raised by visage. Every one carries a message meant for a person.

There is one class per condition that a caller, or an HTTP status, must tell apart: the server
chooses its status by the class (``visage.server.app.status_for``), never by the message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .liveness.fuse import LivenessResult


class VisageError(Exception):
    """Base class: anything visage refuses to do, with a readable reason."""


class InvalidArgument(VisageError, ValueError):
    """An argument is out of its range or names nothing visage knows (a detector, an encoder...)."""


class ImageError(VisageError):
    """An input could not be read as an image (missing, corrupt, truncated, too large...)."""


class ModelError(VisageError):
    """A pretrained model file is missing, corrupt or of the wrong version."""


class FaceCountError(VisageError):
    """The caller asked for exactly one face and the image had none or several."""


class GalleryError(VisageError):
    """A gallery cannot be opened or changed as asked (corrupt or foreign file, mixed encoders...)."""


class GalleryDamaged(GalleryError):
    """A gallery file is sound SQLite but holds rows visage cannot use (the message names the row)."""


class StorageFull(VisageError):
    """A write failed because the disk (or the user's quota) is full; nothing was half-written."""


class PersonNotFound(GalleryError):
    """The gallery has no person of that name."""


class FaceNotFound(GalleryError):
    """The gallery has no stored face with that id."""


class NameTaken(GalleryError):
    """A rename or an enrolment would give two people the same name."""


class ChallengeError(VisageError):
    """A liveness challenge cannot be used as asked (full, busy, belongs to another key)."""


class ChallengeNotFound(ChallengeError):
    """No open challenge has that id (unknown, expired or already answered)."""


class SpoofError(VisageError):
    """A liveness check refused the input: a presentation attack, or not enough evidence of a live face.

    ``result`` holds the :class:`visage.liveness.LivenessResult` that explains the refusal.
    """

    def __init__(self, message: str, result: LivenessResult | None = None):
        super().__init__(message)
        self.result = result
