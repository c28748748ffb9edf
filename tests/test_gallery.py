"""Gallery: enrolment, identification, people management, export/import, on every backend.

Tests about storage use encodings computed once per module from real dev-set photos; tests about
the pipeline run real photos through detection and encoding.
"""

from __future__ import annotations

import json
import re
import sqlite3
import zipfile
from pathlib import Path

import numpy as np
import pytest

import visage
from visage.cli import main as cli
from visage.config import DEFAULT_ENCODER
from visage.errors import GalleryError
from visage.evaluation.verification import default_calibration
from visage.gallery import ExactIndex, FaceRecord, Gallery, IvfIndex

PEOPLE = ["Ariel_Sharon", "Arnold_Schwarzenegger", "Colin_Powell", "Donald_Rumsfeld"]
BACKENDS = ["sqlite", pytest.param("milvus-lite", marks=pytest.mark.slow)]  # Milvus Lite starts a server: slow lane


def lfw(shared_data: Path, person: str, number: int) -> Path:
    return shared_data / "faces" / f"lfw__{person}" / f"{person}_{number:04d}.jpg"


@pytest.fixture(scope="module")
def encoded(shared_data) -> dict[str, list[FaceRecord]]:
    """Three single-face photos of each of four LFW people, encoded once: person → records."""
    out = {}
    for person in PEOPLE:
        paths = [lfw(shared_data, person, n) for n in (1, 2, 3)]
        images = [visage.load_image(p) for p in paths]
        found = visage.encode_batch(images, which="largest")
        out[person] = [FaceRecord(f[0].encoding, img.sha256, img.name, f[0].face.box, f[0].face.landmarks5,
                                  f[0].face.score) for img, f in zip(images, found)]
    return out


@pytest.fixture(params=BACKENDS)
def location(request, tmp_path) -> str:
    """A fresh gallery location on each backend."""
    if request.param == "sqlite":
        return str(tmp_path / "gallery.db")
    pytest.importorskip("pymilvus")
    pytest.importorskip("milvus_lite")
    return f"milvus-lite:{tmp_path / 'milvus.db'}"


def fill(gallery: Gallery, encoded, photos: int = 2) -> None:
    for person, records in encoded.items():
        gallery.add(person, records[:photos])


# -- storage and search, on every backend ---------------------------------------------------------

@pytest.mark.slow
def test_search_ranks_the_right_person_first_and_unknowns_stay_unknown(location, encoded):
    with Gallery(location) as g:
        fill(g, {p: r for p, r in encoded.items() if p != "Donald_Rumsfeld"})
        assert [p.name for p in g.people()] == sorted(set(PEOPLE) - {"Donald_Rumsfeld"})
        assert all(p.faces == 2 for p in g.people())
        probes = np.stack([encoded[p][2].encoding for p in PEOPLE])
        results = g.search(probes, top=3)
    threshold = default_calibration("dlib-resnet-v1").threshold
    for person, r in zip(PEOPLE[:3], results[:3]):
        assert r.name == person and r.distance < threshold
        assert r.candidates[0].name == person and len(r.candidates) == 3
        assert [c.distance for c in r.candidates] == sorted(c.distance for c in r.candidates)
    # The un-enrolled person is rejected: their nearest enrolled face is beyond the threshold.
    assert results[3].name is None and results[3].distance > threshold
    # Distances are the Euclidean distances to each person's nearest face.
    gallery = np.stack([r.encoding for r in encoded["Colin_Powell"][:2]])
    expected = np.linalg.norm(gallery - encoded["Colin_Powell"][2].encoding, axis=1).min()
    assert results[2].distance == pytest.approx(expected, abs=1e-4)


