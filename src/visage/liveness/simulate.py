"""A presentation-attack simulator: turn a bona-fide photo into a recaptured print or screen replay.

The passive classifier is trained on what this module makes, so each step follows the physics of
the attack rather than a generic augmentation:

* **print** — the photo is squeezed into a CMYK gamut, halftoned (clustered dots at the classic
  screen angles, or stochastic dither as inkjets do), laid on paper with its own texture and tint,
  given a gloss highlight, bent, and held in front of the camera in perspective;
* **replay** — the photo is shown on a screen: display gamma and backlight, an RGB subpixel grid
  (coarse displays) or the moiré fringes a fine one leaves, a bezel around the active area, glare
  and reflections, held in perspective.

Both then go through :func:`recapture`, the camera: aliasing from an optical low-pass that is too
weak, defocus or motion blur, white balance, sensor noise and JPEG. :func:`simulate_live_capture`
sends the bona-fide photo through that same camera without a medium, so that a classifier cannot
separate the classes by camera artefacts alone.

All functions take and return RGB uint8 arrays and draw their randomness from a
:class:`numpy.random.Generator`, so a seed reproduces an attack exactly.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

#: The attack kinds this module can make.
ATTACK_KINDS = ("print", "replay")


def simulate_attack(image: np.ndarray, kind: str, rng: np.random.Generator | None = None,
                    background: np.ndarray | None = None, face_box: tuple[float, float, float, float] | None = None
                    ) -> np.ndarray:
    """A recaptured attack of ``kind`` ("print" or "replay") made from ``image``; returns RGB uint8.

    ``face_box`` is the face's (left, top, right, bottom) in ``image`` as fractions of its width and
    height; the attack is framed so that the face lands near the middle of the camera frame, at a
    size a person holding up a photo or a phone would show.
    """
    if kind == "print":
        return simulate_print(image, rng, background, face_box)
    if kind == "replay":
        return simulate_replay(image, rng, background, face_box)
    raise ValueError(f"unknown attack kind {kind!r}; choose from {', '.join(ATTACK_KINDS)}")


def simulate_print(image: np.ndarray, rng: np.random.Generator | None = None,
                   background: np.ndarray | None = None, face_box: tuple[float, float, float, float] | None = None
                   ) -> np.ndarray:
    """A photo of a print of ``image`` (RGB uint8) held before a camera; returns RGB uint8."""
    rng = rng or np.random.default_rng()
    photo = _to_float(image)
    # The printed sheet is rendered at a higher resolution than the camera will see it.
    sheet_width = int(rng.uniform(600, 1000))
    photo = _resize(photo, sheet_width / photo.shape[1])
    reflectance = _halftone_print(_cmyk_gamut(photo, rng), rng)
    margin = rng.uniform(0.0, 0.08)
    sheet = _add_margin(reflectance, rng, paper=_paper_white(rng), fraction=margin)
    sheet = _paper_texture(sheet, rng)
    sheet = _bend(sheet, rng)
    sheet = _gloss(sheet, rng, strength=rng.uniform(0.0, 0.35))
    scene = _place_in_scene(sheet, _inset(face_box, margin, margin), rng, background)
    return recapture(scene, rng)


def simulate_replay(image: np.ndarray, rng: np.random.Generator | None = None,
                    background: np.ndarray | None = None, face_box: tuple[float, float, float, float] | None = None
                    ) -> np.ndarray:
    """A photo of a screen showing ``image`` (RGB uint8), held before a camera; returns RGB uint8."""
    rng = rng or np.random.default_rng()
    photo = _to_float(image)
    if rng.random() < 0.35:
        # A coarse display (an old monitor, a low-DPI tablet): its pixel grid reaches the camera.
        photo = _resize(photo, rng.uniform(250, 500) / photo.shape[1])
        panel = _subpixel_grid(_display_response(photo, rng), rng)
    else:
        # A modern phone or tablet: far more pixels than the camera resolves, so the grid itself is
        # averaged away and survives only as moiré fringes, where it beats against the sensor.
        photo = _resize(photo, rng.uniform(700, 1100) / photo.shape[1])
        panel = _moire(_display_response(photo, rng), rng)
    panel = _glare(panel, rng, background)
    device, pad = _bezel(panel, rng)
    scene = _place_in_scene(device, _inset(face_box, pad / panel.shape[1], pad / panel.shape[0]), rng,
                            background)
    return recapture(scene, rng)


def simulate_live_capture(image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """``image`` as a camera would see the live scene: reframed, then through :func:`recapture`."""
    rng = rng or np.random.default_rng()
    photo = _to_float(image)
    h, w = photo.shape[:2]
    # Reframe a little (crop up to 10% per side) and rescale to a camera-like size.
    top, bottom = int(rng.uniform(0, 0.1) * h), int(rng.uniform(0, 0.1) * h)
    left, right = int(rng.uniform(0, 0.1) * w), int(rng.uniform(0, 0.1) * w)
    photo = photo[top:h - bottom or h, left:w - right or w]
    photo = _resize(photo, rng.uniform(0.7, 1.3))
    return recapture(photo, rng, max_blur=0.9)


def recapture(scene: np.ndarray, rng: np.random.Generator, max_blur: float = 1.3) -> np.ndarray:
    """The camera: optical blur, white balance, exposure, sensor noise and JPEG; returns RGB uint8.

    ``scene`` is float RGB in [0, 1] at camera resolution; ``max_blur`` bounds the defocus (pixels).
    """
    img: np.ndarray = scene.astype(np.float32)
    blur = rng.uniform(0.0, max_blur)
    if blur > 0.25:
        img = cv2.GaussianBlur(img, (0, 0), blur)
    if rng.random() < 0.15:
        img = _motion_blur(img, rng)
    gains = np.array([rng.uniform(0.9, 1.1), 1.0, rng.uniform(0.9, 1.1)], np.float32)
    img = img * gains * rng.uniform(0.85, 1.15)
    img = np.clip(img, 0, 1) ** rng.uniform(0.9, 1.1)
    # Shot noise grows with the signal; read noise does not.
    shot, read = rng.uniform(0.0, 0.012), rng.uniform(0.002, 0.012)
    img = img + rng.standard_normal(img.shape).astype(np.float32) * np.sqrt(shot * img + read ** 2)
    if rng.random() < 0.3:
        img = _sharpen(img, rng.uniform(0.2, 0.8))  # phone cameras sharpen their output
    out = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return _jpeg(out, int(rng.uniform(55, 95)))


# --- print ---------------------------------------------------------------------------------------

def _cmyk_gamut(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Squeeze RGB into what ink on paper can show: less saturation, compressed tones."""
    grey = rgb.mean(axis=2, keepdims=True)
    rgb = grey + (rgb - grey) * rng.uniform(0.7, 0.95)
    return np.clip(rgb, 0, 1) ** rng.uniform(0.85, 1.15)


