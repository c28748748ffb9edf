"""A trained model (``--encoder model.pt``) and a fitted calibration (``--calibration FILE``) in every
command that encodes or decides, galleries that remember their encoder, and the refusals.

Real models and dev-set photos: a tiny head is trained on four LFW people by ``visage train`` (one
short epoch) and calibrated on their photos, once per module.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

import visage
from visage.cli import main as cli
from visage.config import DEFAULT_ENCODER
from visage.encoders import get_encoder
from visage.errors import GalleryError, InvalidArgument
from visage.evaluation.calibration import PairCalibration, fit_pair_calibration, load_calibration
from visage.evaluation.verification import Calibration, default_calibration
from visage.gallery import Gallery

PEOPLE = ["Colin_Powell", "Ariel_Sharon", "Donald_Rumsfeld", "Arnold_Schwarzenegger"]

# Each command is run with a trained model and its calibration (module fixtures train and fit
# them first): a whole-pipeline check, so it runs in the full suite, not the fast lane.
pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]


def lfw(shared_data: Path, person: str, number: int) -> Path:
    return shared_data / "faces" / f"lfw__{person}" / f"{person}_{number:04d}.jpg"


def run(capsys, *argv) -> tuple[int, str, str]:
    """Run ``visage ARGV...`` in this process: (exit status, stdout, stderr)."""
    code = cli([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def refused(capsys, *argv) -> str:
    """Run a command that must be refused: exit 2 with a one-line reason, never a traceback. Returns stderr."""
    code, _, err = run(capsys, *argv)
    assert code == 2, err
    assert err.startswith("visage: error: ") and "Traceback" not in err
    return err


@pytest.fixture(scope="module")
def people_dir(shared_data, tmp_path_factory) -> Path:
    """DIR/<person>/ with three LFW photos each (links into the dev set)."""
    root = tmp_path_factory.mktemp("people")
    for person in PEOPLE:
        (root / person).mkdir()
        for n in (1, 2, 3):
            (root / person / f"{person}_{n}.jpg").symlink_to(lfw(shared_data, person, n))
    return root


@pytest.fixture(scope="module")
def model(people_dir, tmp_path_factory) -> Path:
    """A projection head on frozen dlib-torch encodings, written by ``visage train`` (one short epoch)."""
    out = tmp_path_factory.mktemp("model") / "model.pt"
    assert cli(["train", str(people_dir), "--mode", "head", "--encoder", "dlib-torch", "--epochs", "1",
                "--batches", "1", "--people", "2", "--per-person", "2", "--holdout", "2", "-o", str(out),
                "--json"]) == 0
    return out


@pytest.fixture(scope="module")
def model_calibration(model, shared_data, tmp_path_factory) -> tuple[Path, PairCalibration]:
    """A calibration of the model in the format ``visage calibrate`` writes, fitted on every pair of
    five photos of each person (the CLI itself is exercised by a slow test)."""
    photos = [lfw(shared_data, person, n) for person in PEOPLE for n in range(4, 9)]
    labels = np.repeat(np.arange(len(PEOPLE)), 5)
    vectors = np.stack([found[0].encoding for found in visage.encode_batch(photos, which="largest",
                                                                            encoder=str(model))])
    i, j = np.triu_indices(len(photos), 1)
    encoder = get_encoder(model)
    cal = fit_pair_calibration(vectors[i], vectors[j], labels[i] == labels[j], encoder.name, target_far=0.02,
                               encoder_key=str(model))
    return cal.save(tmp_path_factory.mktemp("calibration") / "calibration.json"), cal


@pytest.fixture(scope="module")
def dlib_calibration(tmp_path_factory) -> tuple[Path, Calibration]:
    """A plain calibration of dlib's space with thresholds no shipped calibration has."""
    cal = Calibration(encoder="dlib-resnet-v1", threshold=0.5123, slope=-30.0, intercept=15.0, source="by hand",
                      identify_threshold=0.4321, encoder_key="dlib-torch")
    path = tmp_path_factory.mktemp("dlib-calibration") / "distance_calibration.json"
    cal.save(path)
    return path, cal


