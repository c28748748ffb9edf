"""The server at scale: bounded admission to the models (503 + Retry-After), state shared by the
processes of one server (challenges, jobs), and ``visage serve --processes 2`` end to end.

The admission tests hold the models' turn from the test itself, so they assert what happens, never
how long it took.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from helpers import jpeg, start_serve, stop
from visage.server.challenges import ChallengesFull, ChallengeStore
from visage.server.jobs import JobQueue
from visage.server.service import ComputeSlot, Overloaded

pytest.importorskip("fastapi")


def hold(slot: ComputeSlot, kind: str = "identify"):
    """Take ``slot``'s turn on a thread until the returned event is set; returns (event, thread)."""
    taken, release = threading.Event(), threading.Event()

    def run():
        with slot.turn(kind):
            taken.set()
            release.wait(60)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert taken.wait(30)
    return release, thread


# -- 1. admission --------------------------------------------------------------------------------

def test_a_caller_that_would_wait_too_long_is_refused_at_once_with_a_retry_time():
    slot = ComputeSlot(max_wait=0.05, first_guess=5.0)  # every turn is expected to take 5 s
    release, thread = hold(slot)
    with pytest.raises(Overloaded, match="would wait about") as refused:
        with slot.turn("identify"):
            pytest.fail("admitted")
    assert refused.value.retry_after >= 1 and slot.refused == 1
    release.set()
    thread.join(30)
    with slot.turn("identify"):  # free again: admitted at once
        pass


def test_a_caller_whose_turn_does_not_come_within_the_bound_is_refused():
    slot = ComputeSlot(max_wait=0.05, first_guess=0.0001)  # the estimate admits; the turn never comes
    release, thread = hold(slot)
    with pytest.raises(Overloaded, match="without its turn coming"):
        with slot.turn("identify"):
            pytest.fail("admitted")
    release.set()
    thread.join(30)


def test_the_queue_has_a_length_bound():
    slot = ComputeSlot(max_wait=60, max_queue=1, first_guess=0.0001)
    release, holder = hold(slot)
    turns = []

    def wait_for_turn():
        with slot.turn():
            turns.append(1)

    waiter = threading.Thread(target=wait_for_turn, daemon=True)
    waiter.start()
    deadline = time.time() + 30
    while not slot._queued and time.time() < deadline:
        time.sleep(0.01)
    with pytest.raises(Overloaded):
        with slot.turn():
            pytest.fail("admitted")
    release.set()
    holder.join(30)
    waiter.join(30)
    assert turns == [1]  # the one that queued got its turn


def test_without_a_bound_callers_wait_their_turn():
    slot = ComputeSlot(max_wait=0, first_guess=100.0)
    release, holder = hold(slot)
    threading.Timer(0.1, release.set).start()
    with slot.turn():  # waits for the holder however long it is expected to take
        pass
    holder.join(30)
    assert slot.refused == 0


def test_the_slot_learns_the_time_per_unit_of_each_kind():
    slot = ComputeSlot(max_wait=1, first_guess=9.0)
    with slot.turn("enroll", units=4):
        time.sleep(0.02)
    assert slot.expected("enroll", 2) < 9.0  # learned from the turn, scaled by units
    assert slot.expected("identify") == slot.expected("enroll", 1)  # an unknown kind: the slowest known


def test_callers_queued_together_are_served_in_one_batch_each_with_its_own_result():
    slot = ComputeSlot(max_wait=60, first_guess=0.0001)
    batches = []

    def work(items):
        batches.append(list(items))
        return [ValueError(f"bad {i}") if i == 2 else i * 10 for i in items]

    release, holder = hold(slot)  # the models are busy: the callers below queue up
    results, errors = {}, {}

    def call(i):
        try:
            results[i] = slot.together("identify", i, work)
        except ValueError as exc:
            errors[i] = str(exc)

    callers = []
    for i in range(4):
        callers.append(threading.Thread(target=call, args=(i,), daemon=True))
        callers[-1].start()
        deadline = time.time() + 30
        while len(slot._queued) < i + 1 and time.time() < deadline:  # queued in this order
            time.sleep(0.01)
    release.set()
    for t in [holder, *callers]:
        t.join(30)
    assert batches == [[0, 1, 2, 3]]  # the first in line did everyone's work in its turn
    assert results == {0: 0, 1: 10, 3: 30} and errors == {2: "bad 2"}  # one failure is only its caller's
    assert slot.turns == 2 and not slot._queued and not slot._pending


