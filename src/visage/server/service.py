"""Everything one running server holds: keys, audit log, galleries, jobs, challenges and limits."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from .audit import AuditLog
from .auth import KeyStore
from .challenges import ChallengeStore
from .galleries import GalleryPool
from .jobs import JobQueue
from .limits import RateLimiter
from .settings import ServerSettings

log = logging.getLogger("visage.server")


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
    #: Held for every call into the face models. dlib's networks keep working buffers inside the model
    #: object, so two threads running one model at once corrupt memory (seen as a crashed process
    #: under load); requests therefore take turns on the models and overlap only in I/O and decoding.
    compute: threading.Lock

    def close(self) -> None:
        """Stop jobs, wait for gallery writes in flight, close the files."""
        self.jobs.shutdown()
        if not self.galleries.close():
            log.warning("some gallery requests were still running at shutdown")
        self.keys.close()
        self.audit.close()


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
    return Service(
        settings=settings, keys=keys, audit=audit, galleries=galleries,
        jobs=JobQueue(settings.max_queued_jobs, settings.job_ttl),
        challenges=ChallengeStore(settings.challenge_seconds, max_open=settings.max_challenges,
                                  max_frames=settings.max_frames, max_per_key=settings.max_challenges_per_key,
                                  max_bytes=settings.max_challenge_bytes,
                                  max_total_bytes=settings.max_challenge_bytes_total),
        limiter=RateLimiter(settings.rate_per_minute, settings.rate_burst),
        compute=threading.Lock(),
    )
