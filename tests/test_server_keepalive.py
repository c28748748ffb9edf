"""Keep-alive connections survive every handled error (issue 14, defects 7 and 8).

A real uvicorn on 127.0.0.1 (a thread) and one httpx.Client, which keeps its connection between
requests: after a 500 from an unexpected exception, a refusal sent before the body was read, or an
audit row lost to a full disk, the client's next request must simply work.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from visage.server import ServerSettings, create_app  # noqa: E402
from visage.server.auth import KeyStore  # noqa: E402

LIMIT = 20_000  # bytes a request body may have here


def eventually(check, seconds: float = 10.0) -> None:
    """Wait for ``check()``: the audit row is written after the answer has gone."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def live(tmp_path):
    uvicorn = pytest.importorskip("uvicorn")
    settings = ServerSettings(gallery=str(tmp_path / "gallery.db"), workers=1, rate_per_minute=100_000,
                              rate_burst=10_000, max_request_bytes=LIMIT)
    keys = KeyStore(settings.state_path())
    key = keys.create("admin", admin=True)
    keys.close()
    app = create_app(settings)

    @app.get("/v1/crash")
    def crash():  # a bug: an exception no handler knows
        raise RuntimeError("an unexpected failure")

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="critical", log_config=None,
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": key}, timeout=30) as client:
        yield client, app.state.service
    server.should_exit = True
    thread.join(30)


def test_after_a_500_the_next_request_on_the_connection_works(live, caplog):
    client, _ = live
    with caplog.at_level(logging.ERROR, logger="visage.server"):
        for _ in range(10):
            crashed = client.get("/v1/crash")
            assert crashed.status_code == 500 and crashed.headers["connection"] == "close"
            assert crashed.json() == {"detail": "internal error (RuntimeError); see the server log"}
            assert "an unexpected failure" not in crashed.text  # no internals in the answer
            following = client.get("/v1/key")
            assert following.status_code == 200, following.text
    logged = [r for r in caplog.records if r.name == "visage.server" and "internal error on GET /v1/crash" in
              r.getMessage()]
    assert len(logged) == 10 and all(r.exc_info and r.exc_info[0] is RuntimeError for r in logged)


def test_refusals_before_the_body_is_read_close_the_connection(live):
    client, _ = live
    for _ in range(10):
        unkeyed = client.post("/v1/detect", content=b"x" * 5000, headers={"X-API-Key": "vsk_wrong",
                                                                          "Content-Type": "image/jpeg"})
        assert unkeyed.status_code == 401 and unkeyed.headers["connection"] == "close"
        assert client.get("/v1/key").status_code == 200
        oversized = client.post("/v1/detect", content=b"x" * (LIMIT + 1), headers={"Content-Type": "image/jpeg"})
        assert oversized.status_code == 413 and oversized.headers["connection"] == "close"
        assert client.get("/v1/key").status_code == 200


def test_a_full_disk_under_the_audit_log_loses_rows_not_answers(live, caplog):
    client, service = live
    audit = service.audit
    pages = audit._db.execute("PRAGMA page_count").fetchone()[0]
    audit._db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite now reports SQLITE_FULL, as on a full disk
    try:
        with caplog.at_level(logging.WARNING, logger="visage.server"):
            for _ in range(80):  # a page holds a few dozen rows: the disk fills up on the way
                answer = client.get("/v1/key")
                assert answer.status_code == 200 and answer.json()["name"] == "admin"
        assert audit.skipped > 0
        full = [r for r in caplog.records if "audit rows are not being written" in r.getMessage()]
        assert len(full) == 1 and "database or disk is full" in full[0].getMessage() and not full[0].exc_info
    finally:
        audit._db.execute("PRAGMA max_page_count = 1073741823")
    with caplog.at_level(logging.WARNING, logger="visage.server"):
        assert client.get("/v1/people").status_code == 200
        eventually(lambda: audit.skipped == 0)
    assert any("were skipped while the disk was full" in r.getMessage() for r in caplog.records)
    eventually(lambda: audit.latest(1)[0]["path"] == "/v1/people")


def test_any_other_audit_failure_is_logged_and_the_connection_kept(live, caplog, monkeypatch):
    client, service = live

    def locked(**row):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(service.audit, "write", locked)
    with caplog.at_level(logging.ERROR, logger="visage.server"):
        for _ in range(10):
            answer = client.get("/v1/key")
            assert answer.status_code == 200 and "connection" not in answer.headers  # kept alive

        def logged():
            return [r for r in caplog.records if "could not write the audit row of GET /v1/key" in r.getMessage()]

        eventually(lambda: len(logged()) == 10)
    assert logged()[0].exc_info[0] is sqlite3.OperationalError
