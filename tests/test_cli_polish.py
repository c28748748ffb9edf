"""The command line as a user meets it: --version, closed pipes, help texts, where files go, and
results worded plainly."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from visage.cli import MMOD_ON_CPU, build_parser, main, subparsers
from visage.cli import style as style_cli
from visage.wording import claim_verdict, margin, probability

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def astronaut_png(tmp_path_factory) -> Path:
    from skimage import data

    path = tmp_path_factory.mktemp("astronaut") / "astronaut.png"
    PILImage.fromarray(data.astronaut()).save(path)
    return path


def run_shell(command: str) -> subprocess.CompletedProcess:
    """``command`` in bash with pipefail, ``visage`` being this interpreter's module."""
    visage = f"{sys.executable} -m visage"
    return subprocess.run(["bash", "-o", "pipefail", "-c", command.replace("visage", visage, 1)],
                          check=False, capture_output=True, text=True, timeout=120, cwd=ROOT)


# --- 1. --version ---------------------------------------------------------------------------------

def test_version_prints_the_package_metadata_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"visage {version('visage')}"


# --- 2. a closed pipe -----------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["visage models | head -1",
                                     "visage liveness-challenge --length 200000 | head -c 10"])
@pytest.mark.slow
def test_a_closed_pipe_ends_quietly_with_status_0(command):
    # The second writes far more than a pipe holds, so the pipe closes in the middle of the output.
    done = run_shell(command)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr
    assert done.stdout


# --- 3. help and defaults -------------------------------------------------------------------------

def test_every_flag_of_every_command_has_help_that_states_its_default():
    checked = 0
    for name, parser in subparsers(build_parser()):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
                continue
            flag = f"visage {name} {action.option_strings[-1]}"
            assert action.help and action.help.strip(), f"{flag} has no help"
            shown = formatter._expand_help(action)
            if action.default not in (None, False, argparse.SUPPRESS):
                assert "default" in shown, f"{flag}: help does not state its default {action.default!r}"
            checked += 1
    assert checked > 150  # every command was walked


def test_help_shows_a_numeric_default(capsys):
    with pytest.raises(SystemExit):
        main(["cluster", "--help"])
    assert "(default: 1)" in capsys.readouterr().out  # --min-size


# --- 4. files go where they are told --------------------------------------------------------------

@pytest.fixture(scope="module")
def spoof_folder(tmp_path_factory, astronaut_png) -> Path:
    root = tmp_path_factory.mktemp("pad")
    for label in ("real", "print"):
        (root / label).mkdir()
        (root / label / "a.png").symlink_to(astronaut_png)
    return root


@pytest.mark.slow
def test_liveness_eval_writes_a_plot_only_when_asked(spoof_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["liveness-eval", str(spoof_folder)]) == 0
    assert "DET plot" not in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []
    assert main(["liveness-eval", str(spoof_folder), "--plot", "det.png"]) == 0
    assert "DET plot written to det.png" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["det.png"]