@pytest.fixture(scope="module")
def photos(shared_data):
    faces = shared_data / "faces"
    return {"obama": jpeg(faces / "facerec__obama" / "obama.jpg"),
            "obama2": jpeg(faces / "facerec__obama" / "obama2.jpg"),
            "biden": jpeg(faces / "facerec__biden" / "biden2.jpg")}


def test_an_overloaded_server_answers_503_with_retry_after_and_writes_nothing(tmp_path, photos):
    from fastapi.testclient import TestClient

    from visage.server import ServerSettings, create_app
    from visage.server.auth import KeyStore

    settings = ServerSettings(gallery=str(tmp_path / "gallery.db"), rate_per_minute=10_000, rate_burst=1000,
                              max_wait_seconds=0.05)
    keys = KeyStore(settings.state_path())
    admin = {"X-API-Key": keys.create("desk", admin=True)}
    keys.close()
    with TestClient(create_app(settings)) as client:
        svc = client.app.state.service
        enrolled = client.post("/v1/enroll", headers=admin, data={"name": "Obama"},
                               files=[("photos", ("o.jpg", photos["obama"], "image/jpeg"))])
        assert enrolled.status_code == 200
        release, holder = hold(svc.compute)  # the models are busy with someone else's request
        try:
            busy = client.post("/v1/identify", headers=admin,
                               files={"image": ("p.jpg", photos["obama2"], "image/jpeg")})
            assert busy.status_code == 503 and int(busy.headers["retry-after"]) >= 1
            assert busy.headers["connection"] == "close"  # the retry may reach another worker process
            assert "capacity" in busy.json()["detail"]
            refused = client.post("/v1/enroll", headers=admin, data={"name": "Biden"},
                                  files=[("photos", ("b.jpg", photos["biden"], "image/jpeg"))])
            assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
            assert [p["name"] for p in client.get("/v1/people", headers=admin).json()] == ["Obama"]  # nothing half-written
        finally:
            release.set()
            holder.join(30)
        again = client.post("/v1/enroll", headers=admin, data={"name": "Biden"},  # the client's retry
                            files=[("photos", ("b.jpg", photos["biden"], "image/jpeg"))])
        assert again.status_code == 200 and again.json()["faces_added"] == 1
        found = client.post("/v1/identify", headers=admin, files={"image": ("p.jpg", photos["obama2"], "image/jpeg")})
        assert found.status_code == 200 and found.json()["faces"][0]["name"] == "Obama"
        statuses = [row["status"] for row in client.get("/v1/audit", headers=admin).json()]
        assert statuses.count(503) == 2

        # Identifications queued together are detected and encoded in one turn: each gets its own answer.
        svc.compute.max_wait = 60
        release, holder = hold(svc.compute)
        answers = {}

        def ask(label):
            answers[label] = client.post("/v1/identify", headers=admin,
                                         files={"image": ("p.jpg", photos[label], "image/jpeg")})

        askers = []
        for label in ("obama2", "biden", "obama"):
            askers.append(threading.Thread(target=ask, args=(label,), daemon=True))
            askers[-1].start()
            deadline = time.time() + 60
            while len(svc.compute._queued) < len(askers) and time.time() < deadline:
                time.sleep(0.01)
        turns = svc.compute.turns
        release.set()
        for t in [holder, *askers]:
            t.join(120)
        assert svc.compute.turns == turns + 2  # the holder's, then one for the three
        assert {k: [f["name"] for f in a.json()["faces"]] for k, a in answers.items()} == \
            {"obama2": ["Obama"], "biden": ["Biden"], "obama": ["Obama"]}


