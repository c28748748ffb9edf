"""``GET /healthz`` (no key, no details) and ``GET /metrics`` (admin key, Prometheus text): what
each answers, that requests are counted under their route template, and that the counts of the
server's processes are summed."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image

from visage.server.metrics import BUCKETS, Metrics, render

pytest.importorskip("fastapi")


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the sample ``name{labels}`` in a Prometheus text page; fails if absent."""
    inner = ",".join(f'{key}="{value}"' for key, value in labels.items())
    pattern = "^" + re.escape(name + (f"{{{inner}}}" if labels else "")) + r" (\S+)$"
    found = re.search(pattern, text, re.MULTILINE)
    assert found, f"no sample {name}{labels} in:\n{text}"
    return float(found.group(1))


@pytest.fixture
def server(tmp_path):
    from fastapi.testclient import TestClient

    from visage.server import ServerSettings, create_app
    from visage.server.auth import KeyStore

    settings = ServerSettings(gallery=str(tmp_path / "gallery.db"), rate_per_minute=10_000, rate_burst=1000,
                              max_wait_seconds=0.05)
    keys = KeyStore(settings.state_path())
    admin, user = {"X-API-Key": keys.create("desk", admin=True)}, {"X-API-Key": keys.create("door")}
    keys.close()
    with TestClient(create_app(settings)) as client:
        yield client, admin, user, str(tmp_path)


def test_healthz_needs_no_key_and_tells_nothing_about_the_server(server):
    client, _, _, folder = server
    answer = client.get("/healthz")
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}
    assert folder not in answer.text and "version" not in answer.text


def test_metrics_needs_an_admin_key(server):
    client, admin, user, _ = server
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=user).status_code == 403
    page = client.get("/metrics", headers=admin)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/plain; version=0.0.4")


def test_requests_are_counted_by_route_template_and_status_with_their_latency(server):
    from skimage import data

    client, admin, _, _ = server
    for _ in range(3):
        assert client.get("/v1/people", headers=admin).status_code == 200
    assert client.get("/v1/people").status_code == 401
    assert client.get("/v1/people/nobody", headers=admin).status_code == 404
    photo = io.BytesIO()
    Image.fromarray(data.astronaut()).save(photo, "JPEG")
    found = client.post("/v1/identify", headers=admin, files={"image": ("a.jpg", photo.getvalue(), "image/jpeg")})
    assert found.status_code == 200

    page = client.get("/metrics", headers=admin).text
    assert sample(page, "visage_requests_total", route="/v1/people", method="GET", status="200") == 3
    assert sample(page, "visage_requests_total", route="/v1/people/{name:path}", method="GET", status="404") == 1
    # A refusal before routing is counted, never under its raw path (labels an attacker could multiply).
    assert sample(page, "visage_requests_total", route="unrouted", method="GET", status="401") == 1
    assert "/v1/people/nobody" not in page
    assert sample(page, "visage_request_seconds_count", route="/v1/people") == 3
    assert sample(page, "visage_request_seconds_bucket", route="/v1/people", le="+Inf") == 3
    assert sample(page, "visage_request_seconds_count", route="/v1/identify") == 1
    assert sample(page, "visage_request_seconds_sum", route="/v1/identify") > 0
    assert sample(page, "visage_model_turns_total") >= 1
    assert sample(page, "visage_queue_depth") == 0 and sample(page, "visage_processes") == 1


def test_a_refusal_for_capacity_is_counted(server):
    import threading

    from skimage import data

    client, admin, _, _ = server
    compute = client.app.state.service.compute
    taken, release = threading.Event(), threading.Event()

    def busy():
        with compute.turn("identify"):
            taken.set()
            release.wait(60)

    holder = threading.Thread(target=busy, daemon=True)
    holder.start()
    assert taken.wait(30)
    photo = io.BytesIO()
    Image.fromarray(data.astronaut()).save(photo, "JPEG")
    try:
        refused = client.post("/v1/identify", headers=admin, files={"image": ("a.jpg", photo.getvalue(), "image/jpeg")})
        assert refused.status_code == 503
        page = client.get("/metrics", headers=admin).text
    finally:
        release.set()
        holder.join(30)
    assert sample(page, "visage_refused_total") == 1
    assert sample(page, "visage_models_busy") == 1
    assert sample(page, "visage_requests_total", route="/v1/identify", method="POST", status="503") == 1


def test_the_counts_of_every_live_process_are_summed(tmp_path):
    path = tmp_path / "metrics.db"
    here = Metrics(path, gauges=lambda: {"visage_queue_depth": 2})
    other = Metrics(path, gauges=lambda: {"visage_queue_depth": 1})
    here.observe("/v1/identify", "POST", 200, 0.3)
    other.observe("/v1/identify", "POST", 200, 7.0)
    other.observe("/v1/people", "GET", 200, 0.01)
    other.flush()
    # The other process's snapshot is filed under its own pid; stand one up that is alive (ours'
    # parent) and one that is gone, whose counts must not be summed.
    import json
    import os

    snapshot = json.dumps(other.snapshot())
    with other._db_lock:
        other._db.execute("DELETE FROM metrics")
        other._db.execute("INSERT INTO metrics VALUES (?, 0, ?)", (os.getppid(), snapshot))
        other._db.execute("INSERT INTO metrics VALUES (?, 0, ?)", (2**22 + 12345, snapshot))  # beyond pid_max
        other._db.commit()
    totals = here.collect()
    assert totals["processes"] == 2
    page = render(totals)
    assert sample(page, "visage_requests_total", route="/v1/identify", method="POST", status="200") == 2
    assert sample(page, "visage_requests_total", route="/v1/people", method="GET", status="200") == 1
    assert sample(page, "visage_queue_depth") == 3
    # 0.3 s falls in the 0.5 s bucket, 7 s only under 10 s: buckets are cumulative.
    assert sample(page, "visage_request_seconds_bucket", route="/v1/identify", le="0.25") == 0
    assert sample(page, "visage_request_seconds_bucket", route="/v1/identify", le="0.5") == 1
    assert sample(page, "visage_request_seconds_bucket", route="/v1/identify", le=str(BUCKETS[-1])) == 2
    assert sample(page, "visage_request_seconds_sum", route="/v1/identify") == pytest.approx(7.3)
    here.close()
    other.close()
