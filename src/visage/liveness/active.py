"""Active checks over a frame sequence: blinks, a head-turn challenge, and planarity.

All three work on the 68 dlib landmarks of the largest face in each frame:

* **blinks** — the eye aspect ratio (EAR: eye height over eye width) drops when the lids close. A
  blink is a closure that reopens within :data:`MAX_BLINK_SECONDS`.
* **head-turn challenge** — head pose from the landmarks (``cv2.solvePnP`` against a generic 3-D
  face); the person must turn in an order drawn at random when the check starts, so a recording
  made earlier answers the wrong question.
* **planarity** — a print or a screen showing a still photo is a plane: between two views, its
  landmarks follow one homography up to detector noise. A real head that turns does not: the nose
  and the face outline move against the cheeks (parallax). The residual of the best homography,
  relative to the eye distance, measures it.

Turns are named from the person's point of view in an unmirrored camera frame: ``turn_left`` means
the person turns to their own left, so their nose moves toward the right of the image.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..errors import InvalidArgument
from ..faces.types import Box, Face

#: Indices of the six points of each eye in the 68-point scheme (corner, top, top, corner, bottom, bottom).
RIGHT_EYE = list(range(36, 42))  # the person's right eye, on the image's left
LEFT_EYE = list(range(42, 48))
#: Longest closure still counted as a blink; longer ones are eyes held shut.
MAX_BLINK_SECONDS = 0.8
#: Yaw beyond which a head counts as turned, and within which it is back to centre (degrees).
TURN_DEGREES = 15.0
CENTRE_DEGREES = 8.0
#: Pairs of frames whose views differ less than this say nothing about planarity: head rotation in
#: degrees, or the residual of a similarity fit as a fraction of the eye distance.
PLANARITY_MIN_ROTATION = 8.0
PLANARITY_MIN_MOTION = 0.04
#: Homography residual (fraction of the eye distance) below which the landmarks move as a plane.
#: Measured: 0.012–0.019 on rendered clips of flat photos turned ±25°, 0.05–0.07 on a real head
#: turning (bench/bench_liveness.py).
PLANARITY_THRESHOLD = 0.03
#: The landmarks planarity uses: eyes, nose, mouth corners and lip centres. They sit on the rigid
#: part of the face; the jaw outline is a silhouette that slides and is located much less precisely.
PLANARITY_POINTS = list(range(27, 48)) + [48, 51, 54, 57]
#: The actions a challenge draws from.
CHALLENGE_ACTIONS = ("turn_left", "turn_right", "blink")

# A generic adult head in millimetres, in the camera's axes when the face looks straight at it: x to
# the image's right, y down, z away from the camera (into the head), nose tip at the origin. Only
# the shape matters; solvePnP finds scale and distance.
_MODEL_POINTS = {
    30: (0.0, 0.0, 0.0),        # nose tip
    27: (0.0, -45.0, 22.0),     # nose bridge between the eyes
    8: (0.0, 68.0, 18.0),       # chin
    36: (-45.0, -36.0, 38.0),   # outer corner of the person's right eye
    45: (45.0, -36.0, 38.0),    # outer corner of the person's left eye
    39: (-14.0, -35.0, 30.0),   # inner corners
    42: (14.0, -35.0, 30.0),
    48: (-25.0, 30.0, 28.0),    # mouth corners
    54: (25.0, 30.0, 28.0),
}


def eye_aspect_ratio(eye: np.ndarray) -> float:
    """EAR of one eye from its six landmarks: mean lid distance over the corner-to-corner width."""
    eye = np.asarray(eye, np.float64)
    vertical = np.linalg.norm(eye[1] - eye[5]) + np.linalg.norm(eye[2] - eye[4])
    horizontal = np.linalg.norm(eye[0] - eye[3])
    return float(vertical / (2.0 * horizontal)) if horizontal > 0 else float("nan")


def face_ear(landmarks68: np.ndarray) -> float:
    """Mean EAR of both eyes of a face's 68 landmarks."""
    return (eye_aspect_ratio(landmarks68[RIGHT_EYE]) + eye_aspect_ratio(landmarks68[LEFT_EYE])) / 2.0


@dataclass(frozen=True)
class BlinkResult:
    """Blinks found in an EAR series: how many, where (first and last closed frame), and the thresholds."""

    count: int
    blinks: list[tuple[int, int]]
    close_threshold: float
    open_threshold: float
    frames: int

    def to_dict(self) -> dict:
        return {"count": self.count, "blinks": [list(b) for b in self.blinks],
                "close_threshold": round(self.close_threshold, 4), "open_threshold": round(self.open_threshold, 4),
                "frames": self.frames}