@pytest.fixture(scope="module")
def model_gallery(model, people_dir, tmp_path_factory) -> Path:
    """A gallery of the four people enrolled by the model, named by a relative path from its folder."""
    gallery = tmp_path_factory.mktemp("model-gallery") / "people.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(model.parent)
        assert cli(["enroll", "--folder", str(people_dir), "--gallery", str(gallery), "--encoder", "model.pt",
                    "--json"]) == 0
    return gallery


# -- encode and verify --------------------------------------------------------------------------------

def test_encode_with_a_trained_model(model, shared_data, capsys):
    photo = lfw(shared_data, "Colin_Powell", 6)
    code, out, _ = run(capsys, "encode", photo, "--encoder", model, "--json")
    face = json.loads(out)["faces"][0]
    assert code == 0 and face["encoder"] == str(model)
    assert face["embedding"] == get_encoder(model).name and face["embedding"].startswith("dlib-resnet-v1+head-")
    library = visage.encode(photo, encoder=str(model), which="largest")[0].encoding
    np.testing.assert_allclose(face["encoding"], library, atol=1e-5)
    assert np.linalg.norm(library) == pytest.approx(1.0, abs=1e-5)  # the head's output, not dlib's


def test_verify_decides_with_the_models_calibration(model, model_calibration, shared_data, capsys):
    path, cal = model_calibration
    a, b, other = (lfw(shared_data, "Colin_Powell", 9), lfw(shared_data, "Colin_Powell", 10),
                   lfw(shared_data, "Donald_Rumsfeld", 10))
    for first, second in ((a, b), (a, other)):
        code, out, _ = run(capsys, "verify", first, second, "--encoder", model, "--calibration", path, "--json")
        result = json.loads(out)
        assert result["threshold"] == cal.distance.threshold
        assert result["probability"] == pytest.approx(cal.distance.probability(result["distance"]), abs=1e-6)
        assert result["same"] == (result["distance"] <= result["threshold"]) and code == (0 if result["same"] else 1)
        assert result["encoder"] == str(model) and result["embedding"] == cal.encoder
    # The same pair through the library, given the file or the fitted object.
    for calibration in (path, cal):
        again = visage.verify(a, b, encoder=str(model), calibration=calibration)
        assert again.threshold == cal.distance.threshold and again.encoder == str(model)
    # The folder `visage calibrate -o DIR` wrote is accepted too.
    assert load_calibration(path.parent) == cal.distance


def test_verify_with_a_calibration_of_dlibs_space(dlib_calibration, shared_data, capsys):
    path, cal = dlib_calibration
    a, b = lfw(shared_data, "Colin_Powell", 9), lfw(shared_data, "Colin_Powell", 10)
    for encoder in ("dlib-torch", "dlib"):  # one embedding space: one calibration fits both
        code, out, _ = run(capsys, "verify", a, b, "--encoder", encoder, "--calibration", path, "--json")
        result = json.loads(out)
        assert code in (0, 1) and result["threshold"] == cal.threshold == 0.5123
        assert result["encoder"] == encoder and result["embedding"] == "dlib-resnet-v1"


def test_a_model_without_a_calibration_says_how_to_fit_one(model, shared_data, capsys):
    a, b = lfw(shared_data, "Colin_Powell", 9), lfw(shared_data, "Colin_Powell", 10)
    err = refused(capsys, "verify", a, b, "--encoder", model)
    assert f"visage calibrate PAIRS.tsv --encoder {model}" in err and "--calibration" in err


def test_a_calibration_of_another_encoder_is_refused(model, model_calibration, dlib_calibration, shared_data,
                                                     tmp_path, capsys):
    a, b = lfw(shared_data, "Colin_Powell", 9), lfw(shared_data, "Colin_Powell", 10)
    err = refused(capsys, "verify", a, b, "--encoder", "dlib-torch", "--calibration", model_calibration[0])
    assert f"{model_calibration[0]} was fitted for encoder {model}" in err
    assert "not for dlib-torch (dlib-resnet-v1)" in err and f"use it with --encoder {model}" in err
    err = refused(capsys, "verify", a, b, "--encoder", model, "--calibration", dlib_calibration[0])
    assert "was fitted for encoder dlib-torch (dlib-resnet-v1)" in err and "visage calibrate" in err
    with pytest.raises(InvalidArgument, match="was fitted for encoder"):
        visage.verify(a, b, encoder="dlib-torch", calibration=model_calibration[1])
    # Files that are no calibration at all.
    (tmp_path / "notes.json").write_text('{"hello": 1}')
    assert "not a visage calibration file" in refused(capsys, "verify", a, b, "--calibration", tmp_path / "notes.json")
    assert "no such calibration file" in refused(capsys, "verify", a, b, "--calibration", tmp_path / "none.json")


