"""Managing people over the API: the key's identity, face thumbnails, removing one face, renaming and
removing people; auth (user keys may look, only admin keys may change or see faces) and bad input.

Fast: the gallery is filled through the library with made-up encodings, so no face model runs,
except in the one test that enrols a real photo to check its thumbnail is made at enrolment.
"""

from __future__ import annotations

import io
import sqlite3

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from visage.errors import FaceNotFound
from visage.faces.types import Box
from visage.gallery import FaceRecord, Gallery
from visage.gallery.gallery import THUMBNAIL_SIDE, face_thumbnail
from visage.server import ServerSettings, create_app
from visage.server.auth import KeyStore
from visage.server.crypto import EncryptedStore

SPACE, DIM = "dlib-resnet-v1", 128  # a real embedding space (it has a calibration), made-up vectors


def jpeg_bytes(colour: tuple[int, int, int], side: int = THUMBNAIL_SIDE) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (side, side), colour).save(out, "JPEG")
    return out.getvalue()


def record(seed: int, thumbnail: bool = True) -> FaceRecord:
    rng = np.random.default_rng(seed)
    return FaceRecord(rng.normal(size=DIM).astype(np.float32), f"{seed:064x}", f"photo{seed}.jpg",
                      Box(10, 10, 50, 50), thumbnail=jpeg_bytes((seed * 40 % 256, 80, 120)) if thumbnail else None)


def fill(gallery: Gallery, name: str, seeds: list[int], thumbnails: bool = True) -> None:
    gallery.add(name, [record(s, thumbnails) for s in seeds], encoder_name=SPACE, dim=DIM)


def make_server(folder, **settings):
    """An app over an empty gallery (so no encoder is loaded at start), with an admin and a user key."""
    settings = ServerSettings(gallery=str(folder / "gallery.db"), rate_per_minute=10_000, rate_burst=1000,
                              workers=1, **settings)
    keys = KeyStore(settings.state_path())
    admin, user = keys.create("front desk", admin=True), keys.create("door 1")
    keys.close()
    return settings, {"Authorization": f"Bearer {admin}"}, {"X-API-Key": user}


@pytest.fixture
def server(tmp_path):
    settings, admin, user = make_server(tmp_path)
    with TestClient(create_app(settings)) as client:
        # Filled after the server started: it reads the same file, as it would after a CLI enrolment.
        with Gallery(settings.gallery) as gallery:
            fill(gallery, "Ada", [1, 2, 3])
            fill(gallery, "Grace", [4])
            fill(gallery, "Old Timer", [5], thumbnails=False)  # enrolled before thumbnails were kept
        yield client, admin, user


def face_ids(client, headers, name: str) -> list[int]:
    answer = client.get(f"/v1/people/{name}", headers=headers)
    assert answer.status_code == 200, answer.text
    return [f["id"] for f in answer.json()["stored_faces"]]


# -- the library ------------------------------------------------------------------------------------

def test_gallery_keeps_thumbnails_and_removes_one_face(tmp_path):
    with Gallery(tmp_path / "g.db") as gallery:
        fill(gallery, "Ada", [1, 2])
        fill(gallery, "Old Timer", [5], thumbnails=False)
        faces = gallery.faces("Ada")
        assert [f.has_thumbnail for f in faces] == [True, True]
        assert gallery.thumbnail(faces[0].id) == record(1).thumbnail
        old = gallery.faces("Old Timer")[0]
        assert not old.has_thumbnail and gallery.thumbnail(old.id) is None
        assert [f.has_thumbnail for f in gallery.store.iter_faces()] == [True, True, False]
        assert gallery.remove_face(faces[0].id) == ("Ada", 1)
        assert [p.faces for p in gallery.people() if p.name == "Ada"] == [1]
        with pytest.raises(FaceNotFound):
            gallery.thumbnail(faces[0].id)  # its thumbnail went with it
        with pytest.raises(FaceNotFound):
            gallery.remove_face(faces[0].id)
        # The search index follows: the removed face is no longer a match.
        assert gallery.search(record(1).encoding, threshold=1e-3)[0].name is None
        assert gallery.search(record(2).encoding, threshold=1e-3)[0].name == "Ada"
        assert gallery.remove_face(faces[1].id) == ("Ada", 0)  # the last face takes the person with it
        assert [p.name for p in gallery.people()] == ["Old Timer"]
        remaining = gallery.store._db.execute("SELECT COUNT(*) FROM thumbnails").fetchone()[0]
        assert remaining == 0


