"""Context crops around a face: the passive model sees the face and what surrounds it.

The edge of a sheet, a phone's bezel or a screen's glare often lie outside the face box, so the
model looks at squares of ``scale`` × the box's longer side about its centre (2.7× and 4×). A square
that does not fit in the image is shrunk until it does and moved inside it, so a tight face crop
gives the whole image at every scale.
"""

from __future__ import annotations

import numpy as np

from ..faces.types import Box


def context_square(box: Box, scale: float, height: int, width: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the square of ``scale`` × the box's longer side, inside the image."""
    side = min(scale * max(box.width, box.height), height, width)
    cx, cy = (box.left + box.right) / 2, (box.top + box.bottom) / 2
    left = min(max(cx - side / 2, 0.0), width - side)
    top = min(max(cy - side / 2, 0.0), height - side)
    return int(round(left)), int(round(top)), int(round(left + side)), int(round(top + side))


def context_crop(pixels: np.ndarray, box: Box, scale: float, size: int = 80) -> np.ndarray:
    """The ``size``×``size`` RGB uint8 crop of :func:`context_square` from an RGB uint8 image."""
    import cv2

    h, w = pixels.shape[:2]
    left, top, right, bottom = context_square(box, scale, h, w)
    patch = pixels[top:max(bottom, top + 1), left:max(right, left + 1)]
    shrink = patch.shape[0] > size
    return cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def whole_image_box(height: int, width: int) -> Box:
    """The box of the whole image, for a picture that is itself a tight face crop."""
    return Box(0, 0, width, height)