def count_blinks(ear: Sequence[float], fps: float = 30.0, close_ratio: float = 0.75,
                 open_ratio: float = 0.88, max_seconds: float = MAX_BLINK_SECONDS) -> BlinkResult:
    """Count blinks in a per-frame EAR series (NaN where no face was seen).

    The open-eye level is the series' 75th percentile, so thresholds adapt to each face's eye
    shape. The eyes close when the EAR falls below ``close_ratio`` × that level and reopen when it
    rises above ``open_ratio`` × it (hysteresis, so noise does not count twice). A closure counts as
    a blink when it reopens within ``max_seconds``.
    """
    values = np.asarray(ear, np.float64)
    seen = values[np.isfinite(values)]
    if len(seen) < 3:
        return BlinkResult(0, [], float("nan"), float("nan"), len(values))
    level = float(np.percentile(seen, 75))
    close_t, open_t = close_ratio * level, open_ratio * level
    longest = max(1, int(round(max_seconds * fps)))
    blinks: list[tuple[int, int]] = []
    closed_since: int | None = None
    last_closed = -1
    for i, v in enumerate(values):
        if not math.isfinite(v):
            continue
        if closed_since is None:
            if v < close_t:
                closed_since, last_closed = i, i
        elif v > open_t:
            if last_closed - closed_since + 1 <= longest:
                blinks.append((closed_since, last_closed))
            closed_since = None
        elif v < close_t:
            last_closed = i
    return BlinkResult(len(blinks), blinks, close_t, open_t, len(values))


# --- head pose -----------------------------------------------------------------------------------

