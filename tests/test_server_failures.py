"""Failures a hostile test of `visage serve` found: damaged galleries, a full disk, challenge floods.

Each is checked where it starts (the library) and where it is reported (CLI exit status, HTTP status
and a JSON message, never a traceback). No models are needed: the galleries hold random vectors.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from visage.cli import EXIT_ERROR, EXIT_STORAGE_FULL, main
from visage.errors import ChallengeNotFound, GalleryDamaged, StorageFull
from visage.gallery.store import Cursor, SQLiteStore
from visage.gallery.types import FaceRecord
from visage.server.challenges import ChallengesFull, ChallengeStore, ChallengeTooLarge, TooManyChallenges

DIM = 128
ENCODER = "dlib-resnet-v1"  # a real embedding space, so the server can load its encoder


def _records(tag: str, count: int, seed: int = 0) -> list[FaceRecord]:
    vectors = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    return [FaceRecord(v, f"{tag}-{i}", f"{tag}/{i}.jpg") for i, v in enumerate(vectors)]


@pytest.fixture
def gallery(tmp_path) -> Path:
    """A real small gallery: Ada with 3 faces, Bob with 2."""
    path = tmp_path / "g.db"
    store = SQLiteStore(path)
    store.add("Ada", _records("ada", 3), ENCODER, DIM)
    store.add("Bob", _records("bob", 2, seed=1), ENCODER, DIM)
    store.close()
    return path


def _damage(path: Path, *statements: str) -> None:
    """Change rows behind visage's back, as another program (foreign keys off, as sqlite3 has them)."""
    with sqlite3.connect(path) as db:
        for statement in statements:
            db.execute(statement)


SHORT_ENCODING = "UPDATE faces SET encoding = zeroblob(10) WHERE id = 2"
BAD_DIM = "UPDATE meta SET value = 'abc' WHERE key = 'dim'"
ORPHAN = "DELETE FROM people WHERE name = 'Bob'"


# -- 1. damaged rows ---------------------------------------------------------------------------
def test_a_short_encoding_is_refused_on_read_naming_the_row(gallery):
    _damage(gallery, SHORT_ENCODING)
    store = SQLiteStore(gallery)  # the open checks are cheap and do not read encodings
    for read in (lambda: store.faces("Ada"), lambda: list(store.iter_faces()), lambda: store.changes(Cursor())):
        with pytest.raises(GalleryDamaged, match=r"faces row 2 has a 10-byte encoding, expected 512 bytes"):
            read()
    assert [p.name for p in store.people()] == ["Ada", "Bob"]
    store.close()


def test_a_meta_value_that_does_not_parse_is_refused_on_open(gallery):
    _damage(gallery, BAD_DIM)
    with pytest.raises(GalleryDamaged, match=r"meta row 'dim' is 'abc', not a whole number; restore"):
        SQLiteStore(gallery)


def test_a_face_without_its_person_is_refused_on_open_and_on_read(gallery):
    opened = SQLiteStore(gallery)
    _damage(gallery, ORPHAN)
    with pytest.raises(GalleryDamaged, match=r"faces row 4 refers to a people row that does not exist"):
        SQLiteStore(gallery)
    # A store opened before the damage finds it when the index catches up.
    with pytest.raises(GalleryDamaged, match=r"faces row 4 belongs to person 2, who is not in the people table"):
        opened.changes(Cursor())
    opened.close()


