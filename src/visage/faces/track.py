"""Face tracks over frames: the largest face of each frame, with its 68 landmarks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .detect import detect_faces
from .types import Face

#: Smallest face looked for, as a fraction of a frame's shorter side: a person checking in sits
#: close to the camera, and a larger minimum makes detection much faster.
MIN_FACE_FRACTION = 0.12


def track_largest(frames: Sequence[np.ndarray], detector: str, min_face_fraction: float = MIN_FACE_FRACTION,
                  *, min_face_size: float | None = None, min_score: float | None = None) -> list[Face | None]:
    """The largest face (with 68 landmarks) of each RGB uint8 frame, or None where a frame shows none.

    The smallest face looked for is ``min_face_size`` pixels when given, else ``min_face_fraction``
    of each frame's shorter side; faces scored below ``min_score`` (default: the detector's floor)
    are dropped.
    """
    track: list[Face | None] = []
    for frame in frames:
        smallest = min_face_size if min_face_size is not None else min_face_fraction * min(frame.shape[:2])
        faces = detect_faces(frame, detector, smallest, min_score=min_score)
        track.append(faces[0] if faces else None)
    return track
