"""Active liveness challenges for the web page: the server draws the actions, collects the frames.

A challenge is drawn by the server (:func:`visage.liveness.new_challenge`, from the OS's entropy),
so the page cannot choose an easy one and a recording cannot know it. The page then uploads the
camera frames in small batches as it records them, and asks for the verdict; frames are checked as
images on arrival and kept compressed, as sent, with their capture times.

Frames are held in memory, so the store bounds them: a few open challenges per key (one key cannot
take every slot), a byte budget per challenge and one for the whole server.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

from ..errors import ChallengeError, ChallengeNotFound

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


class ChallengeStore:
    """Open challenges in memory, each for ``seconds``: at most ``max_per_key`` for one key and
    ``max_open`` in all, with at most ``max_bytes`` of frames each and ``max_total_bytes`` in all."""

    def __init__(self, seconds: float = 120.0, max_open: int = 256, max_frames: int = 150, length: int = 3, *,
                 max_per_key: int = 4, max_bytes: int = 32 * MiB, max_total_bytes: int = 512 * MiB):
        self.seconds, self.max_open, self.max_frames, self.length = seconds, max_open, max_frames, length
        self.max_per_key, self.max_bytes, self.max_total_bytes = max_per_key, max_bytes, max_total_bytes
        self._open: dict[str, Challenge] = {}
        self._bytes = 0  # frames held by all open challenges
        self._lock = threading.Lock()

    @property
    def bytes_held(self) -> int:
        """Bytes of frames held by all open challenges."""
        with self._lock:
            self._expire()
            return self._bytes

    def create(self, owner: str) -> Challenge:
        """Draw a new challenge for ``owner``."""
        from ..liveness import new_challenge

        with self._lock:
            self._expire()
            mine = sum(1 for c in self._open.values() if c.owner == owner)
            if mine >= self.max_per_key:
                raise TooManyChallenges(f"this key has {mine} open challenges (the limit is {self.max_per_key} a "
                                        f"key); answer one, or retry when one expires ({self.seconds:g} s after "
                                        "it was drawn)")
            if len(self._open) >= self.max_open:
                raise ChallengesFull(f"{len(self._open)} challenges are open (the limit is {self.max_open}); "
                                     "retry in a minute")
            challenge = Challenge(secrets.token_hex(8), new_challenge(self.length), owner, time.time())
            self._open[challenge.id] = challenge
        return challenge

    def get(self, challenge_id: str, owner: str) -> Challenge:
        """The open challenge ``challenge_id`` of ``owner``; raises ChallengeError otherwise."""
        with self._lock:
            self._expire()
            challenge = self._open.get(challenge_id)
        if challenge is None or challenge.owner != owner:
            raise ChallengeNotFound(f"no open challenge {challenge_id!r} (unknown, expired or finished)")
        return challenge

    def add_frames(self, challenge: Challenge, frames: list[bytes], times: list[float]) -> int:
        """Append frames (already checked as images); returns how many the challenge now holds."""
        with self._lock:
            self._expire()
            if self._open.get(challenge.id) is not challenge:  # expired or answered since it was looked up
                raise ChallengeNotFound(f"no open challenge {challenge.id!r} (expired or finished)")
            if challenge.busy:
                raise ChallengeError("this challenge is being judged and takes no more frames")
            if len(challenge.frames) + len(frames) > self.max_frames:
                raise ChallengeError(f"a challenge takes at most {self.max_frames} frames; "
                                     f"it has {len(challenge.frames)} and {len(frames)} more were sent")
            size = sum(len(f) for f in frames)
            if challenge.size + size > self.max_bytes:
                raise ChallengeTooLarge(f"a challenge takes at most {_size(self.max_bytes)} of frames; it holds "
                                        f"{_size(challenge.size)} and {_size(size)} more were sent; "
                                        "send smaller frames (JPEG, at most the max frame side)")
            if self._bytes + size > self.max_total_bytes:
                raise ChallengesFull(f"the server holds {_size(self._bytes)} of challenge frames (the limit "
                                     f"is {_size(self.max_total_bytes)}); retry in a minute")
            challenge.frames.extend(frames)
            challenge.times.extend(times)
            challenge.size += size
            self._bytes += size
            return len(challenge.frames)

    def claim(self, challenge: Challenge) -> None:
        """Mark a challenge as being judged (once only); raises ChallengeError if it already is."""
        with self._lock:
            if challenge.busy:
                raise ChallengeError("this challenge is already being judged")
            challenge.busy = True

    def close(self, challenge: Challenge) -> None:
        """Forget a challenge (it is answered once)."""
        with self._lock:
            self._forget(challenge.id)

    def remaining(self, challenge: Challenge) -> float:
        return max(0.0, challenge.created + self.seconds - time.time())

    def _expire(self) -> None:
        now = time.time()
        for cid in [c for c, ch in self._open.items() if now - ch.created > self.seconds]:
            self._forget(cid)

    def _forget(self, challenge_id: str) -> None:
        """Drop an open challenge and give its bytes back to the server's budget (lock held)."""
        challenge = self._open.pop(challenge_id, None)
        if challenge is not None:
            self._bytes -= challenge.size
