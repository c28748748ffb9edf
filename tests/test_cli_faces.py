"""The face commands: exit codes as cmp uses them, stable JSON, drawings."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image as PILImage

from visage.cli import main
from visage.config import DEFAULT_ENCODER
from visage.encoders import get_encoder
from visage.evaluation.verification import default_calibration


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def photos(shared_data):
    faces = shared_data / "faces"
    return {"obama": str(faces / "facerec__obama/obama.jpg"), "obama2": str(faces / "facerec__obama/obama2.jpg"),
            "biden": str(faces / "facerec__biden/biden.jpg"),
            "group": str(shared_data / "detection/facerec_obama_and_biden.jpg")}


@pytest.mark.slow
def test_verify_exit_codes_and_json(capsys, photos):
    code, out, _ = run(capsys, "verify", photos["obama"], photos["obama2"], "--json")
    result = json.loads(out)
    assert code == 0 and result["same"] is True
    assert set(result) >= {"distance", "threshold", "same", "probability"}
    assert result["threshold"] == default_calibration(get_encoder(DEFAULT_ENCODER).name).threshold
    assert result["distance"] < result["threshold"] and result["probability"] > 0.5

    code, out, _ = run(capsys, "verify", photos["obama"], photos["biden"], "--json")
    result = json.loads(out)
    assert code == 1 and result["same"] is False and result["distance"] > result["threshold"]
    assert result["probability"] < 0.5

    code, out, _ = run(capsys, "verify", photos["obama"], photos["biden"], "--threshold", "1.5")
    assert code == 0 and "SAME" in out and "threshold 1.5000" in out


def test_verify_errors_exit_2_and_name_the_file(capsys, photos, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a whole jpeg")
    code, _, err = run(capsys, "verify", photos["obama"], str(bad))
    assert code == 2 and "broken.jpg" in err and "Traceback" not in err
    blank = tmp_path / "blank.png"
    PILImage.fromarray(np.full((200, 200, 3), 127, np.uint8)).save(blank)
    code, _, err = run(capsys, "verify", photos["obama"], str(blank))
    assert code == 2 and "blank.png: no face found" in err


@pytest.mark.slow
def test_detect_json_fields_and_drawing(capsys, photos, tmp_path):
    drawing = tmp_path / "drawn.png"
    code, out, _ = run(capsys, "detect", photos["group"], "--json", "--draw", str(drawing))
    result = json.loads(out)
    assert code == 0 and len(result["faces"]) >= 2
    face = result["faces"][0]
    assert set(face["box"]) == {"left", "top", "right", "bottom"}
    assert len(face["landmarks"]["5"]) == 5 and len(face["landmarks"]["68"]) == 68
    assert isinstance(face["score"], float)
    drawn = np.asarray(PILImage.open(drawing).convert("RGB"))
    assert drawn.shape == (result["height"], result["width"], 3)
    b = face["box"]  # the box outline is drawn in green
    assert tuple(drawn[b["top"], (b["left"] + b["right"]) // 2]) == (0, 255, 0)


@pytest.mark.slow
def test_encode_json(capsys, photos):
    code, out, _ = run(capsys, "encode", photos["obama"], "--json")
    result = json.loads(out)
    assert code == 0 and len(result["faces"]) == 1
    face = result["faces"][0]
    assert len(face["encoding"]) == 640 and face["embedding"] == get_encoder(DEFAULT_ENCODER).name
    code, _, err = run(capsys, "encode", photos["group"], "--which", "one")
    assert code == 2 and "3 faces found, expected one" in err and "1 skipped" in err


def test_models_lists_every_model_with_a_good_checksum(capsys):
    code, out, _ = run(capsys, "models", "--json")
    rows = json.loads(out)
    assert code == 0 and {r["name"] for r in rows} >= {"dlib_resnet_encoder", "dlib_landmarks_68", "hed_vgg16"}
    assert all(r["checksum_ok"] and r["size"] > 0 for r in rows)


@pytest.mark.slow
def test_the_installed_command_runs_as_a_process(photos):
    proc = subprocess.run([sys.executable, "-m", "visage", "verify", photos["obama"], photos["biden"]],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 1 and "DIFFERENT" in proc.stdout
