"""A small in-process job queue for slow work (style transfer): bounded, one worker thread.

A job is queued, then running, then done, failed or cancelled. Its ``progress`` (0 to 1) and
``message`` are updated by the work as it goes; its result (bytes and a media type) is kept for
``ttl`` seconds after it finishes. The queue refuses new jobs when ``max_queued`` are waiting.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import VisageError

log = logging.getLogger("visage.server.jobs")


class QueueFull(VisageError):
    """Too many jobs are waiting; the client should retry later."""


class Cancelled(Exception):
    """Raised inside a job's work when the job was cancelled."""


@dataclass
class Job:
    """One unit of slow work and its state."""

    id: str
    kind: str
    owner: str
    status: str = "queued"
    progress: float = 0.0
    message: str = "waiting for the worker"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    result: bytes | None = field(default=None, repr=False)
    media_type: str = "application/octet-stream"
    cancel_requested: bool = False

    @property
    def ended(self) -> bool:
        return self.status in ("done", "failed", "cancelled")

    def report(self, progress: float, message: str) -> None:
        """Called by the work: record progress; raises :class:`Cancelled` when the job was cancelled."""
        if self.cancel_requested:
            raise Cancelled()
        self.progress = max(0.0, min(1.0, float(progress)))
        self.message = message

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "status": self.status, "progress": round(self.progress, 4),
                "message": self.message, "created": self.created, "started": self.started,
                "finished": self.finished, "error": self.error}


#: The work of a job: given the job (to report progress), returns (result bytes, media type).
Work = Callable[[Job], tuple[bytes, str]]


class JobQueue:
    """Jobs run one at a time, in order, on a worker thread."""

    def __init__(self, max_queued: int = 8, ttl: float = 3600.0):
        self.max_queued = max_queued
        self.ttl = ttl
        self._jobs: dict[str, Job] = {}
        self._work: dict[str, Work] = {}
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="visage-jobs", daemon=True)
        self._thread.start()

    def submit(self, kind: str, owner: str, work: Work) -> Job:
        """Queue ``work``; returns the new job. Raises :class:`QueueFull` when the queue is full."""
        with self._lock:
            self._purge()
            if self._closed:
                raise QueueFull("the server is shutting down and takes no new jobs")
            waiting = sum(1 for j in self._jobs.values() if j.status == "queued")
            if waiting >= self.max_queued:
                raise QueueFull(f"{waiting} jobs are already waiting (the limit is {self.max_queued}); retry later")
            job = Job(secrets.token_hex(8), kind, owner)
            self._jobs[job.id] = job
            self._work[job.id] = work
        self._queue.put(job.id)
        return job

    def get(self, job_id: str) -> Job | None:
        """The job with this id, or None (unknown or expired)."""
        with self._lock:
            self._purge()
            return self._jobs.get(job_id)

    def cancel(self, job_id: str) -> Job | None:
        """Ask a job to stop: a queued job never starts, a running one stops at its next progress report."""
        job = self.get(job_id)
        if job is not None and not job.ended:
            job.cancel_requested = True
            if job.status == "queued":
                self._finish(job, "cancelled", "cancelled before it started")
        return job

    def shutdown(self, timeout: float = 10.0) -> None:
        """Take no new jobs, cancel the queued and running ones, and wait for the worker to stop."""
        with self._lock:
            self._closed = True
            jobs = list(self._jobs.values())
        for job in jobs:
            if not job.ended:
                self.cancel(job.id)
        self._queue.put(None)
        self._thread.join(timeout)

    def _purge(self) -> None:
        now = time.time()
        for job_id in [i for i, j in self._jobs.items() if j.ended and j.finished and now - j.finished > self.ttl]:
            del self._jobs[job_id]

    def _finish(self, job: Job, status: str, message: str, error: str | None = None) -> None:
        job.status, job.message, job.error, job.finished = status, message, error, time.time()
        self._work.pop(job.id, None)

    def _run(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            job = self._jobs.get(job_id)
            work = self._work.get(job_id)
            if job is None or work is None or job.ended:
                continue
            job.status, job.started, job.message = "running", time.time(), "started"
            try:
                job.result, job.media_type = work(job)
                job.progress = 1.0
                self._finish(job, "done", "finished")
            except Cancelled:
                self._finish(job, "cancelled", "cancelled while running")
            except VisageError as exc:
                self._finish(job, "failed", "failed", str(exc))
            except Exception as exc:  # a bug: keep the worker alive, record it, log without user data
                log.exception("job %s (%s) crashed", job.id, job.kind)
                self._finish(job, "failed", "failed", f"internal error ({type(exc).__name__})")