def test_gallery_made_before_thumbnails_is_migrated(tmp_path):
    path = tmp_path / "old.db"
    with Gallery(path) as gallery:
        fill(gallery, "Ada", [1], thumbnails=False)
    db = sqlite3.connect(path)
    db.execute("DROP TABLE thumbnails")  # as a gallery from before thumbnails has it
    db.commit()
    db.close()
    with Gallery(path) as gallery:
        old = gallery.faces("Ada")[0]
        assert not old.has_thumbnail and gallery.thumbnail(old.id) is None
        fill(gallery, "Ada", [2])
        assert [f.has_thumbnail for f in gallery.faces("Ada")] == [False, True]
        assert gallery.remove("Ada") == 2


def test_face_thumbnail_is_a_square_jpeg_inside_the_image():
    pixels = np.zeros((120, 200, 3), np.uint8)
    pixels[:, :100] = (250, 0, 0)
    for box in (Box(60, 30, 120, 90), Box(0, 0, 40, 40), Box(150, 70, 200, 120), Box(-20, -20, 300, 300)):
        picture = Image.open(io.BytesIO(face_thumbnail(pixels, box)))
        assert picture.format == "JPEG" and picture.size == (THUMBNAIL_SIDE, THUMBNAIL_SIDE)
    left = np.asarray(Image.open(io.BytesIO(face_thumbnail(pixels, Box(0, 0, 40, 40)))))
    assert left[..., 0].mean() > 200  # the crop is from the red top-left, not from elsewhere


def test_encrypted_gallery_encrypts_thumbnails(tmp_path):
    path = tmp_path / "secret.db"
    with Gallery(EncryptedStore(path, "correct horse")) as gallery:
        fill(gallery, "Ada", [1])
        face = gallery.faces("Ada")[0]
        assert face.has_thumbnail and gallery.thumbnail(face.id) == record(1).thumbnail
    db = sqlite3.connect(path)
    stored = db.execute("SELECT jpeg FROM thumbnails").fetchone()[0]
    db.close()
    assert record(1).thumbnail not in stored and not stored.startswith(b"\xff\xd8")  # no JPEG on disk


# -- the API ----------------------------------------------------------------------------------------

def test_key_identity_says_whether_it_is_an_admin_key(server):
    client, admin, user = server
    assert client.get("/v1/key", headers=admin).json() == {"id": admin["Authorization"].split("_")[1],
                                                            "name": "front desk", "admin": True}
    assert client.get("/v1/key", headers=user).json()["admin"] is False
    assert client.get("/v1/key").status_code == 401
    assert client.get("/v1/key", headers={"X-API-Key": "vsk_00000000_nope"}).status_code == 401


def test_person_lists_faces_with_thumbnails(server):
    client, admin, user = server
    shown = client.get("/v1/people/Ada", headers=user).json()
    assert shown["faces"] == 3 and [f["thumbnail"] for f in shown["stored_faces"]] == [True, True, True]
    first = shown["stored_faces"][0]["id"]
    picture = client.get(f"/v1/faces/{first}/thumbnail", headers=admin)
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/jpeg"
    assert picture.headers["cache-control"] == "no-store"
    assert Image.open(io.BytesIO(picture.content)).size == (THUMBNAIL_SIDE, THUMBNAIL_SIDE)
    old = face_ids(client, user, "Old Timer")[0]
    assert client.get("/v1/people/Old Timer", headers=user).json()["stored_faces"][0]["thumbnail"] is False
    missing = client.get(f"/v1/faces/{old}/thumbnail", headers=admin)
    assert missing.status_code == 404 and "before thumbnails" in missing.json()["detail"]


def test_thumbnails_and_changes_need_an_admin_key(server):
    client, admin, user = server
    first = face_ids(client, user, "Ada")[0]
    for answer in (client.get(f"/v1/faces/{first}/thumbnail", headers=user),
                   client.delete(f"/v1/faces/{first}", headers=user),
                   client.patch("/v1/people/Ada", headers=user, json={"new_name": "Ada L."}),
                   client.delete("/v1/people/Ada", headers=user)):
        assert answer.status_code == 403, answer.text
        assert "not an admin key" in answer.json()["detail"]
    assert client.get(f"/v1/faces/{first}/thumbnail").status_code == 401
    assert face_ids(client, user, "Ada") == face_ids(client, admin, "Ada") and len(face_ids(client, user, "Ada")) == 3