@pytest.mark.slow
def test_cluster_writes_to_the_current_folder_by_default_not_into_the_photos(astronaut_png, tmp_path,
                                                                            monkeypatch, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.png").symlink_to(astronaut_png)
    PILImage.open(astronaut_png).transpose(PILImage.Transpose.FLIP_LEFT_RIGHT).save(photos / "b.png")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["cluster", str(photos), "--encoder", "dlib-torch", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["faces"] == 2 and out["clusters"] == 1
    assert Path(out["files"]["report"]) == Path("visage-clusters") / "report.html"
    assert (work / "visage-clusters" / "clusters.json").is_file()
    assert sorted(p.name for p in photos.iterdir()) == ["a.png", "b.png"]


@pytest.mark.slow
def test_cluster_gallery_names_clusters_after_enrolled_people(shared_data, tmp_path, capsys):
    faces = shared_data / "faces"
    photos = tmp_path / "photos"
    photos.mkdir()
    for person, n in (("Colin_Powell", 1), ("Colin_Powell", 2), ("Donald_Rumsfeld", 1)):
        name = f"{person}_{n:04d}.jpg"
        (photos / name).symlink_to(faces / f"lfw__{person}" / name)
    gallery = str(tmp_path / "g.db")
    enrolled = faces / "lfw__Colin_Powell" / "Colin_Powell_0003.jpg"
    assert main(["enroll", "Colin Powell", str(enrolled), "--gallery", gallery, "--encoder", "dlib-torch"]) == 0
    capsys.readouterr()
    out_dir = tmp_path / "report"
    assert main(["cluster", str(photos), "--gallery", gallery, "--out", str(out_dir)]) == 0
    text = capsys.readouterr().out
    assert "cluster 1: Colin Powell (2 face(s))" in text  # the gallery's encoder was used: no --encoder
    assert "named 1 of 2 cluster(s)" in text
    manifest = json.loads((out_dir / "clusters.json").read_text())
    assert [c["name"] for c in manifest["clusters"]] == ["Colin Powell", None]
    assert "Colin Powell" in (out_dir / "report.html").read_text()


def test_style_refuses_an_unknown_suffix_before_any_work(astronaut_png, tmp_path, capsys):
    out = tmp_path / "out.gif"
    assert main(["style", str(astronaut_png), str(astronaut_png), "-o", str(out)]) == 2
    assert ".gif" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_style_writes_jpeg_by_suffix_and_states_a_long_run(astronaut_png, tmp_path, capsys, monkeypatch,
                                                          one_torch_thread):
    monkeypatch.setattr(style_cli, "LONG_RUN_SECONDS", 0.0)  # so a tiny run counts as long
    out = tmp_path / "out.jpg"
    assert main(["style", str(astronaut_png), str(astronaut_png), "-o", str(out), "--size", "64", "--steps", "1",
                 "--quiet"]) == 0
    assert out.read_bytes()[:2] == b"\xff\xd8"  # JPEG
    assert PILImage.open(out).format == "JPEG"
    captured = capsys.readouterr()
    assert "about" in captured.err and "64 px, 1 steps" in captured.err


def test_style_defaults_finish_in_minutes_on_two_cores():
    from visage.style import StyleSettings

    settings = StyleSettings(steps=style_cli.DEFAULT_STEPS, threads=2)  # the CLI's defaults, 512 px
    seconds = style_cli.estimated_seconds(settings, (512, 512))
    assert 60 < seconds < 8 * 60
    assert style_cli.estimated_seconds(settings, (512, 384)) < seconds  # fewer pixels, less time


@pytest.mark.slow
def test_demo_finds_the_dev_set_beside_the_checkout_from_any_folder(shared_data, tmp_path, monkeypatch, capsys):
    import visage
    from visage.demo import default_data_dir

    expected = Path(visage.__file__).resolve().parents[2].parent / "shared" / "data"
    assert default_data_dir() == expected
    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "shared/data/detection/facerec_obama_and_biden.jpg" in out
    assert (tmp_path / "visage-demo" / "detections.png").is_file()


# --- 5. results in plain language -----------------------------------------------------------------

def test_a_failed_challenge_names_the_step():
    from visage.liveness.active import check_challenge

    turns = [(10, "turn_right"), (40, "turn_left")]
    blinks = [(25, 27)]
    failed = check_challenge(["turn_left", "blink", "turn_right"], turns, blinks)
    assert not failed.passed and failed.failure == "expected turn_left first; saw turn_right"
    assert check_challenge(["turn_right", "turn_left", "blink"], turns, blinks).failure == \
        "expected blink third; saw no blink after turn_left"
    assert check_challenge(["turn_right", "blink", "turn_left", "turn_right"], turns, blinks).failure == \
        "expected turn_right fourth; saw no turn after turn_left"
    assert check_challenge(["turn_right"], turns, blinks).failure == "saw an extra turn_left that was not asked for"
    passed = check_challenge(["turn_right", "blink", "turn_left"], turns, blinks)
    assert passed.passed and passed.failure is None and passed.to_dict()["failure"] is None


@pytest.mark.slow
def test_a_failed_challenge_reason_says_which_step(shared_data):
    from visage.liveness import check
    from visage.liveness.simulate import simulate_moving_print
    from visage.media.images import load_image

    clip = simulate_moving_print(load_image(shared_data / "faces" / "facerec__obama" / "obama.jpg").pixels)
    result = check(clip, fps=10, challenge=["turn_left", "blink", "turn_right"])
    assert result.live is False
    assert result.reason.startswith("attack: challenge failed: expected turn_left first; saw ")


def test_no_face_is_insufficient_evidence_never_an_attack(tmp_path):
    from visage.liveness import check

    blank = tmp_path / "wall.png"
    PILImage.new("RGB", (200, 160), (180, 170, 160)).save(blank)
    result = check(str(blank))
    assert result.live is None and result.decision == "insufficient evidence"
    assert "attack" not in result.reason


def test_probability_is_never_shown_as_a_certainty():
    assert probability(0.9996) == ">0.99" and probability(0.0004) == "<0.01"
    assert probability(0.734) == "0.73" and probability(0.99) == "0.99"
    assert margin(0.70, 0.75) == "0.05 under the threshold" and margin(0.8, 0.75) == "0.05 over the threshold"


def test_claim_verdict_says_not_name_and_who_is_nearer():
    assert claim_verdict("Ada", "Ada", "Ada") == "Ada"
    assert claim_verdict("Ada", None, "Ada") == "not Ada"
    assert claim_verdict("Ada", None, "Grace") == "not Ada (looks more like Grace)"


def test_identify_claim_answers_not_name(shared_data, tmp_path, capsys):
    faces = shared_data / "faces"
    gallery = str(tmp_path / "g.db")
    for person in ("Colin_Powell", "Donald_Rumsfeld"):
        photo = faces / f"lfw__{person}" / f"{person}_0001.jpg"
        assert main(["enroll", person.replace("_", " "), str(photo), "--gallery", gallery,
                     "--encoder", "dlib-torch"]) == 0
    capsys.readouterr()
    probe = faces / "lfw__Colin_Powell" / "Colin_Powell_0002.jpg"
    assert main(["identify", str(probe), "--claim", "Donald Rumsfeld", "--gallery", gallery]) == 1
    assert "claim: not Donald Rumsfeld (looks more like Colin Powell)" in capsys.readouterr().out
    assert main(["identify", str(probe), "--claim", "Colin Powell", "--gallery", gallery]) == 0
    assert "claim: Colin Powell" in capsys.readouterr().out


def test_models_prints_a_header_and_exits_0_when_present(capsys):
    from visage import models

    present = all(models.status(name)["checksum_ok"] for name in models.MODELS)
    assert main(["models"]) == (0 if present else 1)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["model", "state", "size"]
    assert len(lines) == len(models.MODELS) + 1


@pytest.mark.slow
def test_train_says_when_it_did_not_beat_its_start(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for person in range(8):
        (tmp_path / f"p{person}").mkdir()
        for k in range(4):
            np.save(tmp_path / f"p{person}" / f"{k}.npy", rng.standard_normal((1, 32)).astype(np.float32))
    # No epoch to train: the best held-out score is the starting one.
    assert main(["train", str(tmp_path), "--epochs", "0", "--holdout", "4", "-o", str(tmp_path / "m.pt")]) == 0
    assert "training did not beat its starting point (epoch 0)" in capsys.readouterr().out
    assert main(["train", str(tmp_path), "--epochs", "0", "--holdout", "4", "-o", str(tmp_path / "m.pt"),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["improved"] is False


@pytest.mark.slow
def test_mmod_warns_once_that_it_is_slow_on_a_cpu(astronaut_png, capsys):
    import dlib

    if dlib.DLIB_USE_CUDA:
        pytest.skip("dlib runs MMOD on CUDA here")
    assert main(["detect", str(astronaut_png), "--detector", "mmod", "--json"]) == 0
    assert capsys.readouterr().err.count(MMOD_ON_CPU) == 1


# --- 6. introspection that can be read ------------------------------------------------------------

def test_dlib_torch_default_layers_fit_its_chips():
    from visage.introspect import resolve_model

    target = resolve_model("dlib-torch")
    layers = target.layers()
    for name in target.default_layers():
        assert layers[name].field.fits(target.input_size), (name, layers[name].field.describe())


def test_inspect_crops_fields_to_the_chip_and_warns_with_few_images(astronaut_png, tmp_path, capsys,
                                                                   one_torch_thread):
    out = tmp_path / "report"
    assert main(["inspect", "--model", "dlib-torch", "--images", str(astronaut_png), "--layers",
                 "stages.1.2.conv2,stages.4.0.conv2", "--top", "2", "--per-unit", "3", "-o", str(out),
                 "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "only 1 image(s) seen" in err
    assert "stages.4.0.conv2: the receptive field covers the whole 150 px input" in err
    assert "stages.1.2.conv2:" not in err
    report = json.loads((out / "report.json").read_text())
    assert len(report["warnings"]) == 2
    for layer in report["layers"]:
        for unit in layer["units"]:
            for patch in unit["patches"]:
                top, left, bottom, right = patch["visible"]
                assert 0 <= top < bottom <= 150 and 0 <= left < right <= 150
