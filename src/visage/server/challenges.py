"""Active liveness challenges for the web page: the server draws the actions, collects the frames.

A challenge is drawn by the server (:func:`visage.liveness.new_challenge`, from the OS's entropy),
so the page cannot choose an easy one and a recording cannot know it. The page then uploads the
camera frames in small batches as it records them, and asks for the verdict; frames are checked as
images on arrival and kept compressed, as sent, with their capture times.

Frames are held in memory, so the store bounds them: a few open challenges per key (one key cannot
take every slot), a byte budget per challenge and one for the whole server. The store is an SQLite
database, in memory for one process or in the server's shared folder (:mod:`.shared`), so that with
several server processes a challenge drawn by one can take frames and be judged by another; every
check and the write it allows are one transaction, so the budgets hold across processes.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, field

from ..errors import ChallengeError, ChallengeNotFound
from .shared import MEMORY, connect, transaction

MiB = 1024 * 1024


def _size(count: int) -> str:
    """Bytes as a person reads them: ``"32 MiB"``, ``"1.5 MiB"``, ``"900 bytes"``."""
    return f"{count / MiB:.3g} MiB" if count >= MiB // 10 else f"{count} bytes"


class TooManyChallenges(ChallengeError):
    """This key already has as many open challenges as one key may (HTTP 429: this caller's load)."""


class ChallengeTooLarge(ChallengeError):
    """The frames sent would take one challenge over its byte budget (HTTP 413: send smaller frames)."""


class ChallengesFull(ChallengeError):
    """The server holds as many challenges, or challenge bytes, as it may (HTTP 503: retry later)."""


@dataclass
class Challenge:
    """One open challenge: its actions, owner, and the frames received (encoded bytes, capture ms)."""

    id: str
    actions: list[str]
    owner: str
    created: float
    frames: list[bytes] = field(default_factory=list, repr=False)
    times: list[float] = field(default_factory=list)
    busy: bool = False
    #: Bytes of the frames held.
    size: int = 0

    def fps(self) -> float:
        """Frame rate from the capture times (30 when they cannot tell)."""
        if len(self.times) < 2:
            return 30.0
        span = (max(self.times) - min(self.times)) / 1000.0
        return (len(self.times) - 1) / span if span > 0 else 30.0


_SCHEMA = """
CREATE TABLE IF NOT EXISTS challenges (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    actions TEXT NOT NULL,
    created REAL NOT NULL,
    busy INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL DEFAULT 0,
    times TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS challenge_frames (
    challenge TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (challenge, seq)
);
CREATE INDEX IF NOT EXISTS challenges_created ON challenges (created)
"""


class ChallengeStore:
    """Open challenges, each for ``seconds``: at most ``max_per_key`` for one key and ``max_open``
    in all, with at most ``max_bytes`` of frames each and ``max_total_bytes`` in all.

    ``path``: the SQLite file the server's processes share (:mod:`.shared`); default in memory.
    """

    def __init__(self, seconds: float = 120.0, max_open: int = 256, max_frames: int = 150, length: int = 3, *,
                 max_per_key: int = 4, max_bytes: int = 32 * MiB, max_total_bytes: int = 512 * MiB,
                 path: str | os.PathLike = MEMORY):
        self.seconds, self.max_open, self.max_frames, self.length = seconds, max_open, max_frames, length
        self.max_per_key, self.max_bytes, self.max_total_bytes = max_per_key, max_bytes, max_total_bytes
        self._lock = threading.Lock()
        self._db = connect(path, _SCHEMA)

    @property
    def bytes_held(self) -> int:
        """Bytes of frames held by all open challenges."""
        with transaction(self._db, self._lock) as db:
            self._expire(db)
            return int(db.execute("SELECT COALESCE(SUM(size), 0) FROM challenges").fetchone()[0])

    def create(self, owner: str) -> Challenge:
        """Draw a new challenge for ``owner``."""
        from ..liveness import new_challenge

        with transaction(self._db, self._lock) as db:
            self._expire(db)
            mine = db.execute("SELECT COUNT(*) FROM challenges WHERE owner = ?", (owner,)).fetchone()[0]
            if mine >= self.max_per_key:
                raise TooManyChallenges(f"this key has {mine} open challenges (the limit is {self.max_per_key} a "
                                        f"key); answer one, or retry when one expires ({self.seconds:g} s after "
                                        "it was drawn)")
            total = db.execute("SELECT COUNT(*) FROM challenges").fetchone()[0]
            if total >= self.max_open:
                raise ChallengesFull(f"{total} challenges are open (the limit is {self.max_open}); "
                                     "retry in a minute")
            challenge = Challenge(secrets.token_hex(8), new_challenge(self.length), owner, time.time())
            db.execute("INSERT INTO challenges (id, owner, actions, created) VALUES (?, ?, ?, ?)",
                       (challenge.id, owner, json.dumps(challenge.actions), challenge.created))
        return challenge

    def get(self, challenge_id: str, owner: str) -> Challenge:
        """The open challenge ``challenge_id`` of ``owner``, with its frames; raises ChallengeError otherwise."""
        with transaction(self._db, self._lock) as db:
            self._expire(db)
            row = db.execute("SELECT id, owner, actions, created, busy, size, times FROM challenges WHERE id = ?",
                             (challenge_id,)).fetchone()
            if row is None or row[1] != owner:
                raise ChallengeNotFound(f"no open challenge {challenge_id!r} (unknown, expired or finished)")
            frames = [bytes(r[0]) for r in db.execute(
                "SELECT data FROM challenge_frames WHERE challenge = ? ORDER BY seq", (challenge_id,))]
        return Challenge(row[0], json.loads(row[2]), row[1], row[3], frames, json.loads(row[6]), bool(row[4]), row[5])

    def add_frames(self, challenge: Challenge, frames: list[bytes], times: list[float]) -> int:
        """Append frames (already checked as images); returns how many the challenge now holds."""
        with transaction(self._db, self._lock) as db:
            self._expire(db)
            row = db.execute("SELECT busy, size, times FROM challenges WHERE id = ?", (challenge.id,)).fetchone()
            if row is None:  # expired or answered since it was looked up
                raise ChallengeNotFound(f"no open challenge {challenge.id!r} (expired or finished)")
            busy, held, stamps = bool(row[0]), int(row[1]), json.loads(row[2])
            if busy:
                raise ChallengeError("this challenge is being judged and takes no more frames")
            if len(stamps) + len(frames) > self.max_frames:
                raise ChallengeError(f"a challenge takes at most {self.max_frames} frames; "
                                     f"it has {len(stamps)} and {len(frames)} more were sent")
            size = sum(len(f) for f in frames)
            if held + size > self.max_bytes:
                raise ChallengeTooLarge(f"a challenge takes at most {_size(self.max_bytes)} of frames; it holds "
                                        f"{_size(held)} and {_size(size)} more were sent; "
                                        "send smaller frames (JPEG, at most the max frame side)")
            total = int(db.execute("SELECT COALESCE(SUM(size), 0) FROM challenges").fetchone()[0])
            if total + size > self.max_total_bytes:
                raise ChallengesFull(f"the server holds {_size(total)} of challenge frames (the limit "
                                     f"is {_size(self.max_total_bytes)}); retry in a minute")
            db.executemany("INSERT INTO challenge_frames VALUES (?, ?, ?)",
                           [(challenge.id, len(stamps) + i, sqlite3.Binary(f)) for i, f in enumerate(frames)])
            stamps += list(times)
            db.execute("UPDATE challenges SET size = ?, times = ? WHERE id = ?",
                       (held + size, json.dumps(stamps), challenge.id))
        challenge.frames.extend(frames)
        challenge.times[:] = stamps
        challenge.size = held + size
        return len(stamps)

    def claim(self, challenge: Challenge) -> None:
        """Mark a challenge as being judged (once only); raises ChallengeError if it already is."""
        with transaction(self._db, self._lock) as db:
            taken = db.execute("UPDATE challenges SET busy = 1 WHERE id = ? AND busy = 0", (challenge.id,)).rowcount
            if not taken:
                if db.execute("SELECT 1 FROM challenges WHERE id = ?", (challenge.id,)).fetchone():
                    raise ChallengeError("this challenge is already being judged")
                raise ChallengeNotFound(f"no open challenge {challenge.id!r} (expired or finished)")
        challenge.busy = True

    def release(self, challenge: Challenge) -> None:
        """Undo :meth:`claim` (the verdict could not be given now: the server was at capacity)."""
        with transaction(self._db, self._lock) as db:
            db.execute("UPDATE challenges SET busy = 0 WHERE id = ?", (challenge.id,))
        challenge.busy = False

    def close(self, challenge: Challenge) -> None:
        """Forget a challenge (it is answered once)."""
        with transaction(self._db, self._lock) as db:
            self._forget(db, [challenge.id])

    def remaining(self, challenge: Challenge) -> float:
        return max(0.0, challenge.created + self.seconds - time.time())

    def shutdown(self) -> None:
        """Close the store's database."""
        with self._lock:
            self._db.close()

    def _expire(self, db: sqlite3.Connection) -> None:
        old = [r[0] for r in db.execute("SELECT id FROM challenges WHERE created < ?", (time.time() - self.seconds,))]
        if old:
            self._forget(db, old)

    @staticmethod
    def _forget(db: sqlite3.Connection, ids: list[str]) -> None:
        """Drop open challenges and their frames (their bytes go back to the server's budget)."""
        db.executemany("DELETE FROM challenge_frames WHERE challenge = ?", [(i,) for i in ids])
        db.executemany("DELETE FROM challenges WHERE id = ?", [(i,) for i in ids])