def test_rename_and_remove_change_search_without_reopening(location, encoded):
    with Gallery(location) as g:
        fill(g, encoded)
        probe = encoded["Colin_Powell"][2].encoding
        assert g.search(probe)[0].name == "Colin_Powell"
        g.rename("Colin_Powell", "General Powell")
        assert g.search(probe)[0].name == "General Powell"
        assert g.remove("General Powell") == 2
        assert "General Powell" not in {p.name for p in g.people()}
        after = g.search(probe)[0]
        assert after.name is None and all(c.name != "General Powell" for c in after.candidates)
        # Enrolling again after a removal is found at once.
        g.add("Powell again", encoded["Colin_Powell"][:1])
        assert g.search(probe)[0].name == "Powell again"
        with pytest.raises(GalleryError, match="no person called"):
            g.rename("nobody", "x")
        with pytest.raises(GalleryError, match="already a person"):
            g.rename("Powell again", "Ariel_Sharon")


def test_duplicate_photo_is_detected_by_hash(location, encoded):
    with Gallery(location) as g:
        first = g.add("Ariel", encoded["Ariel_Sharon"][:2])
        again = g.add("Someone else", encoded["Ariel_Sharon"][1:3])
        assert first.added == {"Ariel": 2}
        assert again.added == {"Someone else": 1}
        # The same photo is the same face: caught before the store's byte check.
        assert len(again.skipped) == 1 and "already enrolled as Ariel" in again.skipped[0][1]
        assert sum(p.faces for p in g.people()) == 3


def test_refuses_to_mix_encoders(location, encoded):
    with Gallery(location) as g:
        fill(g, encoded, photos=1)
        foreign = FaceRecord(np.ones(512, np.float32) / 512 ** 0.5, "f" * 64, "facenet.jpg")
        with pytest.raises(GalleryError, match="refusing to mix"):
            g.add("Someone", [foreign], encoder_name="facenet-vggface2", dim=512)
        assert "Someone" not in {p.name for p in g.people()}
        with pytest.raises(GalleryError, match="values"):
            g.search(np.zeros(512, np.float32))


def test_export_import_round_trip_keeps_every_encoding(location, encoded, tmp_path):
    with Gallery(location) as g:
        fill(g, encoded, photos=3)
        assert g.export(tmp_path / "people.visage") == 12
    with Gallery(tmp_path / "copy.db") as copy:
        report = copy.import_file(tmp_path / "people.visage")
        assert report.faces_added == 12 and not report.skipped
        for person, records in encoded.items():
            stored = copy.faces(person)
            assert [f.record.sha256 for f in stored] == [r.sha256 for r in records]
            np.testing.assert_array_equal(np.stack([f.record.encoding for f in stored]),
                                          np.stack([r.encoding for r in records]))
            assert stored[0].record.box == records[0].box
        # Importing twice adds nothing: every face is already there.
        again = copy.import_file(tmp_path / "people.visage")
        assert again.faces_added == 0 and len(again.skipped) == 12


@pytest.mark.slow
def test_ivf_index_agrees_with_exact_search_and_follows_changes(encoded):
    rng = np.random.default_rng(0)
    dim = len(encoded[PEOPLE[0]][0].encoding)  # the default encoder's
    noise = rng.standard_normal((3000, dim)).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    real = [(i, r.encoding) for i, p in enumerate(PEOPLE) for r in encoded[p][:2]]
    vectors = np.concatenate([noise, np.stack([v for _, v in real])])
    persons = np.concatenate([np.arange(1000, 4000), [i for i, _ in real]])
    exact, approx = ExactIndex(dim), IvfIndex(dim, nprobe=4, train_size=2000, regrow=2.0)
    for index in (exact, approx):
        index.add(np.arange(len(vectors)), persons, vectors)
    assert approx.trained and len(approx) == len(exact) == len(vectors)
    probes = np.stack([encoded[p][2].encoding for p in PEOPLE])
    for want, got in zip(exact.search(probes, 3), approx.search(probes, 3)):
        assert [pid for pid, _ in got] == [pid for pid, _ in want]
        assert [d for _, d in got] == pytest.approx([d for _, d in want], abs=1e-4)
    # Removing a person hides them from both indexes without a rebuild.
    gone = np.flatnonzero(persons == 2)
    for index in (exact, approx):
        index.remove(gone)
        assert all(pid != 2 for pid, _ in index.search(probes[2:3], 5)[0])
    # Faces added after training are filed into the existing cells and found.
    approx.add([50_000], [77], probes[2:3])
    assert approx.search(probes[2:3], 1)[0][0] == (77, pytest.approx(0.0, abs=1e-3))
    # Growing 2-fold (regrow) retrains on everything held, the removals and late additions included.
    more = rng.standard_normal((4_000, dim)).astype(np.float32)
    more /= np.linalg.norm(more, axis=1, keepdims=True)  # encodings of one encoder share one scale
    approx.add(np.arange(60_000, 64_000), np.full(4_000, 5000), more)
    assert approx._trained_on == len(approx)
    assert len(approx) == len(vectors) - len(gone) + 1 + 4_000
    assert approx.search(probes, 1)[2][0][0] == 77 and approx.search(probes, 1)[0][0][0] == 0


