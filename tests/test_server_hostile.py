"""The server against hostile clients: bodies over the size limit whatever the headers say, key-less
floods (checked before the body is read, throttled per address), and an audit log that stays bounded."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import threading
import time

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from visage.server import ServerSettings, create_app
from visage.server.audit import FIELD_CHARS, SUMMARY_CHARS, AuditLog
from visage.server.auth import KeyStore
from visage.server.limits import BodySizeLimit

LIMIT = 64 * 1024
CHUNK = 16 * 1024
#: The start of a multipart upload of one file field, so that the app reads on into the file.
PART = b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n'


def settings_for(folder, **changes) -> ServerSettings:
    return ServerSettings(gallery=str(folder / "gallery.db"), **{"max_request_bytes": LIMIT, **changes})


def make_key(settings: ServerSettings, admin: bool = False) -> str:
    keys = KeyStore(settings.state_path())
    try:
        return keys.create("tester", admin=admin)
    finally:
        keys.close()


class Client:
    """An ASGI client by hand: a body in chunks, counting what the app pulls, and what it answers."""

    def __init__(self, chunks: int, headers: list[tuple[bytes, bytes]], path: str = "/v1/detect",
                 method: str = "POST"):
        self.chunks, self.pulled, self.sent = chunks, 0, []
        self.scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(),
                      "query_string": b"", "headers": headers, "client": ("10.0.0.1", 5000),
                      "server": ("test", 80), "scheme": "http", "http_version": "1.1", "root_path": ""}

    async def receive(self):
        if self.pulled >= self.chunks:
            await asyncio.sleep(3600)  # the client has nothing more: a server waiting here hangs
        self.pulled += 1
        body = PART + b"x" * (CHUNK - len(PART)) if self.pulled == 1 else b"x" * CHUNK
        return {"type": "http.request", "body": body, "more_body": self.pulled < self.chunks}

    async def send(self, message):
        self.sent.append(message)

    def run(self, app):
        asyncio.run(asyncio.wait_for(app(self.scope, self.receive, self.send), 30))
        return self

    @property
    def status(self) -> int:
        return next(m["status"] for m in self.sent if m["type"] == "http.response.start")

    @property
    def response_headers(self) -> dict[bytes, bytes]:
        return dict(next(m["headers"] for m in self.sent if m["type"] == "http.response.start"))


CHUNKED = [(b"transfer-encoding", b"chunked"), (b"content-length", b"100"),
           (b"content-type", b"multipart/form-data; boundary=xyz")]


# -- body size ------------------------------------------------------------------------------------

def test_size_limit_counts_bytes_whatever_content_length_says():
    async def reads_everything(scope, receive, send):
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"read it all"})

    client = Client(chunks=1000, headers=CHUNKED).run(BodySizeLimit(reads_everything, max_bytes=LIMIT))
    assert client.status == 413
    assert client.pulled * CHUNK <= LIMIT + CHUNK  # reading stopped at the chunk that passed the limit
    assert client.response_headers[b"connection"] == b"close"
    assert b"read it all" not in b"".join(m.get("body", b"") for m in client.sent)


def test_size_limit_lets_a_body_under_the_limit_through():
    async def echo_size(scope, receive, send):
        size, more = 0, True
        while more:
            message = await receive()
            size, more = size + len(message["body"]), message["more_body"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(size).encode()})

    client = Client(chunks=3, headers=CHUNKED).run(BodySizeLimit(echo_size, max_bytes=LIMIT))
    assert client.status == 200 and client.sent[-1]["body"] == str(3 * CHUNK).encode()


def test_the_app_answers_413_to_an_oversized_chunked_upload_with_a_key(tmp_path):
    settings = settings_for(tmp_path)
    key = make_key(settings)
    client = Client(chunks=1000, headers=CHUNKED + [(b"x-api-key", key.encode())]).run(create_app(settings))
    assert client.status == 413, client.sent
    assert client.pulled * CHUNK <= LIMIT + CHUNK


@pytest.fixture
def live_server(tmp_path):
    """The app under a real uvicorn on 127.0.0.1 (a thread), counting the body bytes uvicorn hands over."""
    uvicorn = pytest.importorskip("uvicorn")
    settings = settings_for(tmp_path)
    key = make_key(settings)
    app = create_app(settings)
    handed_over = [0]

    async def counting(scope, receive, send):
        async def counted():
            message = await receive()
            handed_over[0] += len(message.get("body", b""))
            return message
        await app(scope, counted, send)

    server = uvicorn.Server(uvicorn.Config(counting, host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield {"port": port, "key": key, "handed_over": handed_over}
    server.should_exit = True
    thread.join(10)


def send_chunked(port: int, headers: str, total: int) -> tuple[bytes, int]:
    """POST ``total`` bytes as a chunked body (with a small, false Content-Length); returns the
    answer and how many body bytes the socket took before the server stopped reading."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall((f"POST /v1/detect HTTP/1.1\r\nHost: x\r\n{headers}Transfer-Encoding: chunked\r\n"
                  "Content-Length: 100\r\nContent-Type: multipart/form-data; boundary=xyz\r\n\r\n").encode())
    answer, taken = [], 0

    def read():
        try:
            while data := sock.recv(65536):
                answer.append(data)
        except OSError:
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    chunk = b"%x\r\n%s\r\n" % (CHUNK, b"x" * CHUNK)
    try:
        sock.sendall(b"%x\r\n%s\r\n" % (len(PART), PART))
        while taken < total:
            sock.sendall(chunk)
            taken += CHUNK
    except OSError:  # the server closed the connection: it will read no more
        pass
    reader.join(10)
    sock.close()
    return b"".join(answer), taken


