"""Read video files: probe their size and rate, sample frames over a whole clip, or stream every frame.

Frames are RGB uint8 arrays, (H, W, 3). OpenCV decodes; it is imported only when a video is read.
Every failure is an :class:`~visage.errors.ImageError` whose message names the video.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImageError

#: File name endings read as video rather than as one image (lower case).
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})
#: Frames read from a video by default, spread over the whole clip (every frame of 5 s at 30 fps).
MAX_FRAMES = 150
#: Frames are scaled down to this longer side by default: landmarks need no more, and detection is faster.
MAX_FRAME_SIDE = 960


def is_video(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a video file by its suffix (:data:`VIDEO_SUFFIXES`)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class VideoInfo:
    """What a video file says about itself, before any frame is decoded.

    ``fps`` is None when the file gives no plausible rate (outside 1–240); ``frames`` is the frame
    count the container claims, 0 when unknown.
    """

    width: int
    height: int
    fps: float | None
    frames: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


@contextmanager
def _opened(path: str | os.PathLike, name: str | None) -> Iterator[tuple[Any, str]]:
    import cv2

    path = Path(path)
    label = name or str(path)
    if not path.is_file():
        raise ImageError(f"{label}: no such file")
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise ImageError(f"{label}: not a video file visage can read")
        yield capture, label
    finally:
        capture.release()


def _info(capture: Any) -> VideoInfo:
    import cv2

    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    return VideoInfo(width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH) or 0),
                     height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0),
                     fps=fps if 1 <= fps <= 240 else None,
                     frames=max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)))


def probe(path: str | os.PathLike, *, name: str | None = None) -> VideoInfo:
    """Frame size, rate and count of video ``path``, without decoding a frame.

    ``name`` labels the video in error messages (default: the path), e.g. an upload's file name.
    """
    with _opened(path, name) as (capture, _):
        return _info(capture)


def _rgb(bgr: np.ndarray, max_side: int | None) -> np.ndarray:
    import cv2

    if max_side:
        scale = max_side / max(bgr.shape[:2])
        if scale < 1:
            bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(bgr[..., ::-1])


def read_frames(path: str | os.PathLike, max_frames: int = MAX_FRAMES, max_side: int | None = MAX_FRAME_SIDE,
                *, name: str | None = None) -> tuple[list[np.ndarray], float]:
    """Decode at most ``max_frames`` RGB uint8 frames spread over the whole video; returns (frames, fps).

    A clip longer than ``max_frames`` is read every k-th frame, so the frames cover all of it, and
    ``fps`` is then the rate of the frames returned (the file's rate, 30 when unknown, / k). Frames
    are scaled down to longer side ``max_side`` (None: full size). Raises
    :class:`~visage.errors.ImageError` naming the file (or ``name``) when it is missing or unreadable.
    """
    with _opened(path, name) as (capture, label):
        info = _info(capture)
        fps = info.fps or 30.0
        stride = max(1, -(-info.frames // max_frames)) if info.frames > 0 else 1
        frames: list[np.ndarray] = []
        index = 0
        while len(frames) < max_frames and capture.grab():
            if index % stride == 0:
                ok, frame = capture.retrieve()
                if not ok:
                    break
                frames.append(_rgb(frame, max_side))
            index += 1
    if not frames:
        raise ImageError(f"{label}: no frame could be decoded")
    return frames, fps / stride


def iter_frames(path: str | os.PathLike, max_side: int | None = None, *, name: str | None = None
                ) -> Iterator[np.ndarray]:
    """Every frame of video ``path``, in order, as an RGB uint8 array (scaled down to ``max_side``
    when given); the file is closed when the iteration ends or is abandoned."""
    with _opened(path, name) as (capture, _):
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            yield _rgb(bgr, max_side)