def _halftone_print(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Separate into CMYK inks, screen each, and return the paper's RGB reflectance."""
    k = 1.0 - rgb.max(axis=2)
    denom = np.maximum(1.0 - k, 1e-4)
    cmy = (1.0 - rgb - k[..., None]) / denom[..., None]
    inks = [cmy[..., 0], cmy[..., 1], cmy[..., 2], k]
    h, w = k.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    period = rng.uniform(3.0, 7.0)
    amplitude_modulated = rng.random() < 0.65
    coverage = []
    for ink, angle in zip(inks, (15.0, 75.0, 0.0, 45.0)):
        if amplitude_modulated:
            t = np.deg2rad(angle + rng.uniform(-2, 2))
            u = (xx * np.cos(t) + yy * np.sin(t)) * (2 * np.pi / period)
            v = (-xx * np.sin(t) + yy * np.cos(t)) * (2 * np.pi / period)
            threshold = 0.5 - 0.25 * (np.cos(u) + np.cos(v))
        else:
            threshold = rng.random((h, w)).astype(np.float32)
        dot = np.clip((ink - threshold) * 6.0 + 0.5, 0, 1)
        coverage.append(cv2.GaussianBlur(dot, (0, 0), rng.uniform(0.4, 1.0)))  # dot gain
    c, m, y, black = coverage
    density = rng.uniform(0.8, 0.95)
    out = np.stack([(1 - density * c), (1 - density * m), (1 - density * y)], axis=2)
    out *= (1 - rng.uniform(0.85, 0.97) * black)[..., None]
    return out.astype(np.float32)


def _paper_white(rng: np.random.Generator) -> np.ndarray:
    return np.array([rng.uniform(0.9, 0.98), rng.uniform(0.9, 0.97), rng.uniform(0.84, 0.96)], np.float32)


def _add_margin(img: np.ndarray, rng: np.random.Generator, paper: np.ndarray, fraction: float) -> np.ndarray:
    img = img * paper
    pad = int(fraction * img.shape[1])
    if pad == 0:
        return img
    return cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=paper.tolist())