def test_a_real_server_answers_413_and_stops_reading_a_chunked_body(live_server):
    total = 256 * 1024 * 1024
    answer, taken = send_chunked(live_server["port"], f"X-API-Key: {live_server['key']}\r\n", total)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # uvicorn hands the body over in pieces of up to its 64 KiB high-water mark (and a little more)
    assert live_server["handed_over"][0] <= LIMIT + 64 * 1024 + 2 * CHUNK
    assert taken < total  # the connection was closed long before the body ended


def test_a_real_server_reads_no_body_without_a_key(live_server):
    total = 256 * 1024 * 1024
    answer, taken = send_chunked(live_server["port"], "", total)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert live_server["handed_over"][0] == 0
    assert taken < total


# -- requests without a key -----------------------------------------------------------------------

def test_the_key_is_checked_before_the_upload_is_read(tmp_path):
    settings = settings_for(tmp_path, max_request_bytes=100 * 1024 * 1024)
    client = Client(chunks=100, headers=CHUNKED).run(create_app(settings))
    assert client.status == 401 and client.pulled == 0
    assert client.response_headers[b"www-authenticate"] == b"Bearer"
    bad_key = Client(chunks=100, headers=CHUNKED + [(b"authorization", b"Bearer vsk_0000_nope")])
    assert bad_key.run(create_app(settings)).status == 401 and bad_key.pulled == 0


def test_key_less_requests_are_throttled_per_address_and_not_all_audited(tmp_path):
    settings = settings_for(tmp_path, rate_per_minute=60, rate_burst=5)
    key = make_key(settings)
    with TestClient(create_app(settings)) as client:
        started = time.perf_counter()
        codes = [client.post("/v1/detect", files={"image": ("a.jpg", b"x" * 1000)}).status_code for _ in range(8)]
        assert time.perf_counter() - started < 5
        assert codes == [401] * 5 + [429] * 3
        limited = client.get("/v1/people")
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert "without a valid API key" in limited.json()["detail"]
        # a valid key has its own allowance, not the address's
        assert client.get("/v1/key", headers={"X-API-Key": key}).status_code == 200
    db = sqlite3.connect(settings.state_path())
    statuses = [s for (s,) in db.execute("SELECT status FROM audit WHERE key_id IS NULL")]
    db.close()
    assert statuses.count(401) == 5 and 429 not in statuses  # the flood beyond the limit leaves no rows


