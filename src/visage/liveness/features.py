"""Cues that separate a live face from a recaptured one, measured on one image around one face.

Each group of numbers answers one physical question:

* ``lbp_*`` — colour texture: rotation-invariant uniform LBP histograms in HSV and YCbCr. Printing
  and displaying change the micro-texture of skin and the way colour varies with it;
* ``freq_*`` — frequency content: the share of energy in radial bands of the spectrum, and how
  peaked the high frequencies are (moiré and pixel grids make isolated peaks);
* ``spec_*`` — specular highlights: bright, unsaturated pixels, and their spread (gloss and glare
  are broad, skin highlights are small);
* ``sharp_*`` — sharpness and blur, scale-free (a recapture loses detail twice);
* ``halftone_*`` — periodic patterns left by halftone dots or subpixels in the high-pass residual;
* ``colour_*`` — gamut and tonal range (ink and displays compress both);
* ``edge_*`` — long straight edges around the face: the border of a sheet or a screen's bezel.
"""

from __future__ import annotations

import itertools

import cv2
import numpy as np

from ..faces.types import Box

#: Side of the square face crop most cues are measured on.
CROP = 128
#: Largest side of the face crop kept at native resolution for the frequency cues.
NATIVE_MAX = 256
#: Rotation-invariant uniform LBP with 8 neighbours: patterns 0..8 plus one "non-uniform" bin.
LBP_BINS = 10


def feature_names() -> list[str]:
    """Names of the numbers :func:`face_features` returns, in order."""
    names = []
    for space in ("h", "s", "v", "y", "cb", "cr"):
        names += [f"lbp_{space}_{b}" for b in range(LBP_BINS)]
    names += [f"lbp_y_r2_{b}" for b in range(LBP_BINS)]
    names += [f"freq_band_{b}" for b in range(8)] + ["freq_peak_ratio", "freq_hf_lf"]
    names += ["spec_fraction", "spec_top_mean", "spec_blob_size", "spec_context_fraction"]
    names += ["sharp_laplacian", "sharp_scale_ratio", "sharp_tenengrad"]
    names += ["halftone_autocorr_peak", "halftone_residual_energy", "halftone_chroma_residual"]
    names += ["colour_sat_mean", "colour_sat_std", "colour_cb_std", "colour_cr_std", "colour_y_range",
              "colour_y_low", "colour_y_high", "colour_diversity"]
    names += ["edge_long_lines", "edge_longest", "edge_border_straightness", "edge_frame_contrast"]
    return names


def face_crop(pixels: np.ndarray, box: Box, scale: float = 1.3, border: int = cv2.BORDER_REPLICATE) -> np.ndarray:
    """The square region around ``box`` grown by ``scale``, padded with ``border`` beyond the image."""
    cx, cy = (box.left + box.right) / 2, (box.top + box.bottom) / 2
    side = max(2, int(round(max(box.width, box.height) * scale)))
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    x1, y1 = x0 + side, y0 + side
    h, w = pixels.shape[:2]
    pad = max(0, -x0, -y0, x1 - w, y1 - h)
    if pad:
        pixels = cv2.copyMakeBorder(pixels, pad, pad, pad, pad, border, value=0)
        x0, y0, x1, y1 = x0 + pad, y0 + pad, x1 + pad, y1 + pad
    return pixels[y0:y1, x0:x1]


def face_features(pixels: np.ndarray, box: Box) -> np.ndarray:
    """All cues for the face in ``box`` of an RGB uint8 image; a float64 vector (see :func:`feature_names`)."""
    region = face_crop(pixels, box)
    crop = cv2.resize(region, (CROP, CROP), interpolation=cv2.INTER_AREA if region.shape[0] > CROP
                      else cv2.INTER_LINEAR)
    side = min(region.shape[0], NATIVE_MAX)
    native = cv2.resize(region, (side, side), interpolation=cv2.INTER_AREA) if side != region.shape[0] else region
    # The wide context, with a mask of what lies inside the image: padding must not look like a frame.
    rgba = np.dstack([pixels, np.full(pixels.shape[:2], 255, np.uint8)])
    wide = cv2.resize(face_crop(rgba, box, 2.5, cv2.BORDER_CONSTANT), (192, 192), interpolation=cv2.INTER_AREA)
    context, inside = wide[..., :3], wide[..., 3] == 255
    parts = [
        _colour_texture(crop),
        _frequency(native),
        _speculars(crop, context, inside),
        _sharpness(native),
        _halftone(native),
        _colour(crop),
        _frame_edges(context, inside),
    ]
    return np.concatenate([np.asarray(p, np.float64).ravel() for p in parts])


