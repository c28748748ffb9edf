"""Liveness (presentation-attack) detection: is the face in front of the camera live, or a print or a screen?

::

    from visage import liveness
    result = liveness.check("door.jpg")          # one image: the passive check
    result = liveness.check("door.mp4")          # a clip: passive + blinks + planarity
    result.live, result.score, result.evidence   # True / False / None (insufficient evidence)
    liveness.require_live("door.jpg")            # raises SpoofError unless live

    challenge = liveness.new_challenge()         # e.g. ['turn_left', 'blink', 'turn_right']
    result = liveness.check(frames, challenge=challenge)

The passive model was trained on simulated attacks (see :mod:`visage.liveness.simulate`), not on
real ones; ``docs/liveness.md`` reports its numbers on real and simulated attacks separately.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import cast

import numpy as np

from ..config import DEFAULT_DETECTOR
from ..errors import ImageError
from ..evaluation.metrics import PadMetrics, pad_metrics
from ..evaluation.plots import plot_det
from ..faces.detect import detect_faces
from ..faces.track import track_largest
from ..faces.types import Face
from ..media.images import Image, ImageSource, load_image
from ..media.video import VIDEO_SUFFIXES, is_video, read_frames  # read_frames, VIDEO_SUFFIXES: re-exported
from .active import count_blinks, new_challenge
from .fuse import THRESHOLD, LivenessResult, admitted, check_frames, check_image, refuse_unless_live

__all__ = [
    "THRESHOLD",
    "VIDEO_SUFFIXES",
    "LivenessResult",
    "PadMetrics",
    "admitted",
    "check",
    "count_blinks",
    "new_challenge",
    "pad_metrics",
    "plot_det",
    "read_frames",
    "require_live",
]


def check(image_or_frames: ImageSource | Sequence[ImageSource], *, faces: Sequence[Face] | None = None,
          challenge: Sequence[str] | None = None, fps: float | None = None, detector: str = DEFAULT_DETECTOR,
          min_face_size: float | None = None, min_score: float | None = None,
          model_path: str | os.PathLike | None = None) -> LivenessResult:
    """Is the largest face live? Returns a :class:`LivenessResult` (``live`` True, False or None).

    ``image_or_frames`` is one image (anything :func:`visage.load_image` takes), a video file, or a
    sequence of frames. A single image gets the passive check on the largest of ``faces``, the
    faces already found in it (:func:`visage.detect`); without them it is detected here. A sequence
    adds blinks, planarity and, when ``challenge`` (from :func:`new_challenge`) is given, the
    head-turn challenge. Without a challenge a replayed video cannot be ruled out (it blinks and is
    not planar): the evidence says so, and :func:`require_live` refuses such a clip.
    ``fps`` is the sequence's frame rate (read from a video file; 30 when unknown). ``detector``,
    ``min_face_size`` and ``min_score`` are :func:`visage.detect`'s (a clip's frames look for faces
    of at least 12% of the shorter side unless ``min_face_size`` is given).
    """
    from .passive import load_model

    model = load_model(model_path)
    if isinstance(image_or_frames, (str, os.PathLike)) and is_video(image_or_frames):
        frames, file_fps = read_frames(image_or_frames)
        track = track_largest(frames, detector, min_face_size=min_face_size, min_score=min_score)
        return check_frames(frames, track, str(image_or_frames), fps or file_fps, challenge, model)
    if _is_sequence(image_or_frames):
        frames = [load_image(f).pixels for f in cast(Sequence[ImageSource], image_or_frames)]
        if not frames:
            raise ImageError("no frames given")
        track = track_largest(frames, detector, min_face_size=min_face_size, min_score=min_score)
        return check_frames(frames, track, f"<{len(frames)} frames>", fps or 30.0, challenge, model)
    if challenge:
        raise ImageError("a challenge needs a video or a frame sequence, not a single image")
    img = load_image(cast(ImageSource, image_or_frames))  # not a sequence, by the test above
    if faces is None:
        faces = detect_faces(img.pixels, detector, min_face_size, landmarks68=False, min_score=min_score)
    return check_image(img.pixels, faces, img.name, model)


def require_live(image_or_frames: ImageSource | Sequence[ImageSource], **kwargs) -> LivenessResult:
    """Like :func:`check`, but raises :class:`~visage.errors.SpoofError` unless the face is live.

    The error says whether the input was judged an attack or the evidence was missing, and carries
    the :class:`LivenessResult` as ``.result``. A video or frame sequence without a ``challenge``
    is refused too, even when it looks live: only a challenge tells a live person from a replayed
    recording. Returns the result when live.
    """
    return refuse_unless_live(check(image_or_frames, **kwargs))


def _is_sequence(value) -> bool:
    if isinstance(value, np.ndarray):
        return value.ndim == 4
    return isinstance(value, (list, tuple)) and not isinstance(value, (str, bytes, Image))