def test_mean_matching_ranks_by_distance_to_the_mean(encoded, tmp_path):
    with Gallery(tmp_path / "g.db", index="exact") as g:
        fill(g, encoded, photos=2)
        probe = encoded["Arnold_Schwarzenegger"][2].encoding
        result = g.search(probe, match="mean")[0]
    mean = np.mean([r.encoding for r in encoded["Arnold_Schwarzenegger"][:2]], axis=0)
    assert result.name == "Arnold_Schwarzenegger"
    assert result.distance == pytest.approx(float(np.linalg.norm(mean - probe)), abs=1e-4)


# -- files that are not galleries ------------------------------------------------------------------

def test_corrupt_or_foreign_files_give_a_clear_error(tmp_path):
    text = tmp_path / "notes.db"
    text.write_text("this is not a database, just some notes\n" * 200)
    with pytest.raises(GalleryError, match=re.escape("notes.db: not a visage gallery")):
        Gallery(text)
    foreign = tmp_path / "other.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE t (x)")
    with pytest.raises(GalleryError, match=re.escape("other.db: an SQLite database, but not a visage gallery")):
        Gallery(foreign)
    with pytest.raises(GalleryError, match="is a directory"):
        Gallery(tmp_path)
    bad_export = tmp_path / "bad.visage"
    with zipfile.ZipFile(bad_export, "w") as z:
        z.writestr("gallery.json", json.dumps({"format": "something else"}))
    with Gallery(tmp_path / "g.db") as g, pytest.raises(GalleryError, match=re.escape("bad.visage: not a visage gallery")):
        g.import_file(bad_export)


def test_truncated_gallery_file_gives_a_clear_error(tmp_path, encoded):
    path = tmp_path / "g.db"
    with Gallery(path) as g:
        fill(g, encoded)
    data = path.read_bytes()
    # Wreck every page after the first: their b-tree headers no longer make sense.
    path.write_bytes(data[:4096] + bytes(b ^ 0x5A for b in data[4096:]))
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    with pytest.raises(GalleryError, match=re.escape("g.db")):
        Gallery(path).people()


# -- the pipeline on real photos -------------------------------------------------------------------

@pytest.mark.slow
def test_enroll_and_identify_real_photos(shared_data, tmp_path):
    faces = shared_data / "faces"
    with Gallery(tmp_path / "g.db") as g:
        report = g.enroll("Obama", [faces / "facerec__obama/obama.jpg", faces / "facerec__obama/obama2.jpg"])
        assert report.added == {"Obama": 2} and not report.skipped
        g.enroll("Biden", [faces / "facerec__biden/biden.jpg"])
        found = g.identify(shared_data / "detection/facerec_obama_and_biden.jpg", top=2)
        names = [r.name for r in found]
        assert "Obama" in names and "Biden" in names
        assert names.count(None) == len(found) - 2  # anyone else in the photo is unknown
        for r in found:
            assert r.box is not None and len(r.candidates) == 2
        # A verify call for a claimed identity: right claim accepted, wrong claim refused.
        assert g.verify("Obama", faces / "facerec__obama/obama3.jpg").known
        assert not g.verify("Biden", faces / "facerec__obama/obama3.jpg").known
        log = g.audit()
        assert [e["operation"] for e in log] == ["verify", "verify", "identify"]
        assert log[0]["result"]["claim"] == "Biden" and log[0]["result"]["accepted"] is False
        assert sorted(f["name"] for f in log[2]["result"]["faces"] if f["name"]) == ["Biden", "Obama"]


