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
from pathlib import Path

import numpy as np

from ..errors import ImageError
from ..imageio import Image, ImageSource, load_image
from .active import count_blinks, new_challenge
from .fuse import THRESHOLD, LivenessResult, check_frames, check_image, refuse_unless_live
from .metrics import PadMetrics, pad_metrics, plot_det

__all__ = ["check", "require_live", "LivenessResult", "new_challenge", "count_blinks", "read_frames",
           "pad_metrics", "plot_det", "PadMetrics", "THRESHOLD", "VIDEO_SUFFIXES"]

#: File suffixes read as video rather than as one image.
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
#: Frames read from a video by default, spread over the whole clip (every frame of 5 s at 30 fps).
MAX_FRAMES = 150
#: Frames are scaled down to this longer side: landmarks need no more, and detection is faster.
MAX_FRAME_SIDE = 960


def read_frames(path: str | os.PathLike, max_frames: int = MAX_FRAMES, max_side: int = MAX_FRAME_SIDE
                ) -> tuple[list[np.ndarray], float]:
    """Decode at most ``max_frames`` RGB uint8 frames spread over the whole video; returns (frames, fps).

    A clip longer than ``max_frames`` is read every k-th frame, so the frames cover all of it, and
    ``fps`` is then the rate of the frames returned (the file's rate / k). Raises
    :class:`~visage.errors.ImageError` naming the file when it is missing or unreadable.
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise ImageError(f"{path}: not a video file visage can read")
        fps = float(capture.get(cv2.CAP_PROP_FPS)) or 30.0
        fps = fps if 1 <= fps <= 240 else 30.0
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        stride = max(1, -(-count // max_frames)) if count > 0 else 1
        frames: list[np.ndarray] = []
        index = 0
        while len(frames) < max_frames and capture.grab():
            if index % stride == 0:
                ok, frame = capture.retrieve()
                if not ok:
                    break
                scale = max_side / max(frame.shape[:2])
                if scale < 1:
                    frame = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
                frames.append(np.ascontiguousarray(frame[..., ::-1]))
            index += 1
    finally:
        capture.release()
    if not frames:
        raise ImageError(f"{path}: no frame could be decoded")
    return frames, fps / stride


def check(image_or_frames: ImageSource | Sequence[ImageSource], *, challenge: Sequence[str] | None = None,
          fps: float | None = None, detector: str = "hog", model_path: str | os.PathLike | None = None
          ) -> LivenessResult:
    """Is the largest face live? Returns a :class:`LivenessResult` (``live`` True, False or None).

    ``image_or_frames`` is one image (anything :func:`visage.load_image` takes), a video file, or a
    sequence of frames. A single image gets the passive check; a sequence adds blinks, planarity
    and, when ``challenge`` (from :func:`new_challenge`) is given, the head-turn challenge. Without a
    challenge a replayed video cannot be ruled out (it blinks and is not planar): the evidence says
    so, and :func:`require_live` refuses such a clip.
    ``fps`` is the sequence's frame rate (read from a video file; 30 when unknown).
    """
    from .passive import load_model

    model = load_model(model_path)
    if isinstance(image_or_frames, (str, os.PathLike)) and Path(image_or_frames).suffix.lower() in VIDEO_SUFFIXES:
        frames, file_fps = read_frames(image_or_frames)
        return check_frames(frames, str(image_or_frames), fps or file_fps, challenge, model, detector)
    if _is_sequence(image_or_frames):
        frames = [load_image(f).pixels for f in image_or_frames]
        if not frames:
            raise ImageError("no frames given")
        return check_frames(frames, f"<{len(frames)} frames>", fps or 30.0, challenge, model, detector)
    if challenge:
        raise ImageError("a challenge needs a video or a frame sequence, not a single image")
    img = load_image(image_or_frames)
    return check_image(img.pixels, img.name, model, detector)


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