def test_a_key_over_its_rate_is_refused_before_its_upload_is_read(tmp_path):
    settings = settings_for(tmp_path, rate_per_minute=1, rate_burst=1)
    key = make_key(settings)
    app = create_app(settings)
    headers = CHUNKED + [(b"x-api-key", key.encode())]
    assert Client(chunks=1, headers=headers, path="/v1/key", method="GET").run(app).status == 200
    limited = Client(chunks=100, headers=headers).run(app)
    assert limited.status == 429 and limited.pulled == 0 and int(limited.response_headers[b"retry-after"]) >= 1


# -- the audit log --------------------------------------------------------------------------------

def test_audit_rows_are_capped(tmp_path):
    log = AuditLog(tmp_path / "state.db")
    log.write(key_id=None, key_name="n" * 10_000, client="c" * 10_000, method="M" * 1000, path="/v1/" + "p" * 100_000,
              status=401, ms=1.0, summary={"person": "x" * 100_000, "many": ["y" * 300] * 1000})
    row = log.latest(1)[0]
    assert len(row["path"]) == FIELD_CHARS["path"] and len(row["key_name"]) == FIELD_CHARS["key_name"]
    assert len(row["client"]) <= FIELD_CHARS["client"] and len(row["method"]) <= FIELD_CHARS["method"]
    assert len(json.dumps(row["summary"])) <= SUMMARY_CHARS + 100  # still JSON, and short
    small = {"person": "Ada", "faces": 2}
    log.write(key_id="k", key_name="k", client="1.2.3.4", method="GET", path="/v1/people", status=200, ms=1.0,
              summary=small)
    assert log.latest(1)[0]["summary"] == small  # rows that fit are kept as they are
    log.close()


def test_old_audit_rows_go_on_opening_and_every_nth_write(tmp_path):
    path = tmp_path / "state.db"
    log = AuditLog(path, keep_days=0)
    for _ in range(3):
        log.write(key_id=None, key_name=None, client=None, method="GET", path="/v1/x", status=401, ms=1.0)
    log.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE audit SET time = time - 100 * 86400 WHERE id <= 2")  # two rows 100 days old
    db.commit()
    db.close()
    assert len(AuditLog(path, keep_days=0).latest()) == 3  # 0: kept for ever
    log = AuditLog(path, keep_days=90, prune_every=2)
    assert [r["id"] for r in log.latest()] == [3]
    assert log.prune(now=time.time() + 91 * 86400) == 1
    log.write(key_id=None, key_name=None, client=None, method="GET", path="/v1/x", status=401, ms=1.0)
    assert log.write(key_id=None, key_name=None, client=None, method="GET", path="/v1/x", status=401, ms=1.0)
    log.close()


def test_the_gallery_audit_log_is_capped_and_pruned(tmp_path):
    from visage.gallery.store import SQLiteStore, prune_audit

    store = SQLiteStore(tmp_path / "gallery.db")
    store.log("identify", "a" * 64, "s" * 10_000, {"faces": [{"name": "n" * 10_000}] * 100})
    store.log("verify", "b" * 64, "photo.jpg", {"claim": "Ada", "accepted": True})
    rows = store.audit()
    assert rows[0]["result"] == {"claim": "Ada", "accepted": True}
    assert len(rows[1]["source"]) <= 300 and len(json.dumps(rows[1]["result"])) <= 4100
    store._db.execute("UPDATE audit SET time = time - 100 * 86400 WHERE operation = 'identify'")
    assert prune_audit(store, 0) == 0
    assert prune_audit(store, 90) == 1
    assert [r["operation"] for r in store.audit()] == ["verify"]
    store.close()


def test_the_server_prunes_the_gallery_audit_log_at_start(tmp_path):
    from visage.gallery.store import SQLiteStore

    store = SQLiteStore(tmp_path / "gallery.db")
    store.log("identify", None, None, {"faces": []})
    store._db.execute("UPDATE audit SET time = time - 100 * 86400")
    store.close()
    with TestClient(create_app(settings_for(tmp_path, audit_days=30))):
        pass
    store = SQLiteStore(tmp_path / "gallery.db")
    assert store.audit() == []
    store.close()
