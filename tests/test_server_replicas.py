"""Beyond one machine: N ``visage serve`` replicas over one gallery.

Locally: two separate ``visage serve`` processes (two ports, as two machines behind a load balancer
would be) over one SQLite gallery file and one state file. An enrolment through one replica is
identified through the other, and a removal through one is gone through the other. (Milvus Lite
cannot be shared: its file is opened by one process only; a Milvus server or cluster can, and is the
deployment for replicas on several machines: see docs/service.md.)
"""

from __future__ import annotations

import signal

import pytest

from helpers import jpeg, start_serve

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")


def identify(url: str, key: dict, photo: bytes) -> str | None:
    answer = httpx.post(url + "/v1/identify", headers=key, timeout=120,
                        files={"image": ("probe.jpg", photo, "image/jpeg")})
    assert answer.status_code == 200, answer.text
    return answer.json()["faces"][0]["name"]


@pytest.mark.slow
def test_an_enrolment_through_one_replica_is_identified_through_the_other(tmp_path, shared_data):
    from visage.server.auth import KeyStore

    faces = shared_data / "faces"
    obama, obama2 = jpeg(faces / "facerec__obama" / "obama.jpg"), jpeg(faces / "facerec__obama" / "obama2.jpg")
    biden = jpeg(faces / "facerec__biden" / "biden2.jpg")
    keys = KeyStore(tmp_path / "server.db")  # the replicas share the keys (and the audit log)
    admin = {"X-API-Key": keys.create("desk", admin=True)}
    keys.close()
    (a, url_a), (b, url_b) = (start_serve(tmp_path, "--processes", "1", name=name) for name in "ab")
    try:
        assert identify(url_b, admin, obama2) is None  # B has loaded its index: nobody yet
        enrolled = httpx.post(url_a + "/v1/enroll", headers=admin, data={"name": "Obama"}, timeout=120,
                              files=[("photos", ("o.jpg", obama, "image/jpeg"))])
        assert enrolled.status_code == 200, enrolled.text
        assert identify(url_b, admin, obama2) == "Obama"  # B's index followed A's write
        more = httpx.post(url_b + "/v1/enroll", headers=admin, data={"name": "Biden"}, timeout=120,
                          files=[("photos", ("b.jpg", biden, "image/jpeg"))])
        assert more.status_code == 200, more.text
        assert sorted(p["name"] for p in httpx.get(url_a + "/v1/people", headers=admin).json()) == ["Biden", "Obama"]
        renamed = httpx.patch(url_b + "/v1/people/Obama", headers=admin, json={"new_name": "Barack Obama"})
        assert renamed.status_code == 200, renamed.text
        assert identify(url_a, admin, obama2) == "Barack Obama"
        assert httpx.delete(url_a + "/v1/people/Barack Obama", headers=admin).status_code == 200
        assert identify(url_b, admin, obama2) is None  # removed through A: gone through B
        assert [p["name"] for p in httpx.get(url_b + "/v1/people", headers=admin).json()] == ["Biden"]
        # One audit log: B's reading holds A's requests.
        paths = {(row["method"], row["path"]) for row in httpx.get(url_b + "/v1/audit?limit=50", headers=admin).json()}
        assert ("POST", "/v1/enroll") in paths and ("DELETE", "/v1/people/Barack Obama") in paths
    finally:
        for server in (a, b):
            server.send_signal(signal.SIGTERM)
        codes = [server.wait(90) for server in (a, b)]
    # uvicorn finishes the requests in flight, then ends by the signal it was sent (-SIGTERM).
    assert all(code in (0, -signal.SIGTERM) for code in codes), codes


def test_a_milvus_lite_gallery_is_served_by_one_process_only(tmp_path):
    from visage.errors import InvalidArgument
    from visage.server import ServerSettings

    lite = f"milvus-lite:{tmp_path / 'g.milvus.db'}"
    assert ServerSettings(gallery=lite).process_count() == 1
    with pytest.raises(InvalidArgument, match="one process only"):
        ServerSettings(gallery=lite, processes=2).process_count()
    assert ServerSettings(gallery=str(tmp_path / "g.db"), processes=3).process_count() == 3
