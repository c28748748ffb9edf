"""Everything one running server holds: keys, audit log, galleries, jobs, challenges and limits."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from .audit import AuditLog
from .auth import KeyStore
from .challenges import ChallengeStore
from .galleries import Busy, GalleryPool
from .jobs import JobQueue
from .limits import RateLimiter
from .metrics import Metrics
from .settings import ServerSettings
from .shared import MEMORY

log = logging.getLogger("visage.server")


class Overloaded(Busy):
    """The face models' queue is too long: the request would wait longer than the server allows
    (HTTP 503 with ``Retry-After``). Nothing was done; the request may be sent again as it was."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        #: Whole seconds the client should wait before retrying (at least 1).
        self.retry_after = max(1, math.ceil(retry_after))


class ComputeSlot:
    """Admission to the face models of this process: one caller at a time, a bounded wait for the rest.

    dlib's networks keep working buffers inside the model object, so two threads running one model
    at once corrupt memory (seen as a crashed process under load): requests take turns on the models
    and overlap only in I/O and decoding. Each turn says what it is (``kind``) and how much
    (``units``: photos, frames); the slot keeps a moving average of the seconds one unit of each kind
    takes, so it can tell how long a newcomer would wait: the rest of the current turn plus the
    expected length of every turn queued before it.

    With ``max_wait`` > 0, a caller that would wait longer than that is refused at once
    (:class:`Overloaded`, a 503 with ``Retry-After``) instead of queueing, and so is one that has
    waited ``max_wait`` without its turn coming (the estimate was short) or that finds ``max_queue``
    callers already waiting. ``max_wait`` 0: wait as long as it takes (no bound).
    """

    def __init__(self, max_wait: float = 0.0, max_queue: int = 64, first_guess: float = 0.25):
        self.max_wait, self.max_queue, self.first_guess = max_wait, max_queue, first_guess
        self._state = threading.Condition()
        self._queued: dict[int, float] = {}  # ticket -> expected seconds, for callers waiting, in arrival order
        self._pending: dict[int, _Pending] = {}  # the tickets of waiting callers of together()
        self._ticket = 0
        self._holder: int | None = None  # the ticket whose turn it is
        self._turn_ends = 0.0  # when the current turn is expected to end (perf_counter), 0: no turn
        self._per_unit: dict[str, float] = {}  # kind -> moving average of seconds per unit
        #: Since start: callers refused, turns taken, and seconds the models were held (for the log).
        self.refused = 0
        self.turns = 0
        self.busy_seconds = 0.0
        self.since = time.perf_counter()

    def summary(self) -> str:
        """How the models were used since start, for the log."""
        with self._state:
            span = max(1e-9, time.perf_counter() - self.since)
            return (f"face models: {self.turns} turns, busy {self.busy_seconds:.1f} s of {span:.1f} s "
                    f"({100 * self.busy_seconds / span:.0f}%), {self.refused} requests refused (503) as over the "
                    f"{self.max_wait:g} s wait bound")

    def gauges(self) -> dict[str, float]:
        """The slot now, for ``/metrics``: callers waiting, whether the models run, totals since start."""
        with self._state:
            return {"visage_queue_depth": len(self._queued), "visage_models_busy": float(self._holder is not None),
                    "visage_refused_total": self.refused, "visage_model_turns_total": self.turns,
                    "visage_model_busy_seconds_total": self.busy_seconds}

    def expected(self, kind: str, units: int = 1) -> float:
        """Seconds a turn of ``units`` of ``kind`` is expected to take."""
        with self._state:
            return self._expected(kind, units)

    def _expected(self, kind: str, units: int) -> float:
        known = self._per_unit.get(kind) or (max(self._per_unit.values()) if self._per_unit else self.first_guess)
        return known * max(1, units)

    def wait_estimate(self) -> float:
        """Seconds a caller arriving now would wait for its turn."""
        with self._state:
            return self._wait_now(time.perf_counter())

    def _wait_now(self, now: float) -> float:
        current = max(0.0, self._turn_ends - now) if self._turn_ends else 0.0
        return current + sum(self._queued.values())

    def _admit(self, kind: str, units: int, now: float, pending: _Pending | None = None) -> tuple[int, float]:
        """Queue a caller (state lock held): its ticket and expected cost; raises Overloaded instead."""
        cost = self._expected(kind, units)
        wait = self._wait_now(now)
        busy = self._holder is not None or bool(self._queued)
        if self.max_wait > 0 and busy and (wait > self.max_wait or len(self._queued) >= self.max_queue):
            self.refused += 1
            raise Overloaded(f"the server is at capacity: this request would wait about {wait:.1f} s for "
                             f"the face models (the limit is {self.max_wait:g} s); retry shortly",
                             retry_after=max(1.0, wait - self.max_wait))
        self._ticket += 1
        self._queued[self._ticket] = cost
        if pending is not None:
            self._pending[self._ticket] = pending
        return self._ticket, cost

    def _wait_for_turn(self, ticket: int, cost: float, now: float, pending: _Pending | None = None) -> None:
        """Wait (state lock held) until ``ticket`` is first in line and the models are free, or until
        another caller has taken ``pending`` into its turn; raises Overloaded at the deadline."""
        deadline = now + self.max_wait if self.max_wait > 0 else None
        try:
            while self._holder is not None or next(iter(self._queued)) != ticket:  # first come, first served
                left = None if deadline is None else deadline - time.perf_counter()
                if left is not None and left <= 0:
                    self.refused += 1
                    raise Overloaded(f"the server is at capacity: this request waited {self.max_wait:g} s for "
                                     "the face models without its turn coming; retry shortly",
                                     retry_after=max(1.0, self._wait_now(time.perf_counter()) - cost))
                self._state.wait(left)
                if pending is not None and pending.taken:  # another caller's turn does this one's work
                    return
        finally:
            if not (pending is not None and pending.taken):
                del self._queued[ticket]
                self._pending.pop(ticket, None)
            self._state.notify_all()  # the next in line may be first now

    def _end_turn(self, kind: str, units: int, started: float) -> None:
        took = time.perf_counter() - started
        with self._state:
            per_unit = took / max(1, units)
            old = self._per_unit.get(kind)
            self._per_unit[kind] = per_unit if old is None else 0.8 * old + 0.2 * per_unit
            self._holder, self._turn_ends = None, 0.0
            self.turns += 1
            self.busy_seconds += took
            self._state.notify_all()

    @contextlib.contextmanager
    def turn(self, kind: str = "other", units: int = 1) -> Iterator[None]:
        """Hold the models for the ``with`` block, in arrival order; raises :class:`Overloaded`
        instead of waiting too long."""
        now = time.perf_counter()
        with self._state:
            ticket, cost = self._admit(kind, units, now)
            self._wait_for_turn(ticket, cost, now)
            self._holder = ticket
            started = time.perf_counter()
            self._turn_ends = started + cost
        try:
            yield
        finally:
            self._end_turn(kind, units, started)

    def together(self, kind: str, item: T, work: Callable[[list[T]], list[R | BaseException]],
                 max_batch: int = 16) -> R:
        """``work([item])[0]``, done in one turn with the same kind's callers queued at the time.

        Admission is :meth:`turn`'s. The caller whose turn comes takes every caller of ``kind``
        waiting behind it (up to ``max_batch``, in order) into its turn and runs ``work`` once on
        all their items: batched, the encoder costs much less per face. ``work`` returns one result
        per item, or the exception that item raises (one bad photo fails only its own request).
        """
        now = time.perf_counter()
        pending = _Pending(kind, item)
        with self._state:
            ticket, cost = self._admit(kind, 1, now, pending)
            self._wait_for_turn(ticket, cost, now, pending)
            if pending.taken:  # done in another caller's turn: wait for its end
                while not pending.done:
                    self._state.wait()
                return pending.outcome()
            batch = [pending]
            for other, waiting in list(self._pending.items()):
                if len(batch) >= max_batch:
                    break
                if waiting.kind == kind and not waiting.taken:
                    waiting.taken = True
                    batch.append(waiting)
                    del self._pending[other]
                    del self._queued[other]
            self._holder = ticket
            started = time.perf_counter()
            self._turn_ends = started + cost * len(batch)
            self._state.notify_all()
        results: list = [RuntimeError("the batch was interrupted")] * len(batch)
        try:
            done = work([p.item for p in batch])
            if len(done) != len(batch):
                raise RuntimeError(f"{len(done)} results for {len(batch)} items")
            results = list(done)
        except Exception as exc:  # noqa: BLE001 - every caller of the batch raises it in its own request
            results = [exc] * len(batch)
        finally:
            with self._state:
                for p, result in zip(batch, results):
                    p.result, p.done = result, True
            self._end_turn(kind, len(batch), started)
        return pending.outcome()