@pytest.mark.parametrize("damage, command, message", [
    (SHORT_ENCODING, ["people", "show", "Ada"], "faces row 2 has a 10-byte encoding"),
    (BAD_DIM, ["people", "list"], "meta row 'dim' is 'abc'"),
    (ORPHAN, ["people", "list"], "faces row 4 refers to a people row that does not exist"),
])
def test_cli_says_which_row_is_damaged_and_exits_2(gallery, capsys, damage, command, message):
    _damage(gallery, damage)
    assert main([*command, "--gallery", str(gallery)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("visage: error: ") and message in err and "Traceback" not in err


def _client(gallery: Path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from visage.server import ServerSettings, create_app
    from visage.server.auth import KeyStore

    settings = ServerSettings(gallery=str(gallery), rate_per_minute=10_000, rate_burst=1000)
    keys = KeyStore(settings.state_path())
    admin = keys.create("admin", admin=True)
    keys.close()
    return TestClient(create_app(settings)), {"Authorization": f"Bearer {admin}"}


def test_server_answers_500_with_a_clear_message_for_damaged_rows(gallery):
    # 500, not 409: the server's own file is broken; no change to the request, and no retry, can help.
    client, admin = _client(gallery)
    with client:
        assert client.get("/v1/people/Ada", headers=admin).status_code == 200
        _damage(gallery, SHORT_ENCODING)
        answer = client.get("/v1/people/Ada", headers=admin)
        assert answer.status_code == 500
        assert "damaged visage gallery: faces row 2 has a 10-byte encoding" in answer.json()["detail"]
        _damage(gallery, BAD_DIM)
        answer = client.get("/v1/people/Bob", headers=admin)
        assert answer.status_code == 500 and "meta row 'dim' is 'abc'" in answer.json()["detail"]


@pytest.mark.parametrize("damage", [BAD_DIM, ORPHAN])
def test_server_refuses_to_start_on_a_damaged_gallery(gallery, damage):
    _damage(gallery, damage)
    with pytest.raises(GalleryDamaged, match="damaged visage gallery"):
        _client(gallery)


# -- 2. a full disk ----------------------------------------------------------------------------
@pytest.fixture
def full_disk(monkeypatch) -> Iterator[None]:
    """Every gallery opened from now on has no room to grow: SQLite itself then reports
    "database or disk is full" (SQLITE_FULL), as on a full disk."""
    opened = SQLiteStore._check_or_create

    def without_room(self, exists):
        opened(self, exists)
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        self._db.execute(f"PRAGMA max_page_count = {pages}")

    monkeypatch.setattr(SQLiteStore, "_check_or_create", without_room)
    yield


@pytest.fixture
def big_person(tmp_path) -> Path:
    """Ada with 3000 faces: forgetting her writes 3000 rows to the removal log (new pages)."""
    path = tmp_path / "big.db"
    store = SQLiteStore(path)
    store.add("Ada", _records("ada", 3000), ENCODER, DIM)
    store.close()
    return path


def _faces(path: Path) -> int:
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return db.execute("SELECT COUNT(*) FROM faces").fetchone()[0]


def test_a_full_disk_raises_storage_full_and_loses_nothing(big_person, full_disk):
    store = SQLiteStore(big_person)
    with pytest.raises(StorageFull, match=r"no space left on the disk .*database or disk is full.*free some"):
        store.remove("Ada")
    with pytest.raises(StorageFull):
        store.add("Bob", _records("bob", 3000, seed=1), ENCODER, DIM)
    assert [(p.name, p.faces) for p in store.people()] == [("Ada", 3000)]  # the store still works
    store.close()
    assert _faces(big_person) == 3000


def test_no_space_to_create_a_gallery_raises_storage_full(tmp_path, monkeypatch):
    real_open = os.open

    def no_space(path, flags, *args, **kwargs):
        if flags & os.O_CREAT:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_open(path, flags, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(os, "open", no_space)
        with pytest.raises(StorageFull, match="no space left on the disk"):
            SQLiteStore(tmp_path / "new.db")
    assert not list(tmp_path.iterdir())  # no half-made file left behind


def test_cli_reports_a_full_disk_in_one_line_with_exit_5(big_person, full_disk, capsys):
    assert main(["people", "remove", "Ada", "--gallery", str(big_person)]) == EXIT_STORAGE_FULL == 5
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("visage: error: ") and "no space left" in err
    assert _faces(big_person) == 3000


def test_server_answers_507_on_a_full_disk(big_person, full_disk):
    client, admin = _client(big_person)
    with client:
        answer = client.delete("/v1/people/Ada", headers=admin)
        assert answer.status_code == 507
        assert "no space left on the disk" in answer.json()["detail"]
        assert client.get("/v1/people", headers=admin).json()[0]["faces"] == 3000


# -- 3. liveness challenges: a cap per key and byte budgets ------------------------------------
def test_one_key_cannot_take_every_challenge_slot():
    store = ChallengeStore(seconds=60, max_per_key=2)
    store.create("greedy")
    store.create("greedy")
    with pytest.raises(TooManyChallenges, match="limit is 2 a key"):
        store.create("greedy")
    store.create("someone else")  # other keys are not blocked
    answered = store.create("other")
    store.close(answered)
    store.create("other")


def test_challenge_frames_have_a_byte_budget_per_challenge_and_per_server():
    store = ChallengeStore(seconds=60, max_frames=100, max_per_key=10, max_bytes=1000, max_total_bytes=2500)
    a, b, c = store.create("k1"), store.create("k2"), store.create("k3")
    store.add_frames(a, [b"x" * 600], [0.0])
    with pytest.raises(ChallengeTooLarge, match="at most 1000 bytes of frames; it holds 600 bytes and 500 bytes more"):
        store.add_frames(a, [b"x" * 500], [1.0])
    assert len(a.frames) == 1 and store.bytes_held == 600  # a refused batch takes nothing
    store.add_frames(b, [b"x" * 1000], [0.0])
    with pytest.raises(ChallengesFull, match="challenge frames"):
        store.add_frames(c, [b"x" * 1000], [0.0])
    store.close(b)  # answered: its bytes go back to the server's budget
    assert store.bytes_held == 600
    store.add_frames(c, [b"x" * 1000], [0.0])
    store.close(c)
    with pytest.raises(ChallengeNotFound):  # frames for an answered challenge are not kept
        store.add_frames(c, [b"x"], [0.0])
    assert store.bytes_held == 600


def test_expired_challenges_give_their_bytes_back():
    store = ChallengeStore(seconds=0.05, max_bytes=100, max_total_bytes=100)
    store.add_frames(store.create("k"), [b"x" * 100], [0.0])
    import time

    time.sleep(0.1)
    assert store.bytes_held == 0
    store.add_frames(store.create("k"), [b"x" * 100], [0.0])


def test_challenge_refusals_map_to_429_413_and_503():
    pytest.importorskip("fastapi")
    from visage.server.app import status_for

    assert status_for(TooManyChallenges("")) == 429  # this key's own load
    assert status_for(ChallengeTooLarge("")) == 413  # too large, however often it is sent
    assert status_for(ChallengesFull("")) == 503  # the whole server is full: not this caller's fault
    assert status_for(StorageFull("")) == 507
    assert status_for(GalleryDamaged("")) == 500


def test_challenge_settings_have_defaults_and_reach_the_store():
    from visage.server.settings import ServerSettings

    settings = ServerSettings()
    assert (settings.max_challenges_per_key, settings.max_challenge_bytes, settings.max_challenge_bytes_total) == (
        4, 32 * 1024 * 1024, 512 * 1024 * 1024)