def head_pose(landmarks68: np.ndarray, image_size: tuple[int, int]) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from 68 landmarks; ``image_size`` is (width, height).

    Yaw is positive when the nose points toward the image's right (the person turned to their own
    left), pitch positive when the face tilts up, roll positive when the head leans clockwise.
    """
    ids = list(_MODEL_POINTS)
    model = np.array([_MODEL_POINTS[i] for i in ids], np.float64)
    image = np.asarray(landmarks68, np.float64)[ids]
    width, height = image_size
    focal = float(max(width, height))
    camera = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], np.float64)
    ok, rvec, _ = cv2.solvePnP(model, image, camera, None, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return float("nan"), float("nan"), float("nan")
    rotation, _ = cv2.Rodrigues(rvec)
    forward = rotation @ np.array([0.0, 0.0, -1.0])  # out of the face; (0, 0, -1) when frontal
    yaw = math.degrees(math.atan2(forward[0], -forward[2]))
    pitch = math.degrees(math.asin(float(np.clip(-forward[1], -1, 1))))
    right = rotation @ np.array([1.0, 0.0, 0.0])
    roll = math.degrees(math.atan2(right[1], right[0]))
    return _wrap(yaw), pitch, roll


def _wrap(angle: float) -> float:
    return (angle + 180.0) % 360.0 - 180.0


# --- challenge -----------------------------------------------------------------------------------

def new_challenge(length: int = 3, rng: np.random.Generator | None = None) -> list[str]:
    """A random sequence of actions (each different from the one before), e.g. ['turn_right', 'blink', 'turn_left'].

    Drawn from the operating system's entropy unless ``rng`` is given, so nobody can predict it and
    record the answer beforehand. Each turn appears at least once when ``length`` ≥ 2.
    """
    pick = (lambda n: int(rng.integers(n))) if rng is not None else secrets.randbelow
    while True:
        seq: list[str] = []
        while len(seq) < length:
            action = CHALLENGE_ACTIONS[pick(len(CHALLENGE_ACTIONS))]
            if not seq or action != seq[-1]:
                seq.append(action)
        if length < 2 or {"turn_left", "turn_right"} <= set(seq):
            return seq


def turn_events(yaws: Sequence[float], turn: float = TURN_DEGREES, centre: float = CENTRE_DEGREES
                ) -> list[tuple[int, str]]:
    """Turns seen in a yaw series, as (frame, 'turn_left' | 'turn_right'); the head must come back
    within ``centre`` degrees before the same turn counts again."""
    events: list[tuple[int, str]] = []
    state = "centre"
    for i, yaw in enumerate(yaws):
        if not math.isfinite(yaw):
            continue
        if abs(yaw) <= centre:
            state = "centre"
        elif yaw >= turn and state != "turn_left":
            state = "turn_left"
            events.append((i, state))
        elif yaw <= -turn and state != "turn_right":
            state = "turn_right"
            events.append((i, state))
    return events


@dataclass(frozen=True)
class ChallengeResult:
    """Whether the actions seen answered the challenge, in order; ``failure`` says at which step
    it went wrong (None when passed), e.g. "expected turn_left first; saw turn_right"."""

    challenge: list[str]
    observed: list[str]
    passed: bool
    failure: str | None = None

    def to_dict(self) -> dict:
        return {"challenge": self.challenge, "observed": self.observed, "passed": self.passed,
                "failure": self.failure}


_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")


def _ordinal(n: int) -> str:
    return _ORDINALS[n] if n < len(_ORDINALS) else f"as step {n + 1}"


def check_challenge(challenge: Sequence[str], turns: Sequence[tuple[int, str]],
                    blinks: Sequence[tuple[int, int]]) -> ChallengeResult:
    """Did the person do ``challenge`` in order? Turns must match it exactly (no extra or missing
    turn, same order); a requested blink must fall between the actions around it. Unrequested
    blinks are ignored: people blink anyway."""
    observed = sorted([(f, name) for f, name in turns] + [(start, "blink") for start, _ in blinks])
    failure = _first_failure(list(challenge), observed)
    return ChallengeResult(list(challenge), [name for _, name in observed], failure is None, failure)


def _first_failure(challenge: list[str], observed: list[tuple[int, str]]) -> str | None:
    """The first step of ``challenge`` that ``observed`` (frame, action) did not answer, in words."""
    seen_turns = [name for _, name in observed if name != "blink"]
    turn_steps = [(step, action) for step, action in enumerate(challenge) if action != "blink"]
    for k, (step, action) in enumerate(turn_steps):
        if k >= len(seen_turns):
            saw = "no turn" if not seen_turns else f"no turn after {seen_turns[-1]}"
            return f"expected {action} {_ordinal(step)}; saw {saw}"
        if seen_turns[k] != action:
            return f"expected {action} {_ordinal(step)}; saw {seen_turns[k]}"
    if len(seen_turns) > len(turn_steps):
        return f"saw an extra {seen_turns[len(turn_steps)]} that was not asked for"
    # The turns match; each action, blinks included, must come after the one before it.
    position = -1
    for step, action in enumerate(challenge):
        later = [f for f, name in observed if name == action and f > position]
        if not later:
            after = f" after {challenge[step - 1]}" if step else ""
            return f"expected {action} {_ordinal(step)}; saw no {action}{after}"
        position = later[0]
    return None


# --- planarity -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlanarityResult:
    """Homography residuals between views that differ enough.

    ``residual`` is the median, over informative frame pairs, of the RMS distance between the
    landmarks and their homography fit, as a fraction of the eye distance. ``planar`` is None when
    no pair of frames showed enough head rotation to tell.
    """

    residual: float | None
    pairs: int
    planar: bool | None
    threshold: float = PLANARITY_THRESHOLD
    max_motion: float = 0.0

    def to_dict(self) -> dict:
        return {"residual": None if self.residual is None else round(self.residual, 5), "pairs": self.pairs,
                "planar": self.planar, "threshold": self.threshold, "max_motion": round(self.max_motion, 4)}


def parse_frame_times(text: str | None, frames: int) -> list[float]:
    """Capture times in ms from ``"0,33.3,66.7"``, one per frame; ``[]`` when none are given.

    Raises :class:`~visage.errors.InvalidArgument` for a value that is not a finite number, or a
    count that does not match ``frames``: timing drives blink and turn detection, so it is not guessed.
    """
    if not text or not text.strip():
        return []
    try:
        stamps = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise InvalidArgument(f"frame times must be comma-separated numbers of milliseconds, not {text[:40]!r}") from None
    if not all(math.isfinite(t) for t in stamps):
        raise InvalidArgument("frame times must be finite numbers of milliseconds")
    if len(stamps) != frames:
        raise InvalidArgument(f"{len(stamps)} times for {frames} frames")
    return stamps


def homography_residual(a: np.ndarray, b: np.ndarray) -> float:
    """RMS error of the least-squares homography mapping the :data:`PLANARITY_POINTS` of landmarks
    ``a`` onto those of ``b``, over the eye distance in ``b``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    eyes = np.linalg.norm(b[RIGHT_EYE].mean(axis=0) - b[LEFT_EYE].mean(axis=0))
    a, b = a[PLANARITY_POINTS], b[PLANARITY_POINTS]
    h, _ = cv2.findHomography(a, b, 0)
    if h is None:
        return float("nan")
    projected = cv2.perspectiveTransform(a.reshape(-1, 1, 2), h).reshape(-1, 2)
    return float(np.sqrt(np.mean(np.sum((projected - b) ** 2, axis=1))) / max(eyes, 1e-6))