T = TypeVar("T")
R = TypeVar("R")


class _Pending:
    """A caller of :meth:`ComputeSlot.together` waiting in line, and then its result."""

    def __init__(self, kind: str, item):
        self.kind, self.item = kind, item
        self.taken = False  # in some caller's turn (its own or another's)
        self.done = False
        self.result: object = None

    def outcome(self):
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


@dataclass
class Service:
    """The parts of a running server (see :func:`build_service`)."""

    settings: ServerSettings
    keys: KeyStore
    audit: AuditLog
    galleries: GalleryPool
    jobs: JobQueue
    challenges: ChallengeStore
    limiter: RateLimiter
    #: Held for every call into the face models (one caller at a time, a bounded wait: see ComputeSlot).
    compute: ComputeSlot
    #: Request counts and latencies for ``/metrics``, shared by the server's processes.
    metrics: Metrics

    def close(self) -> None:
        """Stop jobs, wait for gallery writes in flight, close the files."""
        if self.compute.turns or self.compute.refused:
            log.info("process %d: %s", os.getpid(), self.compute.summary())
        self.jobs.shutdown()
        self.challenges.shutdown()
        if not self.galleries.close():
            log.warning("some gallery requests were still running at shutdown")
        self.keys.close()
        self.audit.close()
        self.metrics.close()


