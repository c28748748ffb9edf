"""The detection-score floor (``min_score``, ``--min-score``) and which faces ``verify`` compares (``--which``).

On real photos: skimage's astronaut, whose mission patch dlib's HOG detector takes for a face; the
dev set in ../shared/data; and a photo this file builds by pasting two dev-set people side by
side, so that it holds two known people.
"""

from __future__ import annotations

import argparse
import json
import re

import numpy as np
import pytest
from PIL import Image as PILImage

import visage
from visage.api import encode_many
from visage.cli import build_parser, main
from visage.config import DEFAULT_MIN_SCORE
from visage.faces.detect import min_score_for
from visage.faces.types import Box

HOG_FLOOR = DEFAULT_MIN_SCORE["hog"]


@pytest.fixture(scope="module")
def astronaut_png(tmp_path_factory) -> str:
    from skimage import data as skdata

    path = tmp_path_factory.mktemp("astronaut") / "astronaut.png"
    PILImage.fromarray(skdata.astronaut()).save(path)
    return str(path)


def _centre(box: Box) -> tuple[float, float]:
    return (box.left + box.right) / 2, (box.top + box.bottom) / 2


@pytest.mark.slow
def test_the_default_floor_drops_the_patch_and_keeps_the_astronauts_face(astronaut_png):
    everything = visage.detect(astronaut_png, min_score=0.0, landmarks68=False)  # all HOG itself reports
    assert len(everything) == 2
    # The false face is the mission patch, in the lower half of the 512 px photo; the real one is above.
    patch = next(f for f in everything if _centre(f.box)[1] > 300)
    real = next(f for f in everything if _centre(f.box)[1] < 200)
    assert patch.score < HOG_FLOOR < real.score

    kept = visage.detect(astronaut_png, landmarks68=False)
    assert [f.box for f in kept] == [real.box]
    # An explicit floor wins over the default, both ways.
    assert visage.detect(astronaut_png, min_score=real.score + 0.01, landmarks68=False) == []
    assert len(visage.encode(astronaut_png, min_score=0.0)) == 2
    assert [e.face.box for e in visage.encode(astronaut_png)] == [real.box]
    (batched,) = visage.encode_batch([astronaut_png])
    assert [e.face.box for e in batched] == [real.box]
    default_run, no_floor = (next(encode_many([astronaut_png], min_score=s)) for s in (None, 0.0))
    assert [e.face.box for e in default_run.encodings] == [real.box] and len(no_floor.encodings) == 2


def test_each_detector_has_its_own_default_floor():
    assert min_score_for("hog") == HOG_FLOOR
    assert min_score_for("mmod") == DEFAULT_MIN_SCORE["mmod"]
    assert min_score_for("mtcnn") == DEFAULT_MIN_SCORE["mtcnn"]
    assert min_score_for("hog", 0.5) == 0.5


