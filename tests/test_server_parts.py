"""The server's parts on their own: rate limiter, job queue, challenge store, encrypted store."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from visage.errors import ChallengeError, GalleryError
from visage.gallery.types import FaceRecord
from visage.server.challenges import ChallengeStore
from visage.server.crypto import EncryptedStore, open_encrypted_or_plain
from visage.server.jobs import JobQueue, QueueFull
from visage.server.limits import RateLimiter


def test_rate_limiter_refills_at_the_set_rate():
    limiter = RateLimiter(per_minute=60, burst=3)  # one a second, three at once
    assert [limiter.take("k", now=100.0) for _ in range(3)] == [0, 0, 0]
    assert limiter.take("k", now=100.0) == pytest.approx(1.0)
    assert limiter.take("k", now=100.5) == pytest.approx(0.5)
    assert limiter.take("k", now=101.01) == 0
    assert limiter.take("other", now=101.01) == 0
    assert limiter.take("k", now=1000.0) == 0  # never more than the burst is saved up
    assert [limiter.take("k", now=1000.0) for _ in range(3)][-1] > 0


def test_job_queue_runs_in_order_reports_progress_and_cancels():
    jobs = JobQueue(max_queued=1, ttl=60)
    gate = threading.Event()

    def slow(job):
        for i in range(100):
            job.report(i / 100, f"step {i}")
            if gate.wait(0.01):
                break
        return b"done", "text/plain"

    first = jobs.submit("test", "me", slow)
    deadline = time.time() + 10
    while first.status != "running" and time.time() < deadline:
        time.sleep(0.01)
    second = jobs.submit("test", "me", lambda job: (b"second", "text/plain"))
    with pytest.raises(QueueFull, match="limit is 1"):
        jobs.submit("test", "me", lambda job: (b"", ""))
    assert jobs.cancel(second.id).status == "cancelled"
    gate.set()
    while not first.ended and time.time() < deadline:
        time.sleep(0.01)
    assert first.status == "done" and first.result == b"done" and first.progress == 1.0
    failing = jobs.submit("test", "me", lambda job: (_ for _ in ()).throw(RuntimeError("boom")))
    while not failing.ended and time.time() < deadline:
        time.sleep(0.01)
    assert failing.status == "failed" and failing.error == "internal error (RuntimeError)"
    jobs.shutdown()
    with pytest.raises(QueueFull, match="shutting down"):
        jobs.submit("test", "me", slow)


def test_challenge_store_bounds():
    store = ChallengeStore(seconds=60, max_open=2, max_frames=3)
    a = store.create("key-a")
    assert len(a.actions) == 3
    store.create("key-a")
    with pytest.raises(ChallengeError, match="limit is 2"):
        store.create("key-b")
    with pytest.raises(ChallengeError, match="no open challenge"):
        store.get(a.id, "key-b")
    assert store.add_frames(a, [b"1", b"2"], [0.0, 100.0]) == 2
    with pytest.raises(ChallengeError, match="at most 3 frames"):
        store.add_frames(a, [b"3", b"4"], [200.0, 300.0])
    assert a.fps() == pytest.approx(10.0)
    store.claim(a)
    with pytest.raises(ChallengeError, match="already being judged"):
        store.claim(a)
    with pytest.raises(ChallengeError, match="takes no more frames"):
        store.add_frames(a, [b"3"], [200.0])
    store.close(a)
    with pytest.raises(ChallengeError):
        store.get(a.id, "key-a")
    expiring = ChallengeStore(seconds=0.01)
    gone = expiring.create("k")
    time.sleep(0.05)
    with pytest.raises(ChallengeError):
        expiring.get(gone.id, "k")


def test_encrypted_store_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3, 128)).astype(np.float32)
    store = EncryptedStore(tmp_path / "g.db", "pass phrase")
    store.add("Ada", [FaceRecord(v, f"sha{i}", f"ada{i}.jpg") for i, v in enumerate(vectors)], "dlib", 128)
    assert np.array_equal(np.stack([f.record.encoding for f in store.faces("Ada")]), vectors)
    raw = store._db.execute("SELECT encoding FROM faces ORDER BY id").fetchone()[0]
    assert len(raw) == 128 * 4 + 28 and vectors[0].tobytes() not in raw  # a nonce, the ciphertext, a tag
    from visage.gallery.store import Cursor

    changes = store.changes(Cursor())
    assert np.array_equal(changes.vectors, vectors)
    assert np.array_equal(np.stack([f.record.encoding for f in store.iter_faces()]), vectors)
    store.close()
    reopened = open_encrypted_or_plain(tmp_path / "g.db", "pass phrase")
    assert np.array_equal(reopened.faces("Ada")[0].record.encoding, vectors[0])
    reopened.close()
    with pytest.raises(GalleryError, match="wrong encryption key"):
        EncryptedStore(tmp_path / "g.db", "guess")
    with pytest.raises(GalleryError, match="set VISAGE_GALLERY_KEY"):
        open_encrypted_or_plain(tmp_path / "g.db", None)
    # The CLI opens galleries as plain stores: it refuses rather than match against ciphertext.
    from visage.cli import main

    assert main(["people", "list", "--gallery", str(tmp_path / "g.db")]) == 2
