"""Encryption at rest (format 2): per-record nonces, landmarks, file names and audit rows sealed.

Fast: made-up encodings, no face model. The real enrolment and identification through the server
with VISAGE_GALLERY_KEY is tests/test_server.py::test_encryption_at_rest.
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3

import numpy as np
import pytest
from fastapi.testclient import TestClient

from visage.errors import GalleryDamaged, GalleryError
from visage.faces.types import Box
from visage.gallery import FaceRecord, Gallery
from visage.gallery.store import SQLiteStore
from visage.server import ServerSettings, create_app
from visage.server.auth import KeyStore
from visage.server.crypto import FORMAT_KEY, EncryptedStore

SPACE, DIM = "dlib-resnet-v1", 128
KEY = "correct horse battery staple"
SOURCE = "holiday-secret-7f3a.jpg"
LANDMARKS = np.array([[123.45, 67.89], [234.56, 78.91], [345.67, 89.12], [456.78, 91.23], [567.89, 12.34]],
                     np.float32)


def face(seed: int = 1, sha: str | None = None) -> FaceRecord:
    vector = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return FaceRecord(vector, sha or f"{seed:064x}", SOURCE, Box(10, 10, 50, 50), LANDMARKS, 0.9)


def raw_bytes(path) -> bytes:
    """The gallery file and its WAL, as someone who copied them would read them."""
    return b"".join(part.read_bytes() for part in path.parent.glob(path.name + "*"))


def test_equal_faces_give_different_ciphertexts(tmp_path):
    store = EncryptedStore(tmp_path / "g.db", KEY)
    store.add("Ada", [face(1, "a" * 64)], SPACE, DIM)
    store.add("Grace", [face(1, "b" * 64)], SPACE, DIM)  # the same pixels, another photo hash
    rows = store._db.execute("SELECT encoding, source, landmarks FROM faces ORDER BY id").fetchall()
    for column in range(3):
        assert rows[0][column] != rows[1][column]
    first, second = store.faces("Ada")[0].record, store.faces("Grace")[0].record
    assert np.array_equal(first.encoding, second.encoding) and np.array_equal(first.encoding, face(1).encoding)
    store.close()


def test_the_file_holds_no_landmarks_file_names_or_audit_summaries(tmp_path):
    path = tmp_path / "g.db"
    store = EncryptedStore(path, KEY)
    store.add("Ada Lovelace", [face(1)], SPACE, DIM)
    store.log("identify", "c" * 64, "door-camera-frame-0042.jpg",
              {"faces": [{"name": "Ada Lovelace", "distance": 0.431279, "live": None}]})
    store.close()
    raw = raw_bytes(path)
    for secret in (SOURCE.encode(), b"door-camera-frame", b"0.431279", b"distance", b"123.45", b"567.89",
                   face(1).encoding.tobytes()[:16]):
        assert secret not in raw, secret
    assert b"Ada Lovelace" in raw and b"c" * 64 in raw  # names and photo hashes stay readable (docs/service.md)

    reopened = EncryptedStore(path, KEY)
    stored = reopened.faces("Ada Lovelace")[0].record
    assert stored.source == SOURCE and np.allclose(stored.landmarks5, LANDMARKS, atol=0.01)
    assert [f.record.source for f in reopened.iter_faces()] == [SOURCE]
    [row] = reopened.audit()
    assert row["source"] == "door-camera-frame-0042.jpg" and row["result"]["faces"][0]["distance"] == 0.431279
    assert reopened.prune_audit(1, now=row["time"] + 2 * 86400) == 1  # pruning reads only the readable time
    reopened.close()


def test_a_wrong_key_or_no_key_is_refused(tmp_path):
    path = tmp_path / "g.db"
    EncryptedStore(path, KEY).close()
    with pytest.raises(GalleryError, match="wrong encryption key"):
        EncryptedStore(path, "guess")
    with pytest.raises(GalleryError, match="encrypted; set VISAGE_GALLERY_KEY"):
        SQLiteStore(path)


def test_a_tampered_or_plain_value_is_refused(tmp_path):
    path = tmp_path / "g.db"
    store = EncryptedStore(path, KEY)
    store.add("Ada", [face(1)], SPACE, DIM)
    store.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE faces SET landmarks = source")  # a sealed value moved to another column
    db.execute("INSERT INTO audit (time, operation, source, result) VALUES (0, 'identify', 'x.jpg', '{}')")
    db.commit()
    db.close()
    store = EncryptedStore(path, KEY)
    with pytest.raises(GalleryDamaged, match="landmarks value is not encrypted with this gallery's key"):
        store.faces("Ada")
    with pytest.raises(GalleryDamaged, match=r"audit\.source"):  # a row written in the clear behind its back
        store.audit()
    store.close()


def _format_1(path, passphrase: str) -> None:
    """Turn the plain gallery at ``path`` into one as visage encrypted it before format 2."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    salt = bytes(range(16))
    material = hashlib.scrypt(passphrase.encode(), salt=salt, n=2 ** 14, r=8, p=1, dklen=96, maxmem=64 * 1024 * 1024)
    db = sqlite3.connect(path)
    for face_id, blob in db.execute("SELECT id, encoding FROM faces").fetchall():
        enc = Cipher(algorithms.AES(material[:64]), modes.XTS(bytes(16))).encryptor()
        db.execute("UPDATE faces SET encoding = ? WHERE id = ?", (enc.update(blob) + enc.finalize(), face_id))
    check = hmac.new(material[64:], b"visage gallery encryption key check v1", hashlib.sha256).hexdigest()
    db.executemany("INSERT INTO meta VALUES (?, ?)", [("encryption_salt", salt.hex()), ("encryption_check", check)])
    db.commit()
    db.close()