def test_a_file_that_is_not_a_visage_encoder_is_refused(shared_data, tmp_path, capsys):
    import torch

    photo = lfw(shared_data, "Colin_Powell", 6)
    (tmp_path / "junk.pt").write_bytes(b"not a model at all")
    assert "junk.pt: not a readable model file" in refused(capsys, "encode", photo, "--encoder", tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    assert "other.pt: not a model trained by visage" in refused(capsys, "verify", photo, photo, "--encoder",
                                                                tmp_path / "other.pt")
    assert "missing.pt: no such model file" in refused(capsys, "encode", photo, "--encoder", tmp_path / "missing.pt")
    assert "unknown encoder 'dlib-nope'" in refused(capsys, "encode", photo, "--encoder", "dlib-nope")
    # A model trained by visage on arrays, not faces, cannot encode a photo.
    for person in ("a", "b", "c", "d"):
        (tmp_path / "signals" / person).mkdir(parents=True)
        for k in range(3):
            np.save(tmp_path / "signals" / person / f"{k}.npy", np.random.default_rng(k).normal(size=(1, 32)))
    assert cli(["train", str(tmp_path / "signals"), "--epochs", "1", "--batches", "1", "--people", "2",
                "--per-person", "2", "--holdout", "2", "--dim", "8", "-o", str(tmp_path / "signals.pt"), "--json"]) == 0
    capsys.readouterr()
    err = refused(capsys, "enroll", "Someone", photo, "--gallery", tmp_path / "g.db", "--encoder",
                  tmp_path / "signals.pt")
    assert "trained on arrays, not faces" in err


# -- galleries remember their encoder --------------------------------------------------------------------

def test_a_gallery_remembers_its_trained_model(model, model_gallery, model_calibration, shared_data, tmp_path,
                                               monkeypatch, capsys):
    path, cal = model_calibration
    monkeypatch.chdir(tmp_path)  # elsewhere: the relative model.pt it was enrolled with is not here
    code, out, _ = run(capsys, "gallery", "info", "--gallery", model_gallery, "--json")
    info = json.loads(out)
    assert code == 0 and info["encoder"] == str(model) and info["embedding"] == cal.encoder and info["faces"] == 12
    code, out, _ = run(capsys, "identify", lfw(shared_data, "Colin_Powell", 7), "--gallery", model_gallery,
                       "--calibration", path, "--json")
    result = json.loads(out)
    face = result["faces"][0]
    assert code == (0 if face["name"] else 1) and result["encoder"] == str(model)
    assert face["threshold"] == cal.distance.open_set_threshold == cal.distance.threshold  # it has no open-set one
    assert face["candidates"][0]["name"] == "Colin_Powell"
    assert face["name"] == ("Colin_Powell" if face["distance"] <= face["threshold"] else None)
    # The library: the gallery's own encoder, the given calibration.
    with Gallery(model_gallery, calibration=path) as gallery:
        assert gallery.encoder_key == str(model) and gallery.threshold() == cal.distance.threshold
        found = gallery.identify(lfw(shared_data, "Colin_Powell", 7), audit=False)
        assert found[0].distance == pytest.approx(face["distance"], abs=1e-6)
    # Without a calibration the model has none to decide with, and the message says how to get one.
    err = refused(capsys, "identify", lfw(shared_data, "Colin_Powell", 7), "--gallery", model_gallery)
    assert f"--encoder {model}" in err and "visage calibrate" in err


def test_enrolling_more_uses_the_gallerys_model(model, model_gallery, shared_data, tmp_path, capsys):
    copy = tmp_path / "copy.db"
    copy.write_bytes(model_gallery.read_bytes())
    code, out, _ = run(capsys, "enroll", "Powell again", lfw(shared_data, "Colin_Powell", 8), "--gallery", copy,
                       "--json")
    report = json.loads(out)
    assert code == 0 and report["faces_added"] == 1 and report["encoder"] == str(model)
    with Gallery(copy) as gallery:
        stored = gallery.faces("Powell again")[0].record.encoding
    direct = visage.encode(lfw(shared_data, "Colin_Powell", 8), encoder=str(model), which="largest")[0].encoding
    np.testing.assert_allclose(stored, direct, atol=1e-6)


def test_a_gallery_refuses_another_encoder(model, model_gallery, shared_data, capsys):
    photo = lfw(shared_data, "Colin_Powell", 7)
    for argv in (["identify", photo], ["enroll", "Someone", photo]):
        err = refused(capsys, *argv, "--gallery", model_gallery, "--encoder", "dlib-torch")
        assert f"holds the encodings of {model} (" in err and "not of dlib-torch (dlib-resnet-v1, 128-d)" in err
        assert "leave out --encoder" in err
    with Gallery(model_gallery) as gallery:
        assert "Someone" not in {p.name for p in gallery.people()}
    with Gallery(model_gallery, encoder="dlib-torch") as gallery, pytest.raises(GalleryError, match="not of dlib-torch"):
        gallery.identify(photo)


def test_a_model_file_changed_since_it_filled_the_gallery_is_refused(model_gallery, shared_data, tmp_path, capsys):
    changed = tmp_path / "changed.db"
    changed.write_bytes(model_gallery.read_bytes())
    with sqlite3.connect(changed) as db:  # as if model.pt had been retrained in place after the enrolment
        db.execute("UPDATE meta SET value = 'dlib-resnet-v1+head-0123456789' WHERE key = 'encoder'")
    err = refused(capsys, "identify", lfw(shared_data, "Colin_Powell", 7), "--gallery", changed)
    assert "has changed since it filled the gallery" in err and "enrol everyone again" in err


@pytest.fixture(scope="module")
def dlib_gallery(shared_data, tmp_path_factory) -> Path:
    """Two people enrolled with dlib-torch."""
    gallery = tmp_path_factory.mktemp("dlib-gallery") / "people.db"
    for person in PEOPLE[:2]:
        assert cli(["enroll", person, str(lfw(shared_data, person, 1)), str(lfw(shared_data, person, 2)),
                    "--gallery", str(gallery), "--encoder", "dlib-torch", "--json"]) == 0
    return gallery


def test_dlib_and_dlib_torch_share_a_gallery(dlib_gallery, shared_data, capsys):
    code, out, _ = run(capsys, "identify", lfw(shared_data, "Ariel_Sharon", 5), "--gallery", dlib_gallery,
                       "--encoder", "dlib", "--json")
    result = json.loads(out)
    face = result["faces"][0]
    assert code == (0 if face["name"] else 1) and face["candidates"][0]["name"] == "Ariel_Sharon"
    assert result["encoder"] == "dlib" and result["embedding"] == "dlib-resnet-v1"
    with Gallery(dlib_gallery, encoder="dlib") as gallery:  # the shipped calibration of dlib's space
        assert gallery.calibration() == default_calibration("dlib-resnet-v1")
        assert face["threshold"] == gallery.threshold()


def test_identify_takes_the_open_set_threshold_of_a_calibration(dlib_gallery, dlib_calibration, shared_data,
                                                                capsys):
    path, cal = dlib_calibration
    probe = lfw(shared_data, "Ariel_Sharon", 5)
    code, out, _ = run(capsys, "identify", probe, "--gallery", dlib_gallery, "--calibration", path, "--json")
    face = json.loads(out)["faces"][0]
    assert face["threshold"] == cal.identify_threshold == 0.4321 and code == (0 if face["name"] else 1)
    code, out, _ = run(capsys, "identify", probe, "--gallery", dlib_gallery, "--calibration", path,
                       "--claim", "Ariel_Sharon", "--json")
    claimed = json.loads(out)["faces"][0]
    # A claim gets the search's answer: the same open-set threshold, the same name.
    assert claimed["threshold"] == cal.identify_threshold and claimed["name"] == face["name"]
    assert code == (0 if claimed["name"] else 1)


def test_old_galleries_without_a_recorded_encoder_still_work(dlib_gallery, shared_data, tmp_path, capsys):
    old = tmp_path / "old.db"
    old.write_bytes(dlib_gallery.read_bytes())
    with sqlite3.connect(old) as db:  # as visage wrote galleries before they recorded their encoder
        db.execute("DELETE FROM meta WHERE key = 'encoder_key'")
    with Gallery(old) as gallery:
        assert gallery.store.encoder_key() is None and gallery.encoder_key == "dlib-torch"
    code, out, _ = run(capsys, "identify", lfw(shared_data, "Ariel_Sharon", 5), "--gallery", old, "--json")
    assert code == 0 and json.loads(out)["encoder"] == "dlib-torch"
    assert run(capsys, "enroll", "Rumsfeld", lfw(shared_data, "Donald_Rumsfeld", 1), "--gallery", old,
               "--encoder", "dlib")[0] == 0
    with Gallery(old) as gallery:
        assert gallery.store.encoder_key() == "dlib"  # learnt from the first enrolment that named one
    # An old gallery of a trained model cannot tell which file made it: it asks for the file.
    with sqlite3.connect(old) as db:
        db.execute("DELETE FROM meta WHERE key = 'encoder_key'")
        db.execute("UPDATE meta SET value = 'dlib-resnet-v1+head-0123456789' WHERE key = 'encoder'")
    err = refused(capsys, "identify", lfw(shared_data, "Ariel_Sharon", 5), "--gallery", old)
    assert "does not record the model file" in err and "pass --encoder with that model's .pt file" in err


def test_a_new_gallery_uses_the_default_encoder(tmp_path):
    with Gallery(tmp_path / "new.db") as gallery:
        assert gallery.encoder_key == DEFAULT_ENCODER and gallery.stored_encoder_key is None


# -- cluster ------------------------------------------------------------------------------------------

def test_cluster_with_a_model_and_its_calibration(model, model_calibration, dlib_calibration, people_dir,
                                                  tmp_path, capsys):
    path, cal = model_calibration
    code, out, _ = run(capsys, "cluster", people_dir, "--out", tmp_path / "report", "--encoder", model,
                       "--calibration", path, "--json")
    result = json.loads(out)
    assert code == 0 and result["faces"] == 12 and result["threshold"] == cal.distance.threshold
    assert result["encoder"] == str(model) and result["embedding"] == cal.encoder
    clusters = json.loads((tmp_path / "report" / "clusters.json").read_text())
    assert clusters["encoder_key"] == str(model) and clusters["threshold"] == cal.distance.threshold
    # Named clusters enrolled into a new gallery make it a gallery of the model.
    code, _, _ = run(capsys, "enroll", "--clusters", tmp_path / "report" / "clusters.json", "--name", "1=First",
                     "--gallery", tmp_path / "g.db")
    with Gallery(tmp_path / "g.db") as gallery:
        assert code == 0 and gallery.encoder_key == str(model)
    err = refused(capsys, "cluster", people_dir, "--out", tmp_path / "other", "--encoder", "dlib-torch",
                  "--calibration", path)
    assert f"fitted for encoder {model}" in err


# -- serve --------------------------------------------------------------------------------------------

def _client(settings):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from visage.server import create_app
    from visage.server.auth import KeyStore

    keys = KeyStore(settings.state_path())
    key = keys.create("tests", admin=True)
    keys.close()
    return TestClient(create_app(settings)), {"X-API-Key": key}


def _serve_settings(*argv):
    from visage.cli import build_parser
    from visage.cli.serve import settings_from

    return settings_from(build_parser().parse_args(["serve", *[str(a) for a in argv]]))


def test_serve_with_a_model_and_its_calibration(model, model_gallery, model_calibration, shared_data, tmp_path):
    path, cal = model_calibration
    settings = _serve_settings("--gallery", model_gallery, "--encoder", model, "--calibration", path,
                               "--state", tmp_path / "state.db")
    assert settings.encoder == str(model) and settings.calibration == str(path)
    a, b = lfw(shared_data, "Colin_Powell", 9), lfw(shared_data, "Colin_Powell", 7)
    client, key = _client(settings)
    with client:
        answer = client.post("/v1/verify", headers=key, files={"a": ("a.jpg", a.read_bytes(), "image/jpeg"),
                                                               "b": ("b.jpg", b.read_bytes(), "image/jpeg")})
        assert answer.status_code == 200, answer.text
        assert answer.json()["threshold"] == cal.distance.threshold and answer.json()["encoder"] == str(model)
        answer = client.post("/v1/encode", headers=key, files={"image": ("a.jpg", a.read_bytes(), "image/jpeg")})
        assert answer.json()["faces"][0]["embedding"] == cal.encoder
    # No encoder named: the gallery's own, here with the calibration from the environment.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISAGE_SERVER_CALIBRATION", str(path))
        settings = _serve_settings("--gallery", model_gallery, "--state", tmp_path / "state.db")
    assert settings.encoder is None
    client, key = _client(settings)
    with client:
        answer = client.post("/v1/identify", headers=key, files={"image": ("b.jpg", b.read_bytes(), "image/jpeg")})
        assert answer.status_code == 200, answer.text
        assert answer.json()["encoder"] == str(model)
        assert answer.json()["faces"][0]["threshold"] == cal.distance.threshold


def test_serve_refuses_a_wrong_encoder_or_calibration_at_start(model_gallery, dlib_calibration, tmp_path, capsys,
                                                               monkeypatch):
    import uvicorn

    from visage.server import create_app

    def must_not_serve(*args, **kwargs):
        raise AssertionError("the server started despite a wrong encoder or calibration")

    monkeypatch.setattr(uvicorn, "run", must_not_serve)
    state = ["--state", tmp_path / "state.db"]
    err = refused(capsys, "serve", "--gallery", model_gallery, "--encoder", "dlib-torch", *state)
    assert "not of dlib-torch" in err and "leave out --encoder" in err
    err = refused(capsys, "serve", "--gallery", model_gallery, "--calibration", dlib_calibration[0], *state)
    assert "was fitted for encoder dlib-torch (dlib-resnet-v1)" in err
    with pytest.raises(InvalidArgument, match="was fitted for encoder"):
        create_app(_serve_settings("--gallery", model_gallery, "--calibration", dlib_calibration[0], *state))


# -- the calibrate command itself ---------------------------------------------------------------------

def test_visage_calibrate_output_drives_verify(model, shared_data, tmp_path, capsys):
    """The real ``visage calibrate`` on the model, its file then given to ``verify``."""
    pairs = [(lfw(shared_data, p, n), lfw(shared_data, q, m), int(p == q))
             for p, q, n, m in [(p, p, n, n + 1) for p in PEOPLE for n in (4, 6, 8)]
             + [(p, q, 5, 5) for p in PEOPLE for q in PEOPLE if p < q]
             + [(p, q, 7, 9) for p in PEOPLE for q in PEOPLE if p < q]]
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("img_a\timg_b\tsame\n" + "".join(f"{a}\t{b}\t{s}\n" for a, b, s in pairs))
    assert run(capsys, "calibrate", tsv, "--encoder", model, "--folds", "3", "-o", tmp_path / "cal", "--json")[0] == 0
    cal = PairCalibration.load(tmp_path / "cal" / "calibration.json")
    assert cal.encoder == get_encoder(model).name and cal.distance.encoder_key == str(model)
    for given in (tmp_path / "cal", tmp_path / "cal" / "calibration.json", tmp_path / "cal" / "distance_calibration.json"):
        code, out, _ = run(capsys, "verify", lfw(shared_data, "Colin_Powell", 9), lfw(shared_data, "Colin_Powell", 10),
                           "--encoder", model, "--calibration", given, "--json")
        assert code in (0, 1) and json.loads(out)["threshold"] == cal.distance.threshold