def _paper_texture(sheet: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = sheet.shape[:2]
    fibres = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), rng.uniform(0.8, 2.5))
    fibres = fibres / (fibres.std() + 1e-6)
    return sheet * (1.0 + rng.uniform(0.005, 0.03) * fibres)[..., None]


def _bend(sheet: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Curve the sheet about a vertical axis: it sags and is shaded by its changing normal."""
    h, w = sheet.shape[:2]
    sag, shade = rng.uniform(-0.04, 0.04), rng.uniform(0.0, 0.25)
    xn = np.linspace(-1, 1, w, dtype=np.float32)
    map_x = np.tile(np.arange(w, dtype=np.float32), (h, 1))
    map_y = np.arange(h, dtype=np.float32)[:, None] + sag * h * (xn[None, :] ** 2 - 0.33)
    bent = cv2.remap(sheet, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    tilt = rng.uniform(-0.5, 0.5)
    return bent * (1.0 - shade * (xn - tilt) ** 2)[None, :, None]


def _gloss(sheet: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """A broad specular highlight from a light source mirrored in a glossy surface."""
    if strength < 0.02:
        return sheet
    h, w = sheet.shape[:2]
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    sy, sx = rng.uniform(0.1, 0.5) * h, rng.uniform(0.1, 0.5) * w
    blob = np.outer(np.exp(-(((np.arange(h) - cy) / sy) ** 2) / 2),
                    np.exp(-(((np.arange(w) - cx) / sx) ** 2) / 2)).astype(np.float32)
    return sheet + strength * blob[..., None] * (1.0 - 0.5 * sheet)


# --- replay --------------------------------------------------------------------------------------

def _display_response(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Display tone curve, backlight bleed (raised blacks) and a colour temperature shift."""
    out = np.clip(rgb, 0, 1) ** rng.uniform(0.8, 1.25)
    black = rng.uniform(0.02, 0.10)
    white = rng.uniform(0.85, 1.0)
    out = black + (white - black) * out
    tint = np.array([rng.uniform(0.9, 1.02), 1.0, rng.uniform(1.0, 1.12)], np.float32)
    return out * tint


def _subpixel_grid(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each display pixel becomes an s×s cell of R, G and B stripes separated by a dark matrix."""
    s = int(rng.choice([3, 4]))
    h, w = rgb.shape[:2]
    big = cv2.resize(rgb, (w * s, h * s), interpolation=cv2.INTER_NEAREST)
    mask: np.ndarray = np.zeros((s, s, 3), np.float32)
    fill = rng.uniform(0.6, 0.95)
    third = s / 3.0
    for channel in range(3):
        x0 = int(round(channel * third))
        x1 = max(x0 + 1, int(round((channel + fill) * third)))
        mask[: max(1, int(round(s * fill))), x0:x1, channel] = 1.0
    if rng.random() < 0.3:
        mask = mask[:, ::-1]  # BGR panels
    mask = cv2.GaussianBlur(mask, (0, 0), 0.3) if s > 3 else mask
    grid = np.tile(mask, (h, w, 1))
    # Light spreads through the diffuser, so the stripes are not fully dark between them.
    return big * (0.25 + 0.75 * grid) * 1.6


def _moire(panel: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Interference fringes between a fine pixel grid and the camera's sensor: a slow beat pattern,
    with a phase that differs per colour channel (subpixels sit side by side)."""
    h, w = panel.shape[:2]
    period = rng.uniform(0.015, 0.08) * w          # tens of camera pixels once projected
    angle = rng.uniform(0, np.pi)
    u = (np.cos(angle) * np.arange(w)[None, :] + np.sin(angle) * np.arange(h)[:, None]) * (2 * np.pi / period)
    strength = rng.uniform(0.01, 0.07)
    phases = rng.uniform(0, 2 * np.pi, 3) if rng.random() < 0.6 else np.zeros(3)
    fringes = np.stack([np.cos(u + p) for p in phases], axis=2).astype(np.float32)
    if rng.random() < 0.5:  # a second beat across the first: the crossed pattern of a 2-D grid
        along = -np.sin(angle) * np.arange(w)[None, :] + np.cos(angle) * np.arange(h)[:, None]
        v = along * (2 * np.pi / (period * rng.uniform(0.7, 1.4)))
        fringes = 0.6 * fringes + 0.4 * np.cos(v)[..., None].astype(np.float32)
    return panel * (1.0 + strength * fringes) * rng.uniform(0.9, 1.0)


def _glare(panel: np.ndarray, rng: np.random.Generator, background: np.ndarray | None) -> np.ndarray:
    h, w = panel.shape[:2]
    out = panel
    if background is not None and rng.random() < 0.7:
        # The reflection is out of focus: blur it small, then bring it to the panel's size.
        small = cv2.resize(_to_float(background), (64, max(8, 64 * h // w)), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small[:, ::-1], (0, 0), rng.uniform(0.5, 2.0))
        mirrored = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        out = out + rng.uniform(0.03, 0.15) * mirrored
    if rng.random() < 0.7:
        out = _gloss(out, rng, strength=rng.uniform(0.05, 0.4))
    return out


def _bezel(panel: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Surround the active area with the device's frame (black, white or grey); returns it and its width."""
    w = panel.shape[1]
    colour = rng.choice([0.04, 0.08, 0.85, 0.6]) + rng.uniform(-0.03, 0.03)
    pad = max(1, int(rng.uniform(0.02, 0.12) * w))
    return cv2.copyMakeBorder(panel.astype(np.float32), pad, pad, pad, pad, cv2.BORDER_CONSTANT,
                              value=[float(colour)] * 3), pad


# --- scene and camera ----------------------------------------------------------------------------

def _inset(box: tuple[float, float, float, float] | None, pad_x: float, pad_y: float
           ) -> tuple[float, float, float, float]:
    """A box given in fractions of the photo, in fractions of the photo framed by a border of ``pad``."""
    left, top, right, bottom = box if box is not None else (0.3, 0.3, 0.7, 0.7)
    return ((left + pad_x) / (1 + 2 * pad_x), (top + pad_y) / (1 + 2 * pad_y),
            (right + pad_x) / (1 + 2 * pad_x), (bottom + pad_y) / (1 + 2 * pad_y))


def _place_in_scene(medium: np.ndarray, face: tuple[float, float, float, float], rng: np.random.Generator,
                    background: np.ndarray | None) -> np.ndarray:
    """Render the medium at camera resolution, rotated in 3-D and projected over a background.

    ``face`` (a box in fractions of the medium) is what the camera is aimed at.
    """
    portrait = rng.random() < 0.6
    short = int(rng.uniform(360, 720))
    out_h, out_w = (int(short * 4 / 3), short) if portrait else (short, int(short * 4 / 3))
    scene = _background(background, out_h, out_w, rng)
    mh, mw = medium.shape[:2]
    # The face spans a fifth to over half of the frame; the medium may end inside or beyond it.
    face_width = max(face[2] - face[0], 0.05)
    width_px = float(np.clip(rng.uniform(0.2, 0.55) * out_w / face_width, 0.35 * out_w, 3.0 * out_w))
    focal = out_w * rng.uniform(0.9, 1.6)
    yaw, pitch, roll = np.deg2rad(rng.uniform(-25, 25)), np.deg2rad(rng.uniform(-20, 20)), np.deg2rad(rng.uniform(-10, 10))
    corners = np.array([[-mw / 2, -mh / 2, 0], [mw / 2, -mh / 2, 0], [mw / 2, mh / 2, 0], [-mw / 2, mh / 2, 0]],
                       np.float64) * (width_px / mw)
    aim = np.array([((face[0] + face[2]) / 2 - 0.5) * mw, ((face[1] + face[3]) / 2 - 0.5) * mh, 0.0]) * (width_px / mw)
    rotation = _rotation(yaw, pitch, roll)
    rotated = (corners - aim) @ rotation.T  # the aimed-at point sits on the optical axis
    centre = np.array([out_w / 2 + rng.uniform(-0.12, 0.12) * out_w,
                       out_h / 2 + rng.uniform(-0.12, 0.12) * out_h])
    depth = focal + rotated[:, 2]
    projected = rotated[:, :2] * (focal / depth)[:, None] + centre
    src = np.array([[0, 0], [mw, 0], [mw, mh], [0, mh]], np.float32)
    homography = cv2.getPerspectiveTransform(src, projected.astype(np.float32))
    # A camera's optical low-pass is often too weak for a fine print or pixel grid: prefilter only
    # partly, so some of the pattern aliases into moiré, as it does in real recaptures.
    shrink = width_px / mw
    sigma = rng.uniform(0.15, 0.7) / max(shrink, 1e-3)
    medium = cv2.GaussianBlur(medium.astype(np.float32), (0, 0), sigma) if sigma > 0.3 else medium.astype(np.float32)
    warped = cv2.warpPerspective(medium, homography, (out_w, out_h), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=(-1, -1, -1))
    inside = warped[..., :1] >= 0
    return np.where(inside, warped, scene)


def _background(background: np.ndarray | None, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    if background is None:
        base = rng.uniform(0.2, 0.8, 3).astype(np.float32)
        ramp = np.linspace(-0.15, 0.15, h, dtype=np.float32)[:, None, None]
        return np.clip(base + ramp + 0.02 * rng.standard_normal((h, w, 3)).astype(np.float32), 0, 1)
    bg = _to_float(background)
    bg = cv2.resize(bg, (w, h), interpolation=cv2.INTER_AREA if bg.shape[1] > w else cv2.INTER_LINEAR)
    return cv2.GaussianBlur(bg, (0, 0), rng.uniform(0.5, 4.0))  # out of focus behind the medium


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return rz @ rx @ ry


def _motion_blur(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    length = int(rng.uniform(3, 9))
    kernel: np.ndarray = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0 / length
    rot = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), rng.uniform(0, 180), 1.0)
    kernel = cv2.warpAffine(kernel, rot, (length, length))
    return cv2.filter2D(img, -1, kernel / max(kernel.sum(), 1e-6))


def _sharpen(img: np.ndarray, amount: float) -> np.ndarray:
    return img + amount * (img - cv2.GaussianBlur(img, (0, 0), 1.0))


def _jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
    return decoded[..., ::-1].copy() if decoded is not None else rgb


def _to_float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)


def _resize(img: np.ndarray, scale: float) -> np.ndarray:
    h, w = img.shape[:2]
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)


def simulate_moving_print(photo: np.ndarray, frames: int = 11, max_yaw: float = 25.0) -> list[np.ndarray]:
    """A clip of a flat print of ``photo`` turned ±``max_yaw`` degrees about its vertical axis
    before a pinhole camera (with a little pitch wobble and drift): the attack the planarity test
    must catch. Returns ``frames`` RGB uint8 frames of the photo's size."""
    h, w = photo.shape[:2]
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    clip = []
    for k, yaw in enumerate(np.linspace(-max_yaw, max_yaw, frames)):
        rot, _ = cv2.Rodrigues(np.array([math.radians(5 * math.sin(k)), math.radians(yaw), 0.0]))
        sheet = np.c_[corners - (w / 2, h / 2), np.zeros(4)] @ rot.T + (0, 0, 1.6 * w)
        projected = sheet[:, :2] / sheet[:, 2:] * 1.6 * w + (w / 2 + 4 * k, h / 2)
        homography = cv2.getPerspectiveTransform(corners, projected.astype(np.float32))
        clip.append(cv2.warpPerspective(photo, homography, (w, h), borderValue=(90, 90, 90)))
    return clip