def test_a_format_1_gallery_is_upgraded_when_opened_with_its_key(tmp_path):
    path = tmp_path / "old.db"
    plain = SQLiteStore(path)
    plain.add("Ada", [face(1), face(2)], SPACE, DIM)
    plain.log("verify", "d" * 64, "old-audit-photo.jpg", {"claim": "Ada", "accepted": True, "distance": 0.3141})
    plain.close()
    _format_1(path, KEY)
    with pytest.raises(GalleryError, match="wrong encryption key"):
        EncryptedStore(path, "guess")  # and nothing is rewritten
    assert SOURCE.encode() in raw_bytes(path)

    store = EncryptedStore(path, KEY)
    assert store._meta(FORMAT_KEY) == "2"
    assert np.array_equal(np.stack([f.record.encoding for f in store.faces("Ada")]),
                          np.stack([face(1).encoding, face(2).encoding]))
    assert store.faces("Ada")[0].record.source == SOURCE and store.audit()[0]["result"]["distance"] == 0.3141
    raw = raw_bytes(path)  # while it is still open: the old rows do not linger in the file or its WAL
    assert SOURCE.encode() not in raw and b"old-audit-photo" not in raw and b"0.3141" not in raw
    store.close()
    EncryptedStore(path, KEY).close()  # a second open finds format 2 and rewrites nothing


def test_encrypted_server_answers_people_with_the_plain_file_names(tmp_path, monkeypatch):
    monkeypatch.setenv("VISAGE_GALLERY_KEY", KEY)
    settings = ServerSettings(gallery=str(tmp_path / "gallery.db"), workers=1, rate_per_minute=10_000,
                              rate_burst=1000)
    keys = KeyStore(settings.state_path())
    admin = {"X-API-Key": keys.create("admin", admin=True)}
    keys.close()
    with TestClient(create_app(settings)) as client:
        with Gallery(EncryptedStore(settings.gallery, KEY)) as gallery:
            gallery.add("Ada", [face(1)], encoder_name=SPACE, dim=DIM)
        answer = client.get("/v1/people/Ada", headers=admin)
        assert answer.status_code == 200, answer.text
        assert answer.json()["stored_faces"][0]["source"] == SOURCE
    assert SOURCE.encode() not in raw_bytes(tmp_path / "gallery.db")
