"""One decision from every cue: the fused liveness score, its operating point, and missing evidence.

The score is a probability of "live" built as a sum of log-likelihood ratios (naive Bayes with equal
priors), each cue adding the evidence it has:

* **passive** — the CNN's log-odds (:mod:`.passive`), shifted so that its operating threshold
  sits at 0 (for a frame sequence: the median over up to :data:`PASSIVE_FRAMES` frames sampled
  across the whole sequence), and clipped to ±:data:`PASSIVE_LLR_CAP`: one still of an unseen camera
  may not outvote the physical evidence of planarity or a failed challenge;
* **planarity** — landmarks that follow one homography across views that differ
  enough (see :func:`visage.liveness.active.planarity`): :data:`LLR_PLANAR` (strong: a real head cannot do that); a clearly
  non-planar motion: :data:`LLR_NOT_PLANAR` (weak: a replayed video of a real head is not
  planar either);
* **blinks** — at least one blink: :data:`LLR_BLINK`. None in T seconds of open eyes:
  −:data:`BLINK_RATE` × T (people blink about every 4 s), at most :data:`LLR_NO_BLINK_FLOOR`;
* **challenge** — when one was asked: answered in order :data:`LLR_CHALLENGE_PASSED`, answered wrong
  :data:`LLR_CHALLENGE_FAILED` (a recorded video does not know the order).

**Operating point.** ``live`` is True when the fused score is at least :data:`THRESHOLD` (0.5), i.e.
when the evidence for live outweighs the evidence against. For a single image that is exactly the
passive model's own threshold, chosen where the mean BPCER and the mean worst-type APCER over
held-out sources are equal (``scripts/train_liveness.py``).

**Missing evidence.** No face (a tight face crop with no detection is judged whole, and the
evidence says so), a face too small to judge, or a frame sequence with fewer than
:data:`MIN_FRAMES` frames showing a face gives ``live=None`` and ``score=None`` with the reason,
never a default of live.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import SpoofError
from ..faces.types import Face
from . import active
from .passive import PassiveModel, face_region, load_model, passive_check

THRESHOLD = 0.5
#: Said of every clip checked without a challenge.
NO_CHALLENGE_NOTE = ("a replayed video cannot be ruled out without a challenge: a replay blinks and is not "
                     "planar; ask for one (visage liveness-challenge) and pass it with --challenge")
#: Smallest face (box width, pixels) whose texture says anything.
MIN_FACE_PIXELS = 60
#: Fewest frames with a face for a sequence to count as one.
MIN_FRAMES = 10
PASSIVE_FRAMES = 5
PASSIVE_LLR_CAP = 4.0
LLR_PLANAR = -6.0
LLR_NOT_PLANAR = 1.0
LLR_BLINK = 1.5
BLINK_RATE = 0.25
LLR_NO_BLINK_FLOOR = -2.0
LLR_CHALLENGE_PASSED = 3.0
LLR_CHALLENGE_FAILED = -10.0


@dataclass(frozen=True)
class LivenessResult:
    """The liveness decision and what it rests on.

    ``live`` is True (live), False (attack) or None (not enough evidence: see ``reason``).
    ``score`` is the fused probability of live (None without evidence); ``threshold`` the operating
    point; ``evidence`` maps each cue to its measurements and its log-likelihood ratio ``llr``.
    """

    live: bool | None
    score: float | None
    threshold: float
    evidence: dict
    reason: str
    source: str = ""

    @property
    def decision(self) -> str:
        """'live', 'attack' or 'insufficient evidence'."""
        return {True: "live", False: "attack", None: "insufficient evidence"}[self.live]

    def to_dict(self) -> dict:
        """JSON-ready: source, decision, live, score, threshold, reason, evidence."""
        return {"source": self.source, "decision": self.decision, "live": self.live,
                "score": None if self.score is None else round(self.score, 4), "threshold": self.threshold,
                "reason": self.reason, "evidence": _jsonable(self.evidence)}


def _insufficient(reason: str, evidence: dict, source: str) -> LivenessResult:
    return LivenessResult(None, None, THRESHOLD, evidence, reason, source)


def _decide(evidence: dict, source: str) -> LivenessResult:
    total = sum(v["llr"] for v in evidence.values() if isinstance(v, dict) and v.get("llr") is not None)
    score = 1.0 / (1.0 + math.exp(-total))
    live = score >= THRESHOLD
    against = sorted(((v["llr"], k) for k, v in evidence.items() if isinstance(v, dict) and v.get("llr")),
                     reverse=not live)
    lead = ", ".join(k for _, k in against[:2])
    reason = f"{'live' if live else 'attack'}: fused score {score:.3f} {'≥' if live else '<'} {THRESHOLD}" + \
        (f" (strongest evidence: {lead})" if lead else "")
    failure = (evidence.get("challenge") or {}).get("failure")
    if failure:  # the one step that went wrong says more than any score
        reason = f"attack: challenge failed: {failure}; fused score {score:.3f} < {THRESHOLD}"
    return LivenessResult(live, score, THRESHOLD, evidence, reason, source)


def check_image(pixels: np.ndarray, faces: Sequence[Face], source: str = "<image>",
                model: PassiveModel | None = None) -> LivenessResult:
    """The passive check on the largest of ``faces`` (found in the RGB uint8 ``pixels``).

    With no face, a picture that is itself a tight face crop is judged whole
    (``evidence["face"]["whole_image"]``); any other picture without a face is insufficient evidence.
    """
    region = face_region(pixels, [face.box for face in faces])
    if region is None:
        return _insufficient("no face found", {"face": {"found": 0}}, source)
    evidence: dict = {"face": region.to_dict()}
    if region.box.width < MIN_FACE_PIXELS or region.box.height < MIN_FACE_PIXELS:
        return _insufficient(f"face too small to judge ({region.box.width} px wide; need {MIN_FACE_PIXELS})",
                             evidence, source)
    model = model or load_model()
    result = passive_check(pixels, region.box, model)
    evidence["passive"] = {**result.to_dict(), "model": f"v{model.version}", "model_threshold": round(model.threshold, 4),
                           "llr": _passive_llr(result.logit, model)}
    return _decide(evidence, source)


def check_frames(frames: Sequence[np.ndarray], faces: Sequence[Face | None], source: str = "<frames>",
                 fps: float = 30.0, challenge: Sequence[str] | None = None, model: PassiveModel | None = None
                 ) -> LivenessResult:
    """Passive and active checks over a frame sequence (RGB uint8 frames, ``fps`` frames a second).

    ``faces`` holds the largest face of each frame (:func:`visage.faces.track.track_largest`).
    ``challenge`` is the action sequence the person was asked to perform (from
    :func:`visage.liveness.new_challenge`), or None when none was asked.
    """
    track = active.measure_track(faces, (frames[0].shape[1], frames[0].shape[0]))
    seen = track.frames_with_face
    evidence: dict = {"frames": {"total": len(frames), "with_face": seen, "fps": fps}}
    if seen < MIN_FRAMES:
        return _insufficient(f"too few frames with a face ({seen} of {len(frames)}; need {MIN_FRAMES})",
                             evidence, source)
    widths = [b.width for b in track.boxes if b is not None]
    if float(np.median(widths)) < MIN_FACE_PIXELS:
        return _insufficient(f"face too small to judge ({np.median(widths):.0f} px wide; need {MIN_FACE_PIXELS})",
                             evidence, source)
    evidence["passive"] = _passive_over_frames(frames, track, model or load_model())
    evidence["planarity"] = _planarity_evidence(track)
    blinks = active.count_blinks(track.ear, fps=fps)
    evidence["blink"] = _blink_evidence(blinks, track, fps)
    if challenge:
        evidence["challenge"] = _challenge_evidence(challenge, track, blinks)
    else:
        evidence["challenge"] = {"asked": False, "llr": None, "note": NO_CHALLENGE_NOTE}
    return _decide(evidence, source)


def _passive_over_frames(frames, track: active.FrameTrack, model: PassiveModel) -> dict:
    boxes = {i: b for i, b in enumerate(track.boxes) if b is not None}
    with_face = list(boxes)
    picks = [with_face[int(k)] for k in np.linspace(0, len(with_face) - 1, min(PASSIVE_FRAMES, len(with_face)))]
    logits = [passive_check(frames[i], boxes[i], model).logit for i in picks]
    median = float(np.median(logits))
    return {"logits": [round(v, 4) for v in logits], "frames": picks, "model": f"v{model.version}",
            "model_threshold": round(model.threshold, 4),
            "probability": round(1.0 / (1.0 + math.exp(-(median - model.threshold))), 4),
            "llr": _passive_llr(median, model)}


def _passive_llr(logit: float, model: PassiveModel) -> float:
    return float(np.clip(logit - model.threshold, -PASSIVE_LLR_CAP, PASSIVE_LLR_CAP))


def _planarity_evidence(track: active.FrameTrack) -> dict:
    result = active.planarity(track.landmarks, track.poses)
    llr = None if result.planar is None else (LLR_PLANAR if result.planar else LLR_NOT_PLANAR)
    note = {} if result.planar is not None else {
        "note": "the views did not change enough to tell (turn the head, or the camera, a little)"}
    return {**result.to_dict(), **note, "llr": llr}


def _blink_evidence(blinks: active.BlinkResult, track: active.FrameTrack, fps: float) -> dict:
    seconds = track.frames_with_face / fps
    if blinks.count:
        llr = LLR_BLINK
    else:
        llr = max(-BLINK_RATE * seconds, LLR_NO_BLINK_FLOOR)
    return {**blinks.to_dict(), "seconds_observed": round(seconds, 2), "llr": llr}


def _challenge_evidence(challenge: Sequence[str], track: active.FrameTrack, blinks: active.BlinkResult) -> dict:
    turns = active.turn_events([p[0] for p in track.poses])
    result = active.check_challenge(challenge, turns, blinks.blinks)
    return {**result.to_dict(), "llr": LLR_CHALLENGE_PASSED if result.passed else LLR_CHALLENGE_FAILED}


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return round(float(value), 4) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def admitted(result: LivenessResult) -> bool:
    """Does a challenge's verdict let the person in? Only when judged live and the asked actions were
    done in the asked order (a failed challenge's :data:`LLR_CHALLENGE_FAILED` outweighs every other
    cue together, so a live verdict with a failed challenge cannot happen; this says it outright)."""
    return result.live is True and bool((result.evidence.get("challenge") or {}).get("passed"))


def refuse_unless_live(result: LivenessResult) -> LivenessResult:
    """Return ``result`` when live; raise :class:`~visage.errors.SpoofError` explaining why not otherwise.

    A clip checked without a challenge is refused even when it looks live (:data:`NO_CHALLENGE_NOTE`).
    """
    if result.live and result.evidence.get("challenge", {}).get("asked") is False:
        raise SpoofError(f"{result.source}: liveness not established: {NO_CHALLENGE_NOTE}", result)
    if result.live:
        return result
    what = "liveness check refused" if result.live is False else "liveness not established"
    raise SpoofError(f"{result.source}: {what}: {result.reason}", result)