def test_remove_one_face_then_the_last(server):
    client, admin, user = server
    ids = face_ids(client, admin, "Ada")
    removed = client.delete(f"/v1/faces/{ids[0]}", headers=admin)
    assert removed.status_code == 200 and removed.json() == {"id": ids[0], "person": "Ada", "faces_left": 2}
    assert face_ids(client, admin, "Ada") == ids[1:]
    assert client.get(f"/v1/faces/{ids[0]}/thumbnail", headers=admin).status_code == 404
    again = client.delete(f"/v1/faces/{ids[0]}", headers=admin)
    assert again.status_code == 404 and f"no face with id {ids[0]}" in again.json()["detail"]
    grace = face_ids(client, admin, "Grace")[0]
    assert client.delete(f"/v1/faces/{grace}", headers=admin).json()["faces_left"] == 0
    assert [p["name"] for p in client.get("/v1/people", headers=user).json()] == ["Ada", "Old Timer"]
    assert client.get("/v1/people/Grace", headers=user).status_code == 404


def test_bad_input_is_refused(server):
    client, admin, user = server
    assert client.delete("/v1/faces/999999", headers=admin).status_code == 404
    assert client.get("/v1/faces/999999/thumbnail", headers=admin).status_code == 404
    assert client.get("/v1/faces/-1/thumbnail", headers=admin).status_code == 404
    not_a_number = client.delete("/v1/faces/abc", headers=admin)
    assert not_a_number.status_code == 422 and "face_id" in not_a_number.json()["detail"]
    assert client.patch("/v1/people/Nobody", headers=admin, json={"new_name": "X"}).status_code == 404
    assert client.delete("/v1/people/Nobody", headers=admin).status_code == 404
    assert client.get("/v1/people/Nobody", headers=user).status_code == 404
    assert client.patch("/v1/people/Ada", headers=admin, json={"new_name": ""}).status_code == 422
    assert client.patch("/v1/people/Ada", headers=admin, json={"new_name": "Grace"}).status_code == 409


def test_rename_and_remove_a_person(server):
    client, admin, user = server
    renamed = client.patch("/v1/people/Ada", headers=admin, json={"new_name": "Ada Lovelace"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Ada Lovelace"
    assert client.get("/v1/people/Ada Lovelace", headers=user).json()["faces"] == 3
    gone = client.delete("/v1/people/Ada Lovelace", headers=admin)
    assert gone.json() == {"name": "Ada Lovelace", "faces_removed": 3}
    assert [p["name"] for p in client.get("/v1/people", headers=user).json()] == ["Grace", "Old Timer"]


def test_new_endpoints_are_typed_in_the_openapi(server):
    client, _, _ = server
    spec = client.get("/openapi.json").json()
    paths, schemas = spec["paths"], spec["components"]["schemas"]
    assert paths["/v1/key"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/KeyIdentity")
    assert paths["/v1/faces/{face_id}"]["delete"]["responses"]["200"]["content"]["application/json"]["schema"][
        "$ref"].endswith("/FaceRemoved")
    thumbnail = paths["/v1/faces/{face_id}/thumbnail"]["get"]["responses"]
    assert "image/jpeg" in thumbnail["200"]["content"] and {"403", "404"} <= set(thumbnail)
    assert "thumbnail" in schemas["StoredFace"]["properties"]
    assert {"KeyIdentity", "FaceRemoved"} <= set(schemas)


def test_encrypted_server_serves_the_plain_thumbnail(tmp_path, monkeypatch):
    monkeypatch.setenv("VISAGE_GALLERY_KEY", "correct horse battery staple")
    settings, admin, _ = make_server(tmp_path)
    with TestClient(create_app(settings)) as client:
        with Gallery(EncryptedStore(settings.gallery, "correct horse battery staple")) as gallery:
            fill(gallery, "Ada", [1])
        first = face_ids(client, admin, "Ada")[0]
        assert client.get(f"/v1/faces/{first}/thumbnail", headers=admin).content == record(1).thumbnail


def test_enrolment_keeps_a_thumbnail_of_the_face(tmp_path, shared_data):
    """A real enrolment (the face models run): the stored thumbnail is a small picture of the face."""
    settings, admin, _ = make_server(tmp_path)
    photo = (shared_data / "faces" / "facerec__obama" / "obama.jpg").read_bytes()
    with TestClient(create_app(settings)) as client:
        enrolled = client.post("/v1/enroll", headers=admin, data={"name": "Barack Obama"},
                               files=[("photos", ("obama.jpg", photo, "image/jpeg"))])
        assert enrolled.status_code == 200, enrolled.text
        face = client.get("/v1/people/Barack Obama", headers=admin).json()["stored_faces"][0]
        assert face["thumbnail"] is True
        picture = client.get(f"/v1/faces/{face['id']}/thumbnail", headers=admin)
    thumb = np.asarray(Image.open(io.BytesIO(picture.content)).convert("RGB"), np.float32)
    assert thumb.shape == (THUMBNAIL_SIDE, THUMBNAIL_SIDE, 3) and thumb.std() > 20  # a picture, not a flat fill
    assert len(picture.content) < 10_000