@pytest.mark.slow
def test_cli_detect_and_demo_drop_the_patch(astronaut_png, capsys, tmp_path):
    assert main(["detect", astronaut_png, "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["faces"]) == 1
    assert main(["detect", astronaut_png, "--json", "--min-score", "0"]) == 0
    assert len(json.loads(capsys.readouterr().out)["faces"]) == 2

    # Without the dev set the demo works on the astronaut: one face now, not the patch as well.
    (tmp_path / "no-dev-set").mkdir()  # a folder without the dev set's faces/
    assert main(["demo", "--data", str(tmp_path / "no-dev-set"), "-o", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "astronaut (skimage) (512×512): 1 face(s)" in out


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", ["detect", "encode", "verify", "demo", "liveness", "liveness-eval"])
def test_every_detecting_command_takes_min_score_and_shows_the_default(command):
    parser = _subparsers(build_parser())[command]
    assert parser.parse_known_args(["x", "y", "--min-score", "0.3"])[0].min_score == 0.3
    help_text = " ".join(parser.format_help().split())
    assert f"hog {HOG_FLOOR:g}" in help_text and f"mmod {DEFAULT_MIN_SCORE['mmod']:g}" in help_text


@pytest.mark.slow
def test_every_dev_set_face_is_kept_at_the_default_floor(shared_data):
    """Every detection on the dev set is a true face (each one looked at), so the floor must drop none."""
    photos = sorted((shared_data / "faces").glob("*/*")) + sorted((shared_data / "detection").glob("*"))
    assert len(photos) >= 114 + 9
    lost = {}
    for photo in photos:
        everything = visage.detect(photo, min_score=0.0, landmarks68=False)
        kept = visage.detect(photo, landmarks68=False)
        if not kept or len(kept) != len(everything):
            lost[photo.name] = [round(f.score, 3) for f in everything]
    assert lost == {}


# -- verify --which, on a photo holding two known people --------------------------------------------------


@pytest.fixture(scope="module")
def two_people(shared_data, tmp_path_factory) -> dict[str, object]:
    """Biden large on the left and Obama half as large on the right, pasted into one photo."""
    faces = shared_data / "faces"
    biden = PILImage.open(faces / "facerec__biden/biden2.jpg").convert("RGB")
    obama = PILImage.open(faces / "facerec__obama/obama.jpg").convert("RGB")
    biden = biden.resize((600, 600))
    obama = obama.resize((obama.width // 2, obama.height // 2))
    canvas = PILImage.new("RGB", (biden.width + obama.width, max(biden.height, obama.height)), "white")
    canvas.paste(biden, (0, 0))
    canvas.paste(obama, (biden.width, 0))
    path = tmp_path_factory.mktemp("composite") / "biden_and_obama.png"
    canvas.save(path)
    return {"photo": str(path), "split": biden.width, "obama": str(faces / "facerec__obama/obama2.jpg")}


@pytest.mark.slow
def test_largest_compares_the_larger_face_and_best_the_right_one(two_people):
    obama, photo, split = two_people["obama"], two_people["photo"], two_people["split"]

    largest = visage.verify(obama, photo)  # which="largest" is the default
    assert largest.faces_in_a == 1 and largest.faces_in_b == 2
    assert largest.face_b is not None and _centre(largest.face_b)[0] < split  # Biden's, the larger face
    assert not largest.same

    best = visage.verify(obama, photo, which="best")
    assert best.face_b is not None and _centre(best.face_b)[0] > split  # Obama's face, on the right
    assert best.same and best.distance < best.threshold
    assert best.distance < largest.distance
    assert best.face_a == largest.face_a  # the one face of the single photo

    # Each warning names its photo, the face count, the rule and the face used (numbered from 1).
    b = largest.face_b
    assert largest.warnings == (f"{photo}: 2 faces; used the largest (face 1 at {b.left},{b.top},{b.right},{b.bottom})",)
    b = best.face_b
    assert best.warnings == (f"{photo}: 2 faces; used the closest match to the other photo "
                             f"(face 2 at {b.left},{b.top},{b.right},{b.bottom})",)


def test_a_photo_with_one_face_gets_no_warning(shared_data):
    faces = shared_data / "faces/facerec__obama"
    result = visage.verify(faces / "obama.jpg", faces / "obama2.jpg", which="best")
    assert result.same and result.warnings == () and (result.faces_in_a, result.faces_in_b) == (1, 1)


def test_which_must_be_largest_or_best(two_people):
    with pytest.raises(visage.errors.InvalidArgument, match="which"):
        visage.verify(two_people["obama"], two_people["photo"], which="all")  # type: ignore[arg-type]


@pytest.mark.slow
def test_cli_verify_which_warns_on_stderr_and_json_holds_both_boxes(two_people, capsys):
    photo, obama, split = two_people["photo"], two_people["obama"], two_people["split"]

    code = main(["verify", photo, obama, "--which", "best", "--json"])
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert code == 0 and result["same"] is True
    for key in ("face_a", "face_b"):
        assert set(result[key]) == {"left", "top", "right", "bottom"}
    a = result["face_a"]
    assert (a["left"] + a["right"]) / 2 > split  # Obama's face in the two-person photo
    used = f"face 2 at {a['left']},{a['top']},{a['right']},{a['bottom']}"
    assert f"warning: {photo}: 2 faces; used the closest match to the other photo ({used})" in captured.err
    assert result["faces_in_a"] == 2 and result["faces_in_b"] == 1 and len(result["warnings"]) == 1

    code = main(["verify", photo, obama])
    captured = capsys.readouterr()
    assert code == 1 and "DIFFERENT" in captured.out
    match = re.search(r"2 faces; used the largest \(face 1 at (\d+),(\d+),(\d+),(\d+)\)", captured.err)
    assert match is not None
    left, _, right, _ = (int(v) for v in match.groups())
    assert (left + right) / 2 < split  # Biden's, the larger face


@pytest.mark.slow
def test_verify_json_boxes_match_what_detect_finds(two_people, capsys):
    obama = two_people["obama"]
    assert main(["verify", obama, obama, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    (face,) = visage.detect(obama, landmarks68=False)
    assert result["face_a"] == result["face_b"] == face.box.to_dict()
    assert result["warnings"] == []
    assert np.isclose(result["distance"], 0.0, atol=1e-5)


@pytest.mark.slow
def test_best_with_require_live_checks_the_faces_compared(shared_data, tmp_path):
    from visage.errors import SpoofError

    pad = shared_data / "pad"
    if not (pad / "MANIFEST.tsv").is_file():
        pytest.skip(f"no real attack set at {pad}")
    subject = "nuaa_imironica__db__{kind}Raw__0004__0004_01_{take}.jpg"
    real = pad / "real" / subject.format(kind="Client", take="00_01_466")
    real_again = pad / "real" / subject.format(kind="Client", take="06_03_176")
    printed = pad / "print" / subject.format(kind="Imposter", take="00_01_254")
    with pytest.raises(SpoofError, match="liveness check refused"):
        visage.verify(real, printed, which="best", require_live=True)
    blank = tmp_path / "blank.png"
    PILImage.fromarray(np.full((200, 200, 3), 127, np.uint8)).save(blank)
    with pytest.raises(SpoofError, match="no face"):  # no face is no evidence of a live one
        visage.verify(real, blank, which="best", require_live=True)
    assert visage.verify(real, real_again, which="best", require_live=True).same
