"""Request counts, latencies and the models' queue, in the Prometheus text format (``GET /metrics``).

Each process counts its own requests (:class:`Metrics`). With several processes
(``visage serve --processes N``) a scrape reaches one of them, so each writes a snapshot of its
counters into the shared state folder (:mod:`.shared`) once a second while it has news, and the
scrape sums the snapshots of the processes that are alive; a counter is then at most about a
second old.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable

from .shared import MEMORY, connect, transaction

#: Upper bounds of the latency histogram's buckets, in seconds (the service bounds waits at ~1 s).
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
_SCHEMA = "CREATE TABLE IF NOT EXISTS metrics (pid INTEGER PRIMARY KEY, updated REAL NOT NULL, snapshot TEXT NOT NULL)"


class Metrics:
    """One process's counters: requests by route, method and status; latency histograms by route.

    ``gauges`` is called at each snapshot for the values of the moment (queue depth, models busy).
    """

    def __init__(self, path: str | os.PathLike = MEMORY, gauges: Callable[[], dict[str, float]] | None = None,
                 flush_every: float = 1.0):
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = {}
        self._latency: dict[str, list[float]] = {}  # route -> bucket counts (+Inf last), then sum
        self._gauges = gauges or dict
        self._flush_every = flush_every
        self._shared = str(path) != MEMORY
        self._db = connect(path, _SCHEMA) if self._shared else None
        self._db_lock = threading.Lock()
        self._dirty, self._stop = self._shared, threading.Event()
        if self._shared:  # counted from the start, and fresh a second after the last request
            self.flush()
            threading.Thread(target=self._flush_while_open, name="visage-metrics", daemon=True).start()

    def _flush_while_open(self) -> None:
        while not self._stop.wait(self._flush_every):
            if self._dirty:
                self.flush()

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request (in memory; the flusher thread shares it)."""
        with self._lock:
            key = (route, method, str(status))
            self._requests[key] = self._requests.get(key, 0) + 1
            row = self._latency.setdefault(route, [0.0] * (len(BUCKETS) + 2))
            row[next((i for i, bound in enumerate(BUCKETS) if seconds <= bound), len(BUCKETS))] += 1
            row[-1] += seconds
            self._dirty = self._shared

    def snapshot(self) -> dict:
        """This process's counters and gauges now, as plain JSON-ready values."""
        with self._lock:
            requests = [[*key, count] for key, count in self._requests.items()]
            latency = {route: list(row) for route, row in self._latency.items()}
        return {"requests": requests, "latency": latency, "gauges": dict(self._gauges()), "processes": 1}

    def flush(self) -> None:
        """Write this process's snapshot for the others' scrapes (a failure only delays it)."""
        if self._db is None:
            return
        self._dirty = False
        try:
            with transaction(self._db, self._db_lock) as db:
                db.execute("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?)",
                           (os.getpid(), time.time(), json.dumps(self.snapshot())))
        except sqlite3.Error:
            pass  # a locked or full scratch file: the next request tries again

    def collect(self) -> dict:
        """The sum over the server's live processes (this one read fresh)."""
        total = self.snapshot()
        if self._db is None:
            return total
        self.flush()
        with self._db_lock:
            rows = self._db.execute("SELECT pid, snapshot FROM metrics WHERE pid != ?", (os.getpid(),)).fetchall()
        for pid, text in rows:
            if _alive(pid):
                _add(total, json.loads(text))
        return total

    def close(self) -> None:
        self._stop.set()
        if self._db is not None:
            with self._db_lock:
                self._db.execute("DELETE FROM metrics WHERE pid = ?", (os.getpid(),))
                self._db.close()
            self._db = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _add(total: dict, other: dict) -> None:
    counts = {tuple(r[:3]): r[3] for r in total["requests"]}
    for *key, count in other["requests"]:
        counts[tuple(key)] = counts.get(tuple(key), 0) + count
    total["requests"] = [[*key, count] for key, count in counts.items()]
    for route, row in other["latency"].items():
        mine = total["latency"].setdefault(route, [0.0] * len(row))
        total["latency"][route] = [a + b for a, b in zip(mine, row)]
    for name, value in other["gauges"].items():
        total["gauges"][name] = total["gauges"].get(name, 0) + value
    total["processes"] += other["processes"]


#: name -> (type, help) of the gauges a Service reports.
GAUGES = {
    "visage_queue_depth": ("gauge", "Requests waiting for the face models now."),
    "visage_models_busy": ("gauge", "Processes whose face models are running a request now."),
    "visage_refused_total": ("counter", "Requests refused with 503 as over the wait bound."),
    "visage_model_turns_total": ("counter", "Turns taken on the face models (a batch is one turn)."),
    "visage_model_busy_seconds_total": ("counter", "Seconds the face models were running."),
}


def render(totals: dict) -> str:
    """``totals`` (from :meth:`Metrics.collect`) in the Prometheus text exposition format 0.0.4."""
    lines = ["# HELP visage_requests_total Requests answered, by route, method and status.",
             "# TYPE visage_requests_total counter"]
    for route, method, status, count in sorted(totals["requests"]):
        lines.append(f'visage_requests_total{{route="{_label(route)}",method="{method}",status="{status}"}} {count}')
    lines += ["# HELP visage_request_seconds Time from the request's arrival to its answer, by route.",
              "# TYPE visage_request_seconds histogram"]
    for route, row in sorted(totals["latency"].items()):
        label, running = _label(route), 0.0
        for bound, count in zip([*map(str, BUCKETS), "+Inf"], row[:-1]):
            running += count
            lines.append(f'visage_request_seconds_bucket{{route="{label}",le="{bound}"}} {running:g}')
        lines.append(f'visage_request_seconds_sum{{route="{label}"}} {row[-1]:.6f}')
        lines.append(f'visage_request_seconds_count{{route="{label}"}} {running:g}')
    for name, (kind, text) in GAUGES.items():
        if name in totals["gauges"]:
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name} {totals['gauges'][name]:g}"]
    lines += ["# HELP visage_processes Server processes counted in this scrape.", "# TYPE visage_processes gauge",
              f"visage_processes {totals['processes']}"]
    return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
