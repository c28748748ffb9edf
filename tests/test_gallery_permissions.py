"""A gallery holds face templates: its file is the owner's alone, from the library, the CLI and the server."""

from __future__ import annotations

import re
import stat

import pytest

from visage.gallery import Gallery


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_gallery_is_0600_in_0700_folders(tmp_path):
    path = tmp_path / "new" / "deeper" / "g.db"
    with Gallery(path) as gallery:
        gallery.people()
    assert mode(path) == 0o600
    assert mode(tmp_path / "new") == 0o700 and mode(tmp_path / "new" / "deeper") == 0o700
    for side in ("g.db-wal", "g.db-shm"):
        if (path.parent / side).exists():
            assert mode(path.parent / side) & 0o077 == 0


def test_an_existing_readable_gallery_is_tightened_with_a_warning(tmp_path):
    path = tmp_path / "g.db"
    with Gallery(path) as gallery:
        gallery.people()
    path.chmod(0o644)
    with pytest.warns(UserWarning, match="was readable by others"):
        with Gallery(path) as gallery:
            gallery.people()
    assert mode(path) == 0o600


def test_the_index_snapshot_beside_a_gallery_is_private(tmp_path, monkeypatch):
    import numpy as np

    from visage.gallery import FaceRecord, snapshot

    monkeypatch.setattr(snapshot, "SNAPSHOT_MIN_FACES", 10)
    shared = tmp_path / "shared"  # a folder others may list, as a project folder often is
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    path = shared / "g.db"
    vectors = np.random.default_rng(0).standard_normal((20, 128)).astype(np.float32)
    with Gallery(path) as gallery:  # the encoder is never loaded: the vectors are given
        gallery.add("crowd", [FaceRecord(v, f"{i:064x}", "") for i, v in enumerate(vectors)],
                    encoder_name="dlib-resnet-v1", dim=128)
        assert gallery.search(vectors[3])[0].name == "crowd"
    folder = shared / "g.db.index"  # every encoding, in plain float32
    assert (folder / "state.json").is_file() and mode(folder) == 0o700
    folder.chmod(0o755)  # as an older visage left it
    with Gallery(path) as gallery:
        assert gallery.search(vectors[3])[0].name == "crowd" and gallery._search.from_snapshot
    assert mode(folder) == 0o700


def test_the_server_state_file_is_private_while_open_and_tightened_when_not(tmp_path):
    pytest.importorskip("fastapi")
    from visage.server.auth import KeyStore

    path = tmp_path / "home" / "server.db"  # API key hashes and the audit log
    keys = KeyStore(path)
    keys.create("desk", admin=True)  # a write: SQLite's -wal and -shm files exist now
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    sides = [path.parent / side for side in ("server.db-wal", "server.db-shm") if (path.parent / side).exists()]
    assert sides and all(mode(side) == 0o600 for side in sides)
    keys.close()
    path.chmod(0o644)
    with pytest.warns(UserWarning, match="was readable by others"):
        KeyStore(path).close()
    assert mode(path) == 0o600


def test_a_state_file_that_cannot_be_created_is_a_visage_error(tmp_path):
    pytest.importorskip("fastapi")
    from visage.errors import VisageError
    from visage.server.auth import KeyStore

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(VisageError, match="cannot create the server's state file"):
        KeyStore(blocker / "server.db")


def test_the_cli_creates_a_private_gallery(shared_data, tmp_path):
    from visage.cli import main

    path = tmp_path / "cli" / "people.db"
    photo = shared_data / "faces" / "facerec__obama" / "obama.jpg"
    assert main(["enroll", "Obama", str(photo), "--gallery", str(path)]) == 0
    assert mode(path) == 0o600 and mode(path.parent) == 0o700


def _open_at_once(path: str, barrier, results) -> None:
    from visage.gallery.store import SQLiteStore

    barrier.wait()
    try:
        store = SQLiteStore(path)
        store.people()
        store.close()
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 -- the test reports whatever went wrong
        results.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.slow
def test_processes_creating_one_new_gallery_at_once_all_open_it(tmp_path):
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    for round_ in range(8):
        path = str(tmp_path / f"round{round_}" / "g.db")
        barrier, results = ctx.Barrier(6), ctx.Queue()
        workers = [ctx.Process(target=_open_at_once, args=(path, barrier, results)) for _ in range(6)]
        for w in workers:
            w.start()
        answers = [results.get(timeout=60) for _ in workers]
        for w in workers:
            w.join()
        assert answers == ["ok"] * 6, answers
        assert not [p for p in (tmp_path / f"round{round_}").iterdir() if p.name.endswith(".new")]


def test_names_are_one_form_and_readable(tmp_path):
    import numpy as np

    from visage.errors import InvalidArgument
    from visage.gallery.types import FaceRecord

    vector = np.ones(640, np.float32) / np.sqrt(640)
    with Gallery(tmp_path / "g.db", encoder="dlib+facenet") as gallery:
        composed, decomposed = "Zo\u00eb", "Zoe\u0308"  # one name, two Unicode forms
        gallery.add(composed, [FaceRecord(vector, "a")], encoder_name="dlib+facenet-w0.60", dim=640)
        gallery.add(decomposed, [FaceRecord(vector * 0.99, "b")], encoder_name="dlib+facenet-w0.60", dim=640)
        assert [(p.name, p.faces) for p in gallery.people()] == [(composed, 2)]
        assert len(gallery.faces(decomposed)) == 2  # found under either form
        for bad in ("   ", "\u202eevil", "tab\there", "new\nline"):
            with pytest.raises(InvalidArgument):
                gallery.add(bad, [FaceRecord(vector, bad)], encoder_name="dlib+facenet-w0.60", dim=640)
        with pytest.raises(InvalidArgument):
            gallery.rename(composed, " ")
        with pytest.raises(Exception, match=re.escape("no person called 'Nobody' in the gallery") + "$"):
            gallery.faces("Nobody")


@pytest.mark.slow
def test_one_photo_re_saved_is_not_a_new_person(shared_data, tmp_path):
    import io

    from PIL import Image as PILImage

    photo = shared_data / "faces" / "facerec__obama" / "obama.jpg"
    copies = {}
    for fmt, options in (("PNG", {}), ("WEBP", {"quality": 50}), ("JPEG", {"quality": 60})):
        buffer = io.BytesIO()
        PILImage.open(photo).convert("RGB").save(buffer, fmt, **options)
        copies[fmt] = tmp_path / f"obama.{fmt.lower()}"
        copies[fmt].write_bytes(buffer.getvalue())
    with Gallery(tmp_path / "g.db") as gallery:
        assert gallery.enroll("Obama", [photo]).faces_added == 1
        for k, (fmt, path) in enumerate(copies.items()):
            report = gallery.enroll(f"Someone {k}", [path])
            assert report.faces_added == 0, fmt
            assert "already enrolled as Obama" in report.skipped[0][1]
        assert gallery.enroll("Obama", [copies["PNG"]]).faces_added == 1  # more photos of the same person are fine
        assert [p.name for p in gallery.people()] == ["Obama"]


def test_a_file_that_is_not_a_gallery_is_left_as_it_was(tmp_path):
    import sqlite3

    from visage.errors import GalleryError

    notes = tmp_path / "notes.db"
    with sqlite3.connect(notes) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    notes.chmod(0o644)
    with pytest.raises(GalleryError, match="not a visage gallery"):
        Gallery(notes)
    assert mode(notes) == 0o644