def similarity_residual(a: np.ndarray, b: np.ndarray) -> float:
    """RMS error of the least-squares similarity (rotation, scale, shift) mapping the
    :data:`PLANARITY_POINTS` of ``a`` onto those of ``b``, over the eye distance in ``b``: how much the
    view changed beyond moving in the image plane."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    eyes = np.linalg.norm(b[RIGHT_EYE].mean(axis=0) - b[LEFT_EYE].mean(axis=0))
    a, b = a[PLANARITY_POINTS], b[PLANARITY_POINTS]
    za, zb = a[:, 0] + 1j * a[:, 1], b[:, 0] + 1j * b[:, 1]
    design = np.c_[za, np.ones_like(za)]
    coef, *_ = np.linalg.lstsq(design, zb, rcond=None)
    error = np.abs(design @ coef - zb)
    return float(np.sqrt(np.mean(error ** 2)) / max(eyes, 1e-6))


def planarity(landmarks: Sequence[np.ndarray | None], poses: Sequence[tuple[float, float, float]] | None = None,
              min_motion: float = PLANARITY_MIN_MOTION, threshold: float = PLANARITY_THRESHOLD,
              max_pairs: int = 200) -> PlanarityResult:
    """Test whether the landmark tracks are those of a plane; see :class:`PlanarityResult`.

    ``landmarks`` holds (68, 2) arrays (None where no face was found). A pair of frames is used when
    the view changed enough: the best similarity leaves at least ``min_motion`` (fraction of the eye
    distance), or the head ``poses`` (yaw, pitch, roll) differ by :data:`PLANARITY_MIN_ROTATION`°.
    """
    points = {i: p for i, p in enumerate(landmarks) if p is not None}
    valid = list(points)
    if len(valid) > 60:  # pairs grow as n²; an even subsample sees the same views
        valid = [valid[int(k)] for k in np.linspace(0, len(valid) - 1, 60)]
    pairs = []
    widest = 0.0
    for n, i in enumerate(valid):
        for j in valid[n + 1:]:
            motion = similarity_residual(points[i], points[j])
            rotation = 0.0
            if poses is not None:
                rotation = max(abs(poses[i][0] - poses[j][0]), abs(poses[i][1] - poses[j][1]))
                rotation = rotation if math.isfinite(rotation) else 0.0
            widest = max(widest, motion)
            if motion >= min_motion or rotation >= PLANARITY_MIN_ROTATION:
                pairs.append((motion, i, j))
    if not pairs:
        return PlanarityResult(None, 0, None, threshold, widest)
    pairs = sorted(pairs, reverse=True)[:max_pairs]  # the most different views say most
    residuals = [homography_residual(points[i], points[j]) for _, i, j in pairs]
    residuals = [r for r in residuals if math.isfinite(r)]
    if not residuals:
        return PlanarityResult(None, 0, None, threshold, widest)
    value = float(np.median(residuals))
    return PlanarityResult(value, len(residuals), value < threshold, threshold, widest)


# --- the whole sequence --------------------------------------------------------------------------

@dataclass(frozen=True)
class FrameTrack:
    """Per-frame measurements of the largest face: landmarks (None without a face), EAR and pose."""

    landmarks: list[np.ndarray | None]
    ear: list[float]
    poses: list[tuple[float, float, float]]
    boxes: list[Box | None] = field(default_factory=list)

    @property
    def frames_with_face(self) -> int:
        return sum(p is not None for p in self.landmarks)


def measure_track(track: Sequence[Face | None], frame_size: tuple[int, int]) -> FrameTrack:
    """EAR and head pose of each frame's face (from :func:`visage.faces.track.track_largest`).

    ``frame_size`` is (width, height). Frames without a face get NaN measurements.
    """
    landmarks: list[np.ndarray | None] = []
    ears: list[float] = []
    poses: list[tuple[float, float, float]] = []
    boxes: list[Box | None] = []
    nan3 = (float("nan"),) * 3
    for face in track:
        if face is None or face.landmarks68 is None:
            landmarks.append(None)
            ears.append(float("nan"))
            poses.append(nan3)
            boxes.append(None)
            continue
        points = face.landmarks68
        landmarks.append(points)
        ears.append(face_ear(points))
        poses.append(head_pose(points, frame_size))
        boxes.append(face.box)
    return FrameTrack(landmarks, ears, poses, boxes)