def test_a_verdict_refused_as_overloaded_leaves_the_challenge_open(tmp_path, photos):
    from fastapi.testclient import TestClient

    from visage.errors import ModelError
    from visage.liveness.passive import load_model
    from visage.server import ServerSettings, create_app
    from visage.server.auth import KeyStore

    try:
        load_model()
    except ModelError as exc:
        pytest.skip(f"no passive liveness model: {exc}")
    settings = ServerSettings(gallery=str(tmp_path / "gallery.db"), rate_per_minute=10_000, rate_burst=1000,
                              max_wait_seconds=0.05)
    keys = KeyStore(settings.state_path())
    user = {"X-API-Key": keys.create("door")}
    keys.close()
    with TestClient(create_app(settings)) as client:
        made = client.post("/v1/liveness/challenges", headers=user).json()
        files = [("frames", (f"f{i}.jpg", photos["obama"], "image/jpeg")) for i in range(3)]
        assert client.post(f"/v1/liveness/challenges/{made['id']}/frames", headers=user, files=files).status_code == 200
        release, holder = hold(client.app.state.service.compute)
        try:
            busy = client.post(f"/v1/liveness/challenges/{made['id']}/verdict", headers=user)
            assert busy.status_code == 503 and int(busy.headers["retry-after"]) >= 1
        finally:
            release.set()
            holder.join(30)
        judged = client.post(f"/v1/liveness/challenges/{made['id']}/verdict", headers=user)  # asked again
        assert judged.status_code == 200 and judged.json()["id"] == made["id"]
        assert client.post(f"/v1/liveness/challenges/{made['id']}/verdict", headers=user).status_code == 404


# -- 2. what the processes of one server share ---------------------------------------------------

def test_challenges_are_shared_through_the_file(tmp_path):
    path = tmp_path / "challenges.db"
    one = ChallengeStore(seconds=60, max_bytes=1000, max_total_bytes=1500, path=path)
    two = ChallengeStore(seconds=60, max_bytes=1000, max_total_bytes=1500, path=path)
    made = one.create("k")
    seen = two.get(made.id, "k")
    assert seen.actions == made.actions
    assert two.add_frames(seen, [b"x" * 800], [0.0]) == 1
    assert one.get(made.id, "k").frames == [b"x" * 800] and one.bytes_held == 800
    other = one.create("k2")
    with pytest.raises(ChallengesFull):  # the server-wide budget counts both stores' frames
        two.add_frames(two.get(other.id, "k2"), [b"y" * 800], [0.0])
    one.claim(one.get(made.id, "k"))
    with pytest.raises(Exception, match="already being judged"):
        two.claim(two.get(made.id, "k"))
    two.close(seen)
    with pytest.raises(Exception, match="no open challenge"):
        one.get(made.id, "k")
    assert one.bytes_held == 0
    assert (path.stat().st_mode & 0o777) == 0o600
    one.shutdown()
    two.shutdown()


def test_jobs_are_shared_through_the_file(tmp_path):
    path = tmp_path / "jobs.db"
    one, two = JobQueue(max_queued=2, ttl=60, path=path), JobQueue(max_queued=2, ttl=60, path=path)
    gate = threading.Event()

    def slow(job):
        for i in range(1000):
            job.report(i / 1000, f"step {i}")
            if gate.wait(0.01):
                break
        return b"painted", "image/png"

    job = one.submit("style", "me", slow)
    deadline = time.time() + 30
    while (two.get(job.id) or job).status != "running" and time.time() < deadline:
        time.sleep(0.01)
    assert two.get(job.id).status == "running"  # seen through the other queue
    gate.set()
    while not job.ended and time.time() < deadline:
        time.sleep(0.01)
    done = two.get(job.id)
    assert done.status == "done" and done.result == b"painted" and done.media_type == "image/png"

    gate.clear()
    stopped = one.submit("style", "me", slow)
    while (two.get(stopped.id) or stopped).status != "running" and time.time() < deadline:
        time.sleep(0.01)
    assert two.cancel(stopped.id).cancel_requested  # cancelled through the other queue...
    while not stopped.ended and time.time() < deadline:
        time.sleep(0.01)
    assert stopped.status == "cancelled" and two.get(stopped.id).status == "cancelled"  # ...stops where it runs
    one.shutdown()
    two.shutdown()


def test_a_job_whose_process_died_is_reported_failed(tmp_path):
    path = tmp_path / "jobs.db"
    one, two = JobQueue(path=path), JobQueue(path=path)
    gate = threading.Event()
    job = one.submit("style", "me", lambda j: (gate.wait(30), (b"", ""))[1])
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    with one._db_lock:  # as if the process that runs it had died
        one._db.execute("UPDATE jobs SET pid = ? WHERE id = ?", (int(gone.stdout), job.id))
    seen = two.get(job.id)
    assert seen.status == "failed" and "stopped" in seen.error
    gate.set()
    one.shutdown()
    two.shutdown()


