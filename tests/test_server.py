"""The REST API through FastAPI's TestClient: every endpoint, auth failures, limits and bad input.

Real models and dev-set photos (scaled down so the tests stay quick); nothing is mocked.
"""

from __future__ import annotations

import io
import json
import sqlite3
import time

import numpy as np
import pytest
from PIL import Image

from helpers import jpeg

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from visage.server import ServerSettings, create_app
from visage.server.auth import KeyStore

SIDE = 400


@pytest.fixture(scope="module")
def photos(shared_data):
    faces = shared_data / "faces"
    return {
        "obama": jpeg(faces / "facerec__obama" / "obama.jpg", SIDE),
        "obama2": jpeg(faces / "facerec__obama" / "obama2.jpg", SIDE),
        "obama3": jpeg(faces / "facerec__obama" / "obama1.jpg", SIDE),
        "biden": jpeg(faces / "facerec__biden" / "biden2.jpg", SIDE),
        "two": jpeg(shared_data / "detection" / "facerec_two_people.jpg", 700),
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One app over a fresh gallery, an admin key and a user key."""
    folder = tmp_path_factory.mktemp("server")
    settings = ServerSettings(gallery=str(folder / "gallery.db"), rate_per_minute=10_000, rate_burst=1000,
                              max_request_bytes=3_000_000, max_pixels=2_000_000, max_style_size=64)
    keys = KeyStore(settings.state_path())
    admin, user = keys.create("front desk", admin=True), keys.create("door 1")
    revoked = keys.create("old door")
    keys.revoke(revoked.split("_")[1])
    keys.close()
    with TestClient(create_app(settings)) as client:
        yield {"client": client, "settings": settings, "admin": {"Authorization": f"Bearer {admin}"},
               "user": {"X-API-Key": user}, "revoked": {"X-API-Key": revoked}, "folder": folder}


@pytest.fixture(scope="module")
def passive_model():
    """The shipped passive liveness model; skips when this checkout has none yet."""
    from visage.errors import ModelError
    from visage.liveness.passive import load_model

    try:
        return load_model()
    except ModelError as exc:
        pytest.skip(f"no passive liveness model: {exc}")


def post_image(server, path, data: bytes, headers="user", field="image", name="photo.jpg", **form):
    return server["client"].post(path, headers=server[headers], files={field: (name, data, "image/jpeg")},
                                 data={k: str(v) for k, v in form.items()})


# -- pages, docs, health ----------------------------------------------------------------------------

def test_health_page_and_offline_docs(server):
    client = server["client"]
    assert client.get("/health").json() == {"status": "ok", "version": "0.1.0"}
    page = client.get("/")
    assert page.status_code == 200 and "<video" in page.text and "/static/app.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "http" not in page.text.replace("http-equiv", "")  # nothing fetched from another origin
    assert client.get("/static/app.js").status_code == 200
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/static-offline-docs/swagger-ui-bundle.js" in docs.text
    assert client.get("/static-offline-docs/swagger-ui-bundle.js").status_code == 200
    spec = client.get("/openapi.json").json()
    for path in ("/v1/detect", "/v1/encode", "/v1/verify", "/v1/enroll", "/v1/identify", "/v1/people/{name}",
                 "/v1/liveness", "/v1/liveness/challenges", "/v1/style", "/v1/jobs/{job_id}/result", "/v1/audit"):
        assert path in spec["paths"], path
    assert "IdentifyResponse" in spec["components"]["schemas"]


# -- auth -------------------------------------------------------------------------------------------

def test_keys_are_required_valid_and_not_revoked(server, photos):
    client = server["client"]
    missing = client.get("/v1/people")
    assert missing.status_code == 401 and "API key is needed" in missing.json()["detail"]
    assert missing.headers["www-authenticate"] == "Bearer"
    assert client.get("/v1/people", headers={"X-API-Key": "vsk_00000000_nope"}).status_code == 401
    assert client.get("/v1/people", headers={"Authorization": "Bearer garbage"}).status_code == 401
    revoked = client.get("/v1/people", headers=server["revoked"])
    assert revoked.status_code == 401 and "revoked" in revoked.json()["detail"]
    assert client.get("/v1/people", headers=server["user"]).status_code == 200


def test_admin_key_needed_to_enrol_remove_and_read_audit(server, photos):
    client = server["client"]
    refused = client.post("/v1/enroll", headers=server["user"], data={"name": "Mallory"},
                          files=[("photos", ("m.jpg", photos["biden"], "image/jpeg"))])
    assert refused.status_code == 403 and "not an admin key" in refused.json()["detail"]
    assert client.delete("/v1/people/anyone", headers=server["user"]).status_code == 403
    assert client.patch("/v1/people/anyone", headers=server["user"], json={"new_name": "x"}).status_code == 403
    assert client.get("/v1/audit", headers=server["user"]).status_code == 403
    assert client.get("/v1/people", headers=server["admin"]).json() == []  # nothing was enrolled


def test_keys_are_stored_hashed(server):
    db = sqlite3.connect(server["settings"].state_path())
    rows = db.execute("SELECT id, hash FROM api_keys").fetchall()
    db.close()
    secret = server["admin"]["Authorization"].split()[1]
    assert len(rows) == 3 and all(len(h) == 64 for _, h in rows)
    assert secret not in server["settings"].state_path().read_bytes().decode("latin-1")


def test_rate_limit_per_key(tmp_path, photos):
    settings = ServerSettings(gallery=str(tmp_path / "g.db"), rate_per_minute=1, rate_burst=2)
    keys = KeyStore(settings.state_path())
    one, two = keys.create("a"), keys.create("b")
    keys.close()
    with TestClient(create_app(settings)) as client:
        codes = [client.get("/v1/people", headers={"X-API-Key": one}).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        limited = client.get("/v1/people", headers={"X-API-Key": one})
        assert "rate limit" in limited.json()["detail"] and int(limited.headers["retry-after"]) >= 1
        assert client.get("/v1/people", headers={"X-API-Key": two}).status_code == 200  # per key


# -- faces ------------------------------------------------------------------------------------------

def test_detect(server, photos):
    answer = post_image(server, "/v1/detect", photos["two"], landmarks68="true")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert len(body["faces"]) == 2 and body["image"]["width"] == 700
    face = body["faces"][0]
    assert face["box"]["right"] > face["box"]["left"] and len(face["landmarks"]["68"]) == 68


def test_encode_and_face_count(server, photos):
    answer = post_image(server, "/v1/encode", photos["obama"], which="one")
    assert answer.status_code == 200
    faces = answer.json()["faces"]
    assert len(faces) == 1 and len(faces[0]["encoding"]) == 640 and faces[0]["encoder"]
    import visage

    direct = visage.encode(photos["obama"], which="one")[0].encoding  # the service adds nothing of its own
    assert np.allclose(faces[0]["encoding"], direct, atol=1e-5)
    several = post_image(server, "/v1/encode", photos["two"], which="one")
    assert several.status_code == 422 and "2 faces found, expected one" in several.json()["detail"]


def test_verify_same_and_different(server, photos):
    client = server["client"]

    def verify(a, b):
        return client.post("/v1/verify", headers=server["user"], files={
            "a": ("a.jpg", photos[a], "image/jpeg"), "b": ("b.jpg", photos[b], "image/jpeg")}).json()

    same, different = verify("obama", "obama2"), verify("obama", "biden")
    assert same["same"] is True and different["same"] is False
    assert same["distance"] < same["threshold"] < different["distance"]


def test_bad_uploads_get_4xx_with_a_clear_message(server, photos):
    not_image = post_image(server, "/v1/detect", b"this is not a picture", name="notes.txt")
    assert not_image.status_code == 400 and "notes.txt" in not_image.json()["detail"]
    empty = post_image(server, "/v1/detect", b"", name="empty.jpg")
    assert empty.status_code in (400, 422) and empty.json()["detail"]
    truncated = post_image(server, "/v1/detect", photos["obama"][:2000], name="cut.jpg")
    assert truncated.status_code == 400 and "cut.jpg" in truncated.json()["detail"]
    # 3000×3000 = 9 MP, over this server's 2 MP: refused before decoding, though the file is small.
    big = io.BytesIO()
    Image.new("RGB", (3000, 3000), (90, 90, 90)).save(big, "PNG")
    huge = post_image(server, "/v1/detect", big.getvalue(), name="huge.png")
    assert huge.status_code == 400 and "too large" in huge.json()["detail"] and "huge.png" in huge.json()["detail"]
    # Over the request size limit (3 MB here): 413 before the body is read.
    bloated = post_image(server, "/v1/detect", b"\xff" * 3_200_000, name="big.jpg")
    assert bloated.status_code == 413 and "over the" in bloated.json()["detail"]
    missing = server["client"].post("/v1/detect", headers=server["user"])
    assert missing.status_code == 422 and "image" in missing.json()["detail"]
    no_face = io.BytesIO()
    Image.new("RGB", (200, 200), (200, 180, 160)).save(no_face, "PNG")
    verify = server["client"].post("/v1/verify", headers=server["user"], files={
        "a": ("blank.png", no_face.getvalue(), "image/png"), "b": ("o.jpg", photos["obama"], "image/jpeg")})
    assert verify.status_code == 422 and "no face" in verify.json()["detail"]


def test_chunked_body_over_the_limit(server):
    def chunks():
        for _ in range(40):
            yield b"\0" * 100_000

    answer = server["client"].post("/v1/detect", headers={**server["user"], "Content-Type": "application/octet-stream"},
                                   content=chunks())
    assert answer.status_code == 413 and "larger than" in answer.json()["detail"]


# -- gallery ----------------------------------------------------------------------------------------

def test_enrol_identify_and_manage_people(server, photos):
    client = server["client"]
    enrolled = client.post("/v1/enroll", headers=server["admin"], data={"name": "Barack Obama"}, files=[
        ("photos", ("obama.jpg", photos["obama"], "image/jpeg")),
        ("photos", ("obama2.jpg", photos["obama2"], "image/jpeg")),
        ("photos", ("group.jpg", photos["two"], "image/jpeg")),
        ("photos", ("broken.jpg", b"nope", "image/jpeg"))])
    assert enrolled.status_code == 200, enrolled.text
    report = enrolled.json()
    assert report["faces_added"] == 2 and report["added"] == {"Barack Obama": 2}
    reasons = {s["photo"]: s["reason"] for s in report["skipped"]}
    assert "2 faces found" in reasons["group.jpg"] and "broken.jpg" in reasons
    again = client.post("/v1/enroll", headers=server["admin"], data={"name": "Barack Obama"},
                        files=[("photos", ("obama.jpg", photos["obama"], "image/jpeg"))])
    assert again.status_code == 400 and "already enrolled" in again.json()["detail"]
    nothing = client.post("/v1/enroll", headers=server["admin"], data={"name": "Nobody"},
                          files=[("photos", ("x.jpg", b"junk", "image/jpeg"))])
    assert nothing.status_code == 400 and "nothing enrolled" in nothing.json()["detail"]

    known = post_image(server, "/v1/identify", photos["obama3"]).json()
    assert [f["name"] for f in known["faces"]] == ["Barack Obama"] and known["faces"][0]["live"] is None
    assert known["faces"][0]["candidates"][0]["name"] == "Barack Obama"
    stranger = post_image(server, "/v1/identify", photos["biden"]).json()
    assert stranger["faces"][0]["name"] is None and stranger["faces"][0]["distance"] > stranger["faces"][0]["threshold"]
    # An infinite threshold would name every stranger: refused before any matching.
    for bad in ("inf", "nan"):
        refused = post_image(server, "/v1/identify", photos["biden"], threshold=bad)
        assert refused.status_code == 422, refused.text

    people = client.get("/v1/people", headers=server["user"]).json()
    assert [(p["name"], p["faces"]) for p in people] == [("Barack Obama", 2)]
    shown = client.get("/v1/people/Barack Obama", headers=server["user"]).json()
    assert {f["source"] for f in shown["stored_faces"]} == {"obama.jpg", "obama2.jpg"}
    assert "encoding" not in shown["stored_faces"][0]
    assert client.get("/v1/people/Nobody", headers=server["user"]).status_code == 404

    renamed = client.patch("/v1/people/Barack Obama", headers=server["admin"], json={"new_name": "Obama"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Obama"
    assert post_image(server, "/v1/identify", photos["obama3"]).json()["faces"][0]["name"] == "Obama"
    slashed = client.patch("/v1/people/Obama", headers=server["admin"], json={"new_name": "Obama/44"})
    assert slashed.status_code == 200
    assert client.get("/v1/people/Obama/44", headers=server["user"]).json()["faces"] == 2  # names may hold '/'
    assert client.patch("/v1/people/Obama/44", headers=server["admin"], json={"new_name": "Obama"}).status_code == 200
    client.post("/v1/enroll", headers=server["admin"], data={"name": "Biden"},
                files=[("photos", ("biden.jpg", photos["biden"], "image/jpeg"))])
    taken = client.patch("/v1/people/Biden", headers=server["admin"], json={"new_name": "Obama"})
    assert taken.status_code == 409 and "already a person" in taken.json()["detail"]
    assert client.patch("/v1/people/Ghost", headers=server["admin"], json={"new_name": "X"}).status_code == 404
    removed = client.delete("/v1/people/Biden", headers=server["admin"])
    assert removed.json() == {"name": "Biden", "faces_removed": 1}
    assert client.delete("/v1/people/Biden", headers=server["admin"]).status_code == 404
    assert post_image(server, "/v1/identify", photos["biden"]).json()["faces"][0]["name"] is None


def test_identify_with_passive_liveness(server, photos, passive_model):
    from visage import liveness

    plain = post_image(server, "/v1/identify", photos["obama3"]).json()["faces"][0]
    verdict = liveness.check(photos["obama3"])
    answer = post_image(server, "/v1/identify", photos["obama3"], require_live="true")
    if verdict.live:
        # The same match as without the check, named only because the judged face is live.
        face = answer.json()["faces"][0]
        assert answer.status_code == 200 and face["live"] is True
        assert face["candidates"] == plain["candidates"] and face["name"] == plain["name"]
    else:
        # A refusal says why and carries the same verdict the library gives.
        assert answer.status_code == 403
        assert answer.json()["liveness"]["decision"] == verdict.decision
        assert "liveness" in answer.json()["detail"]


def test_http_status_follows_the_exception_type_not_its_wording(server, monkeypatch):
    from visage.errors import ChallengeNotFound, GalleryError, NameTaken, PersonNotFound
    from visage.gallery.store import SQLiteStore

    client, admin = server["client"], server["admin"]
    cases = [(PersonNotFound, 404), (NameTaken, 409), (GalleryError, 409), (ChallengeNotFound, 404)]
    for error, status in cases:
        def refuse(self, *args, error=error, **kwargs):
            raise error("reworded: nothing in this message is matched on")

        monkeypatch.setattr(SQLiteStore, "faces", refuse)
        answer = client.get("/v1/people/Anyone", headers=admin)
        assert answer.status_code == status, (error.__name__, answer.json())
        assert answer.json()["detail"].startswith("reworded")


def test_audit_log_says_who_asked_what_without_biometrics(server, photos, caplog):
    caplog.set_level("DEBUG")
    encoded = post_image(server, "/v1/encode", photos["obama2"]).json()["faces"][0]["encoding"]
    entries = server["client"].get("/v1/audit?limit=500", headers=server["admin"]).json()
    by_path = {}
    for e in entries:
        by_path.setdefault(e["path"], []).append(e)
    enrol = [e for e in by_path["/v1/enroll"] if e["status"] == 200][-1]
    assert enrol["key_name"] == "front desk" and enrol["summary"]["person"] == "Barack Obama"
    assert by_path["/v1/encode"][0]["key_name"] == "door 1" and by_path["/v1/encode"][0]["summary"] == {"faces": 1}
    assert any(e["status"] == 401 and e["key_name"] is None for e in entries)
    assert any(e["status"] == 403 and e["key_name"] == "door 1" for e in entries)
    assert any(e["status"] == 413 and e["path"] == "/v1/detect" for e in entries)  # refused uploads too
    state = server["settings"].state_path()
    dump = "\n".join(sqlite3.connect(state).iterdump())
    logs = caplog.text
    negatives = [json.dumps(v) for v in encoded if v < -0.01][:8]  # times and durations are positive
    assert negatives and not any(v in dump or v in logs for v in negatives)
    assert "encoding" not in dump and "landmarks" not in dump


# -- liveness ---------------------------------------------------------------------------------------

def test_liveness_on_a_photo(server, photos, passive_model):
    answer = post_image(server, "/v1/liveness", photos["obama"], field="media")
    assert answer.status_code == 200
    body = answer.json()
    assert body["decision"] in ("live", "attack") and 0 <= body["score"] <= 1 and "passive" in body["evidence"]
    blank = io.BytesIO()
    Image.new("RGB", (240, 240), (120, 140, 160)).save(blank, "PNG")
    none = post_image(server, "/v1/liveness", blank.getvalue(), field="media", name="wall.png").json()
    assert none["live"] is None and none["decision"] == "insufficient evidence" and "no face" in none["reason"]
    refused = post_image(server, "/v1/liveness", photos["obama"], field="media", challenge="blink")
    assert refused.status_code == 400 and "video" in refused.json()["detail"]
    wrong = post_image(server, "/v1/liveness", photos["obama"], field="media", challenge="dance")
    assert wrong.status_code == 400 and "turn_left" in wrong.json()["detail"]


def still_clip(photo: bytes, frames: int, path) -> bytes:
    """A video of a still photo drifting sideways: a print held up to the camera."""
    import cv2

    img = cv2.imdecode(np.frombuffer(photo, np.uint8), cv2.IMREAD_COLOR)
    h, w = img.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15, (w, h))
    for i in range(frames):
        shift = np.float32([[1, 0, (i % 5) - 2], [0, 1, 0]])
        writer.write(cv2.warpAffine(img, shift, (w, h), borderMode=cv2.BORDER_REPLICATE))
    writer.release()
    return path.read_bytes()


@pytest.mark.slow
def test_liveness_on_a_video_with_a_challenge(server, photos, passive_model, tmp_path):
    clip = still_clip(photos["obama2"], 14, tmp_path / "print.avi")
    answer = server["client"].post("/v1/liveness", headers=server["user"],
                                   files={"media": ("print.avi", clip, "video/x-msvideo")},
                                   data={"challenge": "turn_left,blink,turn_right"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["evidence"]["frames"]["total"] == 14 and body["source"] == "print.avi"
    # A still photo cannot answer the challenge (the fused verdict is the liveness module's to give).
    assert body["evidence"]["challenge"]["passed"] is False and body["evidence"]["challenge"]["llr"] < 0
    garbage = server["client"].post("/v1/liveness", headers=server["user"],
                                    files={"media": ("clip.mp4", b"\0" * 5000, "video/mp4")})
    assert garbage.status_code == 400 and "clip.mp4" in garbage.json()["detail"]


@pytest.mark.slow
def test_challenge_flow(server, photos, passive_model):
    client = server["client"]
    made = client.post("/v1/liveness/challenges", headers=server["user"]).json()
    assert len(made["actions"]) == 3 and {"turn_left", "turn_right"} <= set(made["actions"])
    cid = made["id"]
    assert client.post(f"/v1/liveness/challenges/{cid}/frames", headers=server["admin"],
                       files=[("frames", ("f.jpg", photos["obama2"], "image/jpeg"))]).status_code == 404  # not theirs
    bad = client.post(f"/v1/liveness/challenges/{cid}/frames", headers=server["user"],
                      files=[("frames", ("f.jpg", b"junk", "image/jpeg"))])
    assert bad.status_code == 400
    frame = photos["obama2"]
    for times in ("abc", "1,nan", "1,2,3"):  # not numbers, not finite, not one per frame: 400, never 500
        wrong = client.post(f"/v1/liveness/challenges/{cid}/frames", headers=server["user"], data={"times": times},
                            files=[("frames", (f"f{i}.jpg", frame, "image/jpeg")) for i in range(2)])
        assert wrong.status_code == 400, wrong.text
        assert "times" in wrong.json()["detail"]
    for batch in range(3):
        files = [("frames", (f"f{i}.jpg", frame, "image/jpeg")) for i in range(4)]
        times = ",".join(str(100.0 * (batch * 4 + i)) for i in range(4))
        sent = client.post(f"/v1/liveness/challenges/{cid}/frames", headers=server["user"], files=files,
                           data={"times": times})
        assert sent.status_code == 200, sent.text
    assert sent.json()["frames"] == 12
    verdict = client.post(f"/v1/liveness/challenges/{cid}/verdict", headers=server["user"])
    assert verdict.status_code == 200, verdict.text
    body = verdict.json()
    assert body["liveness"]["evidence"]["challenge"]["passed"] is False
    assert body["passed"] is False and body["admitted"] is False
    assert body["liveness"]["evidence"]["frames"]["fps"] == pytest.approx(10.0)
    assert len(body["faces"]) == 1 and body["faces"][0]["box"] and body["faces"][0]["name"] is None
    plain = post_image(server, "/v1/identify", frame).json()["faces"][0]
    names = [c["name"] for c in body["faces"][0]["candidates"]]
    assert names == [c["name"] for c in plain["candidates"]]  # matched as usual, but not let in
    assert body["frame_size"][0] <= server["settings"].max_frame_side
    again = client.post(f"/v1/liveness/challenges/{cid}/verdict", headers=server["user"])
    assert again.status_code == 404  # answered once


# -- style transfer jobs ----------------------------------------------------------------------------

@pytest.mark.slow
def test_style_job(server, photos, shared_data):
    client = server["client"]
    style = jpeg(shared_data / "style" / "style" / "starry_night.jpg", 96)
    files = {"content": ("c.jpg", photos["obama2"], "image/jpeg"), "style": ("s.jpg", style, "image/jpeg")}
    too_big = client.post("/v1/style", headers=server["user"], files=files, data={"size": "512"})
    assert too_big.status_code == 400 and "limit of 64" in too_big.json()["detail"]
    bad = client.post("/v1/style", headers=server["user"], data={"size": "32"},
                      files={"content": ("c.jpg", b"junk", "image/jpeg"), "style": ("s.jpg", style, "image/jpeg")})
    assert bad.status_code == 400 and "c.jpg" in bad.json()["detail"]
    started = client.post("/v1/style", headers=server["user"], files=files, data={"size": "32", "steps": "3"})
    assert started.status_code == 202, started.text
    job = started.json()
    queued = client.post("/v1/style", headers=server["user"], files=files, data={"size": "32", "steps": "3"}).json()
    assert job["status"] in ("queued", "running") and job["result_url"] is None
    early = client.get(f"/v1/jobs/{queued['id']}/result", headers=server["user"])
    assert early.status_code == 409
    cancelled = client.delete(f"/v1/jobs/{queued['id']}", headers=server["user"]).json()
    assert cancelled["status"] == "cancelled"
    assert client.get(f"/v1/jobs/{job['id']}", headers={"X-API-Key": _other_key(server)}).status_code == 404
    deadline = time.time() + 240
    while time.time() < deadline:
        status = client.get(f"/v1/jobs/{job['id']}", headers=server["user"]).json()
        if status["status"] not in ("queued", "running"):
            break
        time.sleep(0.5)
    assert status["status"] == "done", status
    assert status["progress"] == 1.0 and status["result_url"] == f"/v1/jobs/{job['id']}/result"
    result = client.get(status["result_url"], headers=server["user"])
    assert result.headers["content-type"] == "image/png"
    png = Image.open(io.BytesIO(result.content))
    assert max(png.size) == 32 and "visage:settings" in png.info
    assert client.get("/v1/jobs/doesnotexist", headers=server["user"]).status_code == 404


def _other_key(server) -> str:
    keys = KeyStore(server["settings"].state_path())
    try:
        return keys.create("someone else")
    finally:
        keys.close()


# -- CORS and encryption at rest ----------------------------------------------------------------------

def test_cors_is_off_by_default_and_can_be_allowed(server, tmp_path):
    preflight = {"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"}
    answer = server["client"].options("/v1/identify", headers=preflight)
    assert "access-control-allow-origin" not in answer.headers
    settings = ServerSettings(gallery=str(tmp_path / "g.db"), cors_origins="https://kiosk.example")
    with TestClient(create_app(settings)) as client:
        allowed = client.options("/v1/identify", headers={**preflight, "Origin": "https://kiosk.example"})
        assert allowed.headers["access-control-allow-origin"] == "https://kiosk.example"
        other = client.options("/v1/identify", headers=preflight)
        assert "access-control-allow-origin" not in other.headers


def test_encryption_at_rest(tmp_path, photos, monkeypatch):
    from visage.errors import GalleryError

    monkeypatch.setenv("VISAGE_GALLERY_KEY", "correct horse battery staple")
    settings = ServerSettings(gallery=str(tmp_path / "secret.db"), workers=1)
    keys = KeyStore(settings.state_path())
    admin = {"X-API-Key": keys.create("admin", admin=True)}
    keys.close()
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/enroll", headers=admin, data={"name": "Obama"},
                           files=[("photos", ("o.jpg", photos["obama"], "image/jpeg"))]).status_code == 200
        plain = np.asarray(post_image({"client": client, "user": admin}, "/v1/encode", photos["obama"])
                           .json()["faces"][0]["encoding"], np.float32)
        found = post_image({"client": client, "user": admin}, "/v1/identify", photos["obama3"]).json()
        assert found["faces"][0]["name"] == "Obama"
    db = sqlite3.connect(tmp_path / "secret.db")
    stored = db.execute("SELECT encoding FROM faces").fetchone()[0]
    db.close()
    assert len(stored) == plain.nbytes + 28 and plain.tobytes() not in stored  # AES-GCM: nonce, ciphertext, tag
    raw = b"".join(part.read_bytes() for part in tmp_path.glob("secret.db*"))
    assert b"o.jpg" not in raw  # the source file name is encrypted too (tests/test_server_crypto_rest.py)
    monkeypatch.setenv("VISAGE_GALLERY_KEY", "wrong key")
    with pytest.raises(GalleryError, match="wrong encryption key"):
        create_app(settings)
    monkeypatch.delenv("VISAGE_GALLERY_KEY")
    with pytest.raises(GalleryError, match="encrypted; set VISAGE_GALLERY_KEY"):
        create_app(settings)


def test_encryption_refuses_a_plain_gallery_with_faces(server, monkeypatch):
    from visage.errors import GalleryError

    monkeypatch.setenv("VISAGE_GALLERY_KEY", "late key")
    with pytest.raises(GalleryError, match="unencrypted encodings"):
        create_app(ServerSettings(gallery=server["settings"].gallery, state=str(server["folder"] / "other.db")))


# -- the CLI ------------------------------------------------------------------------------------------

def test_cli_creates_lists_and_revokes_keys(tmp_path, capsys):
    from visage.cli import main

    state = str(tmp_path / "state.db")
    assert main(["serve", "--state", state, "--create-key", "kiosk", "--admin"]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("vsk_")
    assert main(["serve", "--state", state, "--list-keys", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["name"] == "kiosk" and listed[0]["admin"] is True and key not in json.dumps(listed)
    store = KeyStore(state)
    assert store.authenticate(key).admin is True
    assert main(["serve", "--state", state, "--revoke-key", listed[0]["id"]]) == 0
    assert store.authenticate(key) is None
    store.close()
    assert main(["serve", "--state", state, "--admin"]) == 2
    # An empty name is a bad key request (exit 2), never a server start.
    assert main(["serve", "--state", state, "--create-key", ""]) == 2
    assert "a key needs a name" in capsys.readouterr().err


def test_serve_refuses_a_bad_port_or_one_in_use_in_one_line(tmp_path, capsys):
    import socket

    from visage.cli import main

    assert main(["serve", "--state", str(tmp_path / "s.db"), "--port", "70000"]) == 2
    err = capsys.readouterr().err
    assert "bad server setting: port" in err and "Traceback" not in err
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert main(["serve", "--state", str(tmp_path / "s.db"), "--gallery", str(tmp_path / "g.db"),
                     "--port", str(port)]) == 2
    out, err = capsys.readouterr()
    assert f"cannot listen on 127.0.0.1:{port}" in err and "serving on" not in out
