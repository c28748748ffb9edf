"""``visage liveness`` and ``visage liveness-eval`` from the command line."""

from __future__ import annotations

import json

import pytest

from visage.cli import main


def test_liveness_json_on_a_real_still(shared_data, capsys):
    code = main(["liveness", str(shared_data / "spoof" / "real" / "silentface_image_T1.jpg"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["decision"] in {"live", "attack"}
    assert code == (0 if out["live"] else 1)
    assert 0.0 <= out["score"] <= 1.0
    passive = out["evidence"]["passive"]
    assert set(passive["branches"]) == {"context_2.7x", "context_4x"}
    assert passive["model"] == "v3"


def test_liveness_missing_file_is_an_error(tmp_path, capsys):
    assert main(["liveness", str(tmp_path / "nope.jpg")]) == 2
    err = capsys.readouterr().err
    assert "nope.jpg" in err and "no such file" in err


def test_liveness_unknown_challenge_action(tmp_path, capsys):
    assert main(["liveness", str(tmp_path / "clip.mp4"), "--challenge", "turn_left,jump"]) == 2
    assert "jump" in capsys.readouterr().err


def test_liveness_challenge_prints_actions(capsys):
    assert main(["liveness-challenge", "--length", "3"]) == 0
    actions = capsys.readouterr().out.strip().split(",")
    assert len(actions) == 3 and {"turn_left", "turn_right"} <= set(actions)


@pytest.mark.slow
def test_liveness_eval_on_the_spoof_stills(shared_data, tmp_path, capsys):
    # A labelled folder of links to the dev set's stills (nothing copied).
    root = tmp_path / "spoof"
    for label in ("real", "print", "replay"):
        (root / label).mkdir(parents=True)
        for f in (shared_data / "spoof" / label).iterdir():
            (root / label / f.name).symlink_to(f)
    plot = tmp_path / "det.png"
    assert main(["liveness-eval", str(root), "--json", "--plot", str(plot)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["apcer"]) == {"print", "replay"}
    assert out["counts"] == {"print": 1, "real": 1, "replay": 2}
    for key in ("bpcer", "acer", "bpcer_at_apcer_5"):
        assert 0.0 <= out[key] <= 1.0
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert len(out["files"]) == 4


def test_liveness_eval_needs_real_and_an_attack(tmp_path, capsys):
    (tmp_path / "print").mkdir()
    (tmp_path / "print" / "x.jpg").write_bytes(b"")
    assert main(["liveness-eval", str(tmp_path)]) == 2
    assert "real/" in capsys.readouterr().err