# -- 3. visage serve --processes 2 ------------------------------------------------------------------

@pytest.mark.slow
def test_two_processes_serve_one_gallery_challenges_and_jobs(tmp_path, photos):
    import httpx

    from visage.server.auth import KeyStore

    keys = KeyStore(tmp_path / "server.db")
    admin = {"X-API-Key": keys.create("desk", admin=True)}
    user = {"X-API-Key": keys.create("door")}
    keys.close()
    server, url = start_serve(tmp_path, "--processes", "2", env={"VISAGE_SERVER_MAX_STYLE_SIZE": "64",
                                                                   "VISAGE_SERVER_RATE_PER_MINUTE": "100000",
                                                                   "VISAGE_SERVER_RATE_BURST": "10000"})
    try:
        # Each call below is a new connection, so the calls are spread over the two processes.
        enrolled = httpx.post(url + "/v1/enroll", headers=admin, data={"name": "Obama"}, timeout=120,
                              files=[("photos", ("o.jpg", photos["obama"], "image/jpeg"))])
        assert enrolled.status_code == 200, enrolled.text
        for _ in range(6):  # whichever process answers has seen the enrolment
            found = httpx.post(url + "/v1/identify", headers=user, timeout=120,
                               files={"image": ("p.jpg", photos["obama2"], "image/jpeg")})
            assert found.status_code == 200 and found.json()["faces"][0]["name"] == "Obama", found.text
        for _ in range(3):  # a challenge made through one process, fed and judged through others
            made = httpx.post(url + "/v1/liveness/challenges", headers=user, timeout=60).json()
            for i in range(3):
                sent = httpx.post(f"{url}/v1/liveness/challenges/{made['id']}/frames", headers=user, timeout=60,
                                  files=[("frames", (f"f{i}.jpg", photos["obama2"], "image/jpeg"))])
                assert sent.status_code == 200 and sent.json()["frames"] == i + 1, sent.text
            verdict = httpx.post(f"{url}/v1/liveness/challenges/{made['id']}/verdict", headers=user, timeout=120)
            assert verdict.status_code == 200 and verdict.json()["id"] == made["id"], verdict.text
            again = httpx.post(f"{url}/v1/liveness/challenges/{made['id']}/verdict", headers=user, timeout=60)
            assert again.status_code == 404  # answered once, in every process
        job = httpx.post(url + "/v1/style", headers=user, data={"size": "32", "steps": "1"}, timeout=60,
                         files={"content": ("c.jpg", photos["obama"], "image/jpeg"),
                                "style": ("s.jpg", photos["biden"], "image/jpeg")})
        assert job.status_code == 202, job.text
        deadline = time.time() + 300
        while time.time() < deadline:
            status = httpx.get(f"{url}/v1/jobs/{job.json()['id']}", headers=user, timeout=60).json()
            if status["status"] in ("done", "failed", "cancelled"):
                break
            time.sleep(0.5)
        assert status["status"] == "done", status
        for _ in range(4):
            result = httpx.get(f"{url}/v1/jobs/{job.json()['id']}/result", headers=user, timeout=60)
            assert result.status_code == 200 and result.content.startswith(b"\x89PNG")
        removed = httpx.delete(url + "/v1/people/Obama", headers=admin, timeout=60)
        assert removed.status_code == 200
        for _ in range(4):
            gone = httpx.post(url + "/v1/identify", headers=user, timeout=120,
                              files={"image": ("p.jpg", photos["obama2"], "image/jpeg")})
            assert gone.status_code == 200 and gone.json()["faces"][0]["name"] is None
        time.sleep(2.5)  # each process shares its counts a second after its last request
        page = httpx.get(url + "/metrics", headers=admin, timeout=60).text
        assert 'visage_requests_total{route="/v1/identify",method="POST",status="200"} 10' in page, page
        assert "visage_processes 2" in page, page
    finally:
        code = stop(server)
    log = (tmp_path / "serve.log").read_text()
    assert code == 0, log
    assert "with 2 processes" in log
    assert log.count("Application startup complete") == 2  # two workers served
