"""Active liveness: eye aspect ratio and blinks, head pose and the challenge, planarity."""

from __future__ import annotations

import math
import re
from itertools import pairwise

import cv2
import numpy as np
import pytest

from visage.liveness import active
from visage.liveness.active import (
    check_challenge,
    count_blinks,
    eye_aspect_ratio,
    face_ear,
    head_pose,
    homography_residual,
    new_challenge,
    planarity,
    turn_events,
)


def synthetic_face(openness: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """68 landmarks whose eyes are open by ``openness`` (lid half-height over eye width)."""
    points = np.zeros((68, 2))
    points[:] = (200.0, 200.0)
    for first, x0 in ((36, 150.0), (42, 220.0)):
        w = 30.0
        h = openness * w
        # corner, two upper-lid points, corner, two lower-lid points (dlib order)
        points[first:first + 6] = [(x0, 180), (x0 + 10, 180 - h), (x0 + 20, 180 - h), (x0 + w, 180),
                                   (x0 + 20, 180 + h), (x0 + 10, 180 + h)]
    if rng is not None:
        points += rng.normal(0, 0.4, points.shape)
    return points


def test_eye_aspect_ratio_of_a_known_eye():
    eye = np.array([(0, 0), (10, -3), (20, -3), (30, 0), (20, 3), (10, 3)], float)
    assert eye_aspect_ratio(eye) == pytest.approx((6 + 6) / (2 * 30))
    assert face_ear(synthetic_face(0.1)) == pytest.approx(0.2)


def test_blinks_counted_on_a_synthesised_sequence():
    rng = np.random.default_rng(7)
    fps = 30
    openness = np.full(6 * fps, 0.15)       # 6 s of open eyes (EAR 0.30)
    for start, length in ((30, 4), (75, 6), (120, 3)):   # three blinks of 100–200 ms
        profile = np.interp(np.arange(length), [0, length / 2, length - 1], [0.07, 0.02, 0.07])
        openness[start:start + length] = profile
    openness[150:178] = 0.02                # eyes held shut for ~1 s: not a blink
    openness[96:99] = 0.125                 # a shallow dip (squint): not a blink either
    ears = [face_ear(synthetic_face(o, rng)) for o in openness]
    ears[50] = float("nan")                 # a frame without a face
    result = count_blinks(ears, fps=fps)
    assert result.count == 3
    assert [b[0] for b in result.blinks] == [30, 75, 120]


def test_no_blink_in_a_steady_stare():
    rng = np.random.default_rng(1)
    ears = [face_ear(synthetic_face(0.15, rng)) for _ in range(90)]
    assert count_blinks(ears, fps=30).count == 0


def _model_landmarks(yaw: float, pitch: float = 0.0, size=(640, 480)) -> np.ndarray:
    """Project the pose model's own points, rotated, into an image; other points left at zero."""
    ids = list(active._MODEL_POINTS)
    pts = np.array([active._MODEL_POINTS[i] for i in ids], float)
    rvec = np.array([math.radians(pitch), math.radians(-yaw), 0.0])  # -yaw: nose to the image right
    rot, _ = cv2.Rodrigues(rvec)
    cam = (pts @ rot.T) + (0, 0, 650)
    f = max(size)
    uv = cam[:, :2] / cam[:, 2:] * f + (size[0] / 2, size[1] / 2)
    out = np.zeros((68, 2))
    out[ids] = uv
    return out


@pytest.mark.parametrize("yaw", [-30.0, -10.0, 0.0, 20.0, 35.0])
def test_head_pose_recovers_yaw(yaw):
    got_yaw, got_pitch, _ = head_pose(_model_landmarks(yaw), (640, 480))
    assert got_yaw == pytest.approx(yaw, abs=1.0)
    assert abs(got_pitch) < 1.0


def test_challenge_order_must_match():
    # The person turns right, back to centre, blinks, then left.
    yaws = [0] * 10 + [-25] * 10 + [0] * 10 + [0] * 10 + [25] * 10 + [0] * 5
    blinks = [(32, 34)]
    turns = turn_events(yaws)
    assert [name for _, name in turns] == ["turn_right", "turn_left"]
    assert check_challenge(["turn_right", "blink", "turn_left"], turns, blinks).passed
    # A recording of that answer fails any other order.
    assert not check_challenge(["turn_left", "blink", "turn_right"], turns, blinks).passed
    assert not check_challenge(["turn_right", "turn_left", "blink"], turns, blinks).passed
    # An extra turn is not the requested sequence either.
    assert not check_challenge(["turn_right"], turns, blinks).passed


def test_new_challenge_is_random_and_complete():
    drawn = {tuple(new_challenge(3)) for _ in range(60)}
    assert len(drawn) >= 4                       # many different orders
    for seq in drawn:
        assert {"turn_left", "turn_right"} <= set(seq)
        assert all(a != b for a, b in pairwise(seq))
    rng = np.random.default_rng(3)
    assert new_challenge(4, np.random.default_rng(3)) == new_challenge(4, rng)  # reproducible with a seed


def _face_3d() -> np.ndarray:
    """A rough 3-D face: 68 points on a frontal layout, with depth from a head ellipsoid and a nose."""
    rng = np.random.default_rng(0)
    xy = np.zeros((68, 2))
    xy[0:17] = np.c_[np.linspace(-70, 70, 17), 40 * np.sin(np.linspace(0, np.pi, 17)) + 10]   # jaw
    xy[17:27] = np.c_[np.r_[np.linspace(-55, -15, 5), np.linspace(15, 55, 5)], np.full(10, -45)]  # brows
    xy[27:31] = np.c_[np.zeros(4), np.linspace(-30, 5, 4)]                                      # nose ridge
    xy[31:36] = np.c_[np.linspace(-15, 15, 5), np.full(5, 12)]                                   # nostrils
    xy[36:48] = np.r_[synthetic_face(0.12)[36:48] - (200, 200)] * (1.3, 1.3)                     # eyes
    xy[48:68] = np.c_[25 * np.cos(np.linspace(0, 2 * np.pi, 20)), 35 + 8 * np.sin(np.linspace(0, 2 * np.pi, 20))]
    z = 60 * (1 - (xy[:, 0] / 80) ** 2 - (xy[:, 1] / 110) ** 2)  # toward the camera
    z[27:36] += np.r_[np.linspace(8, 28, 4), [15, 20, 22, 20, 15]]
    return np.c_[xy, -z] + rng.normal(0, 0.1, (68, 3))


def _project(points3d: np.ndarray, yaw: float, pitch: float = 0.0) -> np.ndarray:
    rot, _ = cv2.Rodrigues(np.array([math.radians(pitch), math.radians(yaw), 0.0]))
    cam = points3d @ rot.T + (0, 0, 600)
    return cam[:, :2] / cam[:, 2:] * 800 + (320, 240)


def test_planarity_separates_a_plane_from_a_turning_head():
    rng = np.random.default_rng(5)
    head = _face_3d()
    flat = head * (1, 1, 0)                  # the same face printed on a sheet
    yaws = np.linspace(-20, 20, 9)
    poses = [(y, 0.0, 0.0) for y in yaws]
    noise = lambda p: p + rng.normal(0, 0.3, p.shape)  # detector jitter, in pixels
    real = planarity([noise(_project(head, y)) for y in yaws], poses)
    printed = planarity([noise(_project(flat, y)) for y in yaws], poses)
    assert printed.planar is True and real.planar is False
    assert real.residual > 3 * printed.residual
    # Views too alike to tell: no evidence either way.
    still = planarity([noise(_project(head, 0.0)) for _ in range(5)], [(0.0, 0.0, 0.0)] * 5)
    assert still.planar is None and still.pairs == 0


def test_homography_residual_is_zero_for_an_exact_homography():
    pts = _project(_face_3d() * (1, 1, 0), 0)
    h = np.array([[1.1, 0.05, 3], [0.02, 0.95, -4], [1e-4, -2e-4, 1]])
    moved = cv2.perspectiveTransform(pts.reshape(-1, 1, 2), h).reshape(-1, 2)
    assert homography_residual(pts, moved) < 1e-6


@pytest.fixture(scope="module")
def flat_photo_clip(shared_data):
    """A rendered clip: a real face photo on a flat sheet, turned in perspective before a camera.

    The face is well resolved (about 250 px wide), as before a door camera. With blurrier faces the
    landmark jitter approaches the threshold (see docs/liveness.md)."""
    from visage.liveness.simulate import simulate_moving_print
    from visage.media.images import load_image

    return simulate_moving_print(load_image(shared_data / "faces" / "facerec__obama" / "obama.jpg").pixels)


def test_rendered_clip_of_a_flat_photo_fails_planarity(flat_photo_clip):
    from visage.faces.track import track_largest

    size = (flat_photo_clip[0].shape[1], flat_photo_clip[0].shape[0])
    track = active.measure_track(track_largest(flat_photo_clip, "hog", min_face_fraction=0.2), size)
    assert track.frames_with_face >= 9
    result = planarity(track.landmarks, track.poses)
    assert result.pairs > 0, "the turning sheet should give views far enough apart"
    assert result.planar is True, result


@pytest.mark.slow
def test_fused_check_refuses_the_flat_photo_clip(flat_photo_clip):
    from visage.liveness import check

    result = check(flat_photo_clip, fps=10)
    assert result.evidence["planarity"]["planar"] is True
    assert result.evidence["planarity"]["llr"] < 0
    assert result.live is False, result.reason


def test_too_few_frames_is_insufficient_evidence(flat_photo_clip):
    from visage.liveness import check

    result = check(flat_photo_clip[:4])
    assert result.live is None and result.score is None
    assert "too few frames" in result.reason


@pytest.mark.slow
def test_cli_on_a_video_file_of_the_flat_photo(flat_photo_clip, tmp_path, capsys):
    import json

    from visage.cli import main

    path = tmp_path / "flat.mp4"
    h, w = flat_photo_clip[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (w, h))
    for frame in flat_photo_clip:
        writer.write(np.ascontiguousarray(frame[..., ::-1]))
    writer.release()
    assert main(["liveness", str(path), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["decision"] == "attack"
    assert out["evidence"]["frames"]["total"] == len(flat_photo_clip)
    assert out["evidence"]["planarity"]["planar"] is True
    assert out["evidence"]["challenge"]["asked"] is False
    assert "replay" in out["evidence"]["challenge"]["note"]


def test_read_frames_samples_the_whole_clip(tmp_path):
    from visage.liveness import read_frames

    # 300 frames whose brightness encodes their index: the frames read must reach the end.
    path = tmp_path / "long.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (64, 48))
    for i in range(300):
        writer.write(np.full((48, 64, 3), int(i * 255 / 299), np.uint8))
    writer.release()
    frames, fps = read_frames(path, max_frames=50)
    assert len(frames) == 50
    assert fps == pytest.approx(5.0)
    levels = [float(f.mean()) for f in frames]
    assert levels[0] < 10 and levels[-1] > 240
    assert levels == sorted(levels)


def test_require_live_refuses_a_clip_without_challenge():
    from visage.errors import SpoofError
    from visage.liveness.fuse import NO_CHALLENGE_NOTE, LivenessResult, refuse_unless_live

    # A clip that passed every passive cue but was never asked to move: a replay is not ruled out.
    looks_live = LivenessResult(True, 0.9, 0.5, {"challenge": {"asked": False, "llr": None}}, "live", "clip.mp4")
    with pytest.raises(SpoofError, match=re.escape("clip.mp4: liveness not established: a replayed video")):
        refuse_unless_live(looks_live)
    challenged = LivenessResult(True, 0.9, 0.5, {"challenge": {"asked": True, "llr": 2.0}}, "live", "clip.mp4")
    assert refuse_unless_live(challenged) is challenged
    assert "challenge" in NO_CHALLENGE_NOTE


def test_frame_times_are_numbers_one_per_frame():
    from visage.errors import InvalidArgument
    from visage.liveness.active import parse_frame_times

    assert parse_frame_times("0, 33.3,66.7", 3) == [0.0, 33.3, 66.7]
    assert parse_frame_times(None, 5) == [] and parse_frame_times(" ", 5) == []
    for text, count in (("abc", 1), ("1,inf", 2), ("1,2", 3)):
        with pytest.raises(InvalidArgument):
            parse_frame_times(text, count)
