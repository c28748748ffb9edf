"""Active liveness challenges for the web page: the server draws the actions, collects the frames.

A challenge is drawn by the server (:func:`visage.liveness.new_challenge`, from the OS's entropy),
so the page cannot choose an easy one and a recording cannot know it. The page then uploads the
camera frames in small batches as it records them, and asks for the verdict; frames are checked as
images on arrival and kept compressed, as sent, with their capture times.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

from ..errors import ChallengeError, ChallengeNotFound


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

    def fps(self) -> float:
        """Frame rate from the capture times (30 when they cannot tell)."""
        if len(self.times) < 2:
            return 30.0
        span = (max(self.times) - min(self.times)) / 1000.0
        return (len(self.times) - 1) / span if span > 0 else 30.0


class ChallengeStore:
    """Open challenges in memory, at most ``max_open`` at once, each for ``seconds``."""

    def __init__(self, seconds: float = 120.0, max_open: int = 16, max_frames: int = 150, length: int = 3):
        self.seconds, self.max_open, self.max_frames, self.length = seconds, max_open, max_frames, length
        self._open: dict[str, Challenge] = {}
        self._lock = threading.Lock()

    def create(self, owner: str) -> Challenge:
        """Draw a new challenge for ``owner``."""
        from ..liveness import new_challenge

        with self._lock:
            self._expire()
            if len(self._open) >= self.max_open:
                raise ChallengeError(f"{len(self._open)} challenges are open (the limit is {self.max_open}); "
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
            if challenge.busy:
                raise ChallengeError("this challenge is being judged and takes no more frames")
            if len(challenge.frames) + len(frames) > self.max_frames:
                raise ChallengeError(f"a challenge takes at most {self.max_frames} frames; "
                                     f"it has {len(challenge.frames)} and {len(frames)} more were sent")
            challenge.frames.extend(frames)
            challenge.times.extend(times)
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
            self._open.pop(challenge.id, None)

    def remaining(self, challenge: Challenge) -> float:
        return max(0.0, challenge.created + self.seconds - time.time())

    def _expire(self) -> None:
        now = time.time()
        for cid in [c for c, ch in self._open.items() if now - ch.created > self.seconds]:
            del self._open[cid]