def test_bad_photos_are_reported_and_skipped(shared_data, tmp_path):
    from PIL import Image as PILImage

    blank = tmp_path / "wall.png"
    PILImage.new("RGB", (200, 200), (120, 130, 140)).save(blank)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(lfw(shared_data, "Colin_Powell", 1).read_bytes()[:300])
    group = lfw(shared_data, "Ariel_Sharon", 4)  # two faces
    good = lfw(shared_data, "Colin_Powell", 1)
    with Gallery(tmp_path / "g.db") as g:
        report = g.enroll("Powell", [blank, broken, group, good, good, tmp_path / "missing.jpg"])
    reasons = dict(report.skipped)
    assert report.added == {"Powell": 1}
    assert reasons[str(blank)] == "no face found"
    assert "2 faces found" in reasons[str(group)]
    assert "truncated or corrupt" in reasons[str(broken)] or "corrupt" in reasons[str(broken)]
    assert "no such file" in reasons[str(tmp_path / "missing.jpg")]
    assert reasons[str(good)] == "same photo twice"


# -- the command line ------------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_enroll_identify_people_export_import(shared_data, tmp_path, capsys):
    gallery = ["--gallery", str(tmp_path / "g.db")]
    folder = tmp_path / "people"
    for person in ("Colin_Powell", "Donald_Rumsfeld"):
        (folder / person).mkdir(parents=True)
        for n in (1, 2):
            (folder / person / f"{n}.jpg").symlink_to(lfw(shared_data, person, n))
    (folder / "Donald_Rumsfeld" / "notes.txt").write_text("not a photo")
    assert cli(["enroll", "--folder", str(folder), *gallery]) == 0
    out = capsys.readouterr().out
    assert "enrolled Colin_Powell: 2 face(s)" in out and "enrolled 4 face(s) for 2 person(s)" in out

    assert cli(["enroll", "Ariel", str(lfw(shared_data, "Ariel_Sharon", 1)), "--json", *gallery]) == 0
    assert json.loads(capsys.readouterr().out)["added"] == {"Ariel": 1}

    assert cli(["identify", str(lfw(shared_data, "Colin_Powell", 3)), "--json", "--top", "2", *gallery]) == 0
    result = json.loads(capsys.readouterr().out)
    face = result["faces"][0]
    assert set(face) >= {"box", "name", "distance", "candidates"}
    assert face["name"] == "Colin_Powell" and len(face["candidates"]) == 2
    assert cli(["identify", str(lfw(shared_data, "Arnold_Schwarzenegger", 1)), "--json", *gallery]) == 1
    assert json.loads(capsys.readouterr().out)["faces"][0]["name"] is None

    assert cli(["people", "rename", "Ariel", "Ariel Sharon", *gallery]) == 0
    assert cli(["people", "list", "--json", *gallery]) == 0
    capsys.readouterr()
    assert cli(["people", "show", "Colin_Powell", "--json", *gallery]) == 0
    assert len(json.loads(capsys.readouterr().out)["faces"]) == 2
    assert cli(["people", "remove", "Donald_Rumsfeld", *gallery]) == 0
    capsys.readouterr()
    assert cli(["people", "list", "--json", *gallery]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(p["name"], p["faces"]) for p in listed] == [("Ariel Sharon", 1), ("Colin_Powell", 2)]
    with Gallery(tmp_path / "g.db") as g:
        assert [(p.name, p.faces) for p in g.people()] == [("Ariel Sharon", 1), ("Colin_Powell", 2)]

    export = tmp_path / "out.visage"
    assert cli(["gallery", "export", str(export), *gallery]) == 0
    assert cli(["gallery", "import", str(export), "--gallery", str(tmp_path / "copy.db")]) == 0
    with Gallery(tmp_path / "copy.db") as copy:
        assert [(p.name, p.faces) for p in copy.people()] == [("Ariel Sharon", 1), ("Colin_Powell", 2)]
    capsys.readouterr()

    assert cli(["identify", str(lfw(shared_data, "Colin_Powell", 3)), "--gallery", str(tmp_path / "typo.db")]) == 2
    assert "typo.db: no such gallery" in capsys.readouterr().err and not (tmp_path / "typo.db").exists()
    assert cli(["people", "show", "nobody", *gallery]) == 2
    assert "no person called 'nobody'" in capsys.readouterr().err
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"\x89PNG not a gallery" * 100)
    assert cli(["people", "list", "--gallery", str(bad)]) == 2
    assert "bad.db: not a visage gallery" in capsys.readouterr().err