# --- colour texture --------------------------------------------------------------------------------

def lbp_histogram(channel: np.ndarray, radius: int = 1) -> np.ndarray:
    """Normalised rotation-invariant uniform LBP(8, ``radius``) histogram of a 2-D uint8 array."""
    c = channel.astype(np.int16)
    h, w = c.shape
    centre = c[radius:h - radius, radius:w - radius]
    offsets = [(-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1)]
    bits = np.stack([(c[radius + dy * radius:h - radius + dy * radius, radius + dx * radius:w - radius + dx * radius]
                      >= centre) for dy, dx in offsets]).astype(np.uint8)
    ones = bits.sum(axis=0)
    transitions = (bits != np.roll(bits, 1, axis=0)).sum(axis=0)
    codes = np.where(transitions <= 2, ones, LBP_BINS - 1)  # uniform patterns by their count of ones
    hist = np.bincount(codes.ravel(), minlength=LBP_BINS).astype(np.float64)
    return hist / hist.sum()


def _colour_texture(crop: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(crop, cv2.COLOR_RGB2HSV)
    ycc = cv2.cvtColor(crop, cv2.COLOR_RGB2YCrCb)  # channel order Y, Cr, Cb
    channels = [hsv[..., 0], hsv[..., 1], hsv[..., 2], ycc[..., 0], ycc[..., 2], ycc[..., 1]]
    hists = [lbp_histogram(ch) for ch in channels] + [lbp_histogram(ycc[..., 0], radius=2)]
    return np.concatenate(hists)


# --- frequency, halftone -------------------------------------------------------------------------

def _grey(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0


def _power_spectrum(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = grey.shape[0]
    window = np.outer(np.hanning(n), np.hanning(n)).astype(np.float32)
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2((grey - grey.mean()) * window))) ** 2
    yy, xx = np.mgrid[0:n, 0:n]
    radius = np.hypot(yy - n // 2, xx - n // 2) / (n / 2)  # 1.0 = Nyquist along an axis
    return spectrum, radius


def _frequency(native: np.ndarray) -> np.ndarray:
    spectrum, radius = _power_spectrum(_grey(native))
    total = spectrum[radius > 0.01].sum() + 1e-12
    edges = np.linspace(0.02, 1.0, 9)
    bands = [np.log(spectrum[(radius >= a) & (radius < b)].sum() / total + 1e-12) for a, b in itertools.pairwise(edges)]
    # Moiré and pixel grids: isolated peaks standing out of the smooth high-frequency spectrum.
    high = spectrum[(radius > 0.3) & (radius < 1.0)]
    peak_ratio = np.log((high.max() + 1e-12) / (np.median(high) + 1e-12))
    hf_lf = np.log((spectrum[radius > 0.5].sum() + 1e-12) / (spectrum[(radius > 0.02) & (radius < 0.2)].sum() + 1e-12))
    return np.array(bands + [peak_ratio, hf_lf])


def _halftone(native: np.ndarray) -> np.ndarray:
    grey = _grey(native)
    residual = grey - cv2.GaussianBlur(grey, (0, 0), 1.5)
    energy = float(np.log(residual.var() + 1e-9))
    # A periodic residual correlates with itself at its period: find the strongest off-centre peak.
    f = np.fft.fft2(residual)
    auto = np.fft.fftshift(np.real(np.fft.ifft2(f * np.conj(f))))
    n = auto.shape[0]
    auto /= auto[n // 2, n // 2] + 1e-12
    yy, xx = np.mgrid[0:n, 0:n]
    ring = np.hypot(yy - n // 2, xx - n // 2)
    peak = float(auto[(ring >= 2.5) & (ring <= 12)].max())
    ycc = cv2.cvtColor(native, cv2.COLOR_RGB2YCrCb).astype(np.float32) / 255.0
    chroma = ycc[..., 1:] - cv2.GaussianBlur(ycc[..., 1:], (0, 0), 1.5)
    chroma_energy = float(np.log(chroma.var() + 1e-9) - energy)  # colour fringes relative to luma detail
    return np.array([peak, energy, chroma_energy])


# --- highlights, sharpness, colour -----------------------------------------------------------------

def _speculars(crop: np.ndarray, context: np.ndarray, inside: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(crop, cv2.COLOR_RGB2HSV).astype(np.float32) / 255.0
    s, v = hsv[..., 1], hsv[..., 2]
    mask = (v > 0.85) & (s < 0.25)
    fraction = mask.mean()
    top = np.sort(v.ravel())[-max(1, v.size // 100):].mean()
    count, _labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8))
    blob = stats[1:, cv2.CC_STAT_AREA].max() / mask.size if count > 1 else 0.0
    chsv = cv2.cvtColor(context, cv2.COLOR_RGB2HSV).astype(np.float32) / 255.0
    context_fraction = ((chsv[..., 2] > 0.9) & (chsv[..., 1] < 0.2))[inside].mean() if inside.any() else 0.0
    return np.array([np.sqrt(fraction), top, np.sqrt(blob), np.sqrt(context_fraction)])


def _sharpness(native: np.ndarray) -> np.ndarray:
    grey = _grey(native)
    lap = cv2.Laplacian(grey, cv2.CV_32F).var()
    half = cv2.resize(grey, (grey.shape[1] // 2, grey.shape[0] // 2), interpolation=cv2.INTER_AREA)
    lap_half = cv2.Laplacian(half, cv2.CV_32F).var()
    gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)
    tenengrad = float(np.mean(gx ** 2 + gy ** 2))
    # Detail that survives halving vs detail at full resolution: near 1 for sharp images.
    return np.array([np.log(lap + 1e-9), np.log((lap + 1e-9) / (lap_half + 1e-9)), np.log(tenengrad + 1e-9)])


def _colour(crop: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(crop, cv2.COLOR_RGB2HSV).astype(np.float32) / 255.0
    ycc = cv2.cvtColor(crop, cv2.COLOR_RGB2YCrCb).astype(np.float32) / 255.0
    y = ycc[..., 0]
    low, high = np.percentile(y, [1, 99])
    quantised = (crop // 32).reshape(-1, 3).astype(np.int32)
    diversity = len(np.unique(quantised[:, 0] * 64 + quantised[:, 1] * 8 + quantised[:, 2])) / 512.0
    return np.array([hsv[..., 1].mean(), hsv[..., 1].std(), ycc[..., 2].std(), ycc[..., 1].std(),
                     high - low, low, high, diversity])


# --- frame edges -----------------------------------------------------------------------------------

def _frame_edges(context: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Long straight edges in the wide context around the face, away from the face itself and
    from the image's own border."""
    grey = cv2.cvtColor(context, cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(cv2.GaussianBlur(grey, (0, 0), 1.0), 40, 120)
    n = grey.shape[0]
    edges[~cv2.erode(inside.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)] = 0
    # Blank the face (the middle part): its own contours are not a frame.
    edges[int(n * 0.3): int(n * 0.7), int(n * 0.3): int(n * 0.7)] = 0
    lines = cv2.HoughLinesP(edges, 1, np.pi / 180, threshold=40, minLineLength=int(0.25 * n), maxLineGap=4)
    segments = np.zeros((0, 4)) if lines is None else np.asarray(lines, np.float64).reshape(-1, 4)
    lengths = np.hypot(segments[:, 2] - segments[:, 0], segments[:, 3] - segments[:, 1]) / n
    long_lines = np.log1p(len(lengths))
    longest = float(lengths.max()) if len(lengths) else 0.0
    straightness = float(lengths.sum() / (edges.astype(bool).sum() / n + 1e-6)) if len(lengths) else 0.0
    # A bezel or a sheet edge is a step in brightness between a band around the face and the outside.
    band = np.zeros_like(inside)
    band[n // 6: 5 * n // 6, n // 6: 5 * n // 6] = True
    inner, outer = grey[band & inside], grey[~band & inside]
    contrast = abs(float(inner.mean()) - float(outer.mean())) / 255.0 if len(inner) and len(outer) else 0.0
    return np.array([long_lines, longest, min(straightness, 5.0), contrast])