def build_service(settings: ServerSettings) -> Service:
    """Open the state file and the gallery named by ``settings``; raises VisageError when they cannot be used.

    The encoder and the calibration are checked against the gallery now (loading the encoder) when
    ``settings`` names one or the gallery holds encodings, so that a wrong one, or a gallery whose
    model is gone, stops the server at start rather than failing every request.
    """
    state = settings.state_path()
    keys = KeyStore(state)
    audit = AuditLog(state, keep_days=settings.audit_days)
    galleries = GalleryPool(settings)
    try:
        with galleries.borrow() as gallery:
            if settings.encoder is not None or settings.calibration is not None or gallery.stored_encoder_key:
                gallery.check_encoder()
                gallery.calibration()
    except Exception:
        galleries.close()
        keys.close()
        audit.close()
        raise
    # Several processes of one server share challenges and jobs through files in shared_dir (see .shared).
    shared = Path(settings.shared_dir).expanduser() if settings.shared_dir else None
    compute = ComputeSlot(settings.max_wait_seconds, settings.max_queue)
    return Service(
        settings=settings, keys=keys, audit=audit, galleries=galleries,
        jobs=JobQueue(settings.max_queued_jobs, settings.job_ttl, path=shared / "jobs.db" if shared else MEMORY),
        challenges=ChallengeStore(settings.challenge_seconds, max_open=settings.max_challenges,
                                  max_frames=settings.max_frames, max_per_key=settings.max_challenges_per_key,
                                  max_bytes=settings.max_challenge_bytes,
                                  max_total_bytes=settings.max_challenge_bytes_total,
                                  path=shared / "challenges.db" if shared else MEMORY),
        limiter=RateLimiter(settings.rate_per_minute, settings.rate_burst),
        compute=compute,
        metrics=Metrics(shared / "metrics.db" if shared else MEMORY, gauges=compute.gauges),
    )