def test_default_gallery_location_follows_visage_home(monkeypatch, tmp_path):
    from visage.gallery import default_gallery_path

    monkeypatch.setenv("VISAGE_HOME", str(tmp_path))
    assert default_gallery_path() == tmp_path / "gallery.db"
    monkeypatch.delenv("VISAGE_HOME")
    assert default_gallery_path() == Path.home() / ".local/share/visage/gallery.db"


@pytest.mark.slow
def test_cli_switches_backend_by_location_only(shared_data, tmp_path, capsys):
    pytest.importorskip("milvus_lite")
    gallery = ["--gallery", f"milvus-lite:{tmp_path / 'people.db'}"]
    assert cli(["enroll", "Powell", str(lfw(shared_data, "Colin_Powell", 1)), *gallery]) == 0
    assert cli(["identify", str(lfw(shared_data, "Colin_Powell", 2)), "--json", *gallery]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["faces"][0]["name"] == "Powell"
    assert cli(["gallery", "info", "--json", *gallery]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["encoder"] == DEFAULT_ENCODER and info["faces"] == 1
    assert cli(["gallery", "audit", "--json", *gallery]) == 0
    assert json.loads(capsys.readouterr().out)[0]["operation"] == "identify"


@pytest.mark.parametrize("kind", ["exact", "ivf"])
@pytest.mark.slow
def test_snapshot_spares_a_new_process_the_full_load_and_follows_later_changes(kind, encoded, tmp_path,
                                                                               monkeypatch):
    from visage.gallery import snapshot

    monkeypatch.setattr(snapshot, "SNAPSHOT_MIN_FACES", 500)
    if kind == "ivf":
        monkeypatch.setattr("visage.gallery.gallery.IVF_TRAIN_FACES", 1000)
    rng = np.random.default_rng(3)
    noise = rng.standard_normal((2400, len(encoded[PEOPLE[0]][0].encoding))).astype(np.float32)
    path = tmp_path / "g.db"
    with Gallery(path, index=kind) as g:
        fill(g, encoded)
        for k in range(0, 2400, 600):
            g.add(f"crowd-{k}", [FaceRecord(v, f"n{k + i}", "") for i, v in enumerate(noise[k:k + 600])])
        assert g.search(encoded["Colin_Powell"][2].encoding)[0].name == "Colin_Powell"
        assert not g._search.from_snapshot
    assert (tmp_path / "g.db.index" / "state.json").is_file()
    assert (tmp_path / "g.db.index" / "ivf.faiss").is_file() == (kind == "ivf")
    # Changes made after the snapshot, by another process or gallery object.
    with Gallery(path, index=kind) as other:
        other.remove("Colin_Powell")
        other.add("Powell, later", encoded["Colin_Powell"][:1])
        other.rename("Ariel_Sharon", "Sharon")
    with Gallery(path, index=kind) as g:
        probes = np.stack([encoded[p][2].encoding for p in PEOPLE])
        names = [r.name for r in g.search(probes)]
        assert g._search.from_snapshot
        assert names == ["Sharon", "Arnold_Schwarzenegger", "Powell, later", "Donald_Rumsfeld"]
        assert len(g._search.index) == 8 - 2 + 1 + 2400
    # A snapshot of another gallery (same path, new file) is ignored.
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    with Gallery(path, index=kind) as g:
        g.add("Solo", encoded["Donald_Rumsfeld"][:1])
        assert [r.name for r in g.search(probes)][3] == "Solo" and not g._search.from_snapshot
        assert len(g._search.index) == 1
