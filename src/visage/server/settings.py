"""Server settings: from ``VISAGE_SERVER_*`` environment variables, overridden by ``visage serve`` options.

The key that encrypts stored encodings is read from the environment only (``VISAGE_GALLERY_KEY``),
never from the command line, where other users of the machine could read it in the process list.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .. import config
from ..config import DEFAULT_DETECTOR, default_gallery_path


class ServerSettings(BaseSettings):
    """Everything ``visage serve`` can be told. Field ``x`` is read from ``VISAGE_SERVER_X``."""

    model_config = SettingsConfigDict(env_prefix="VISAGE_SERVER_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    #: The gallery location, as ``visage enroll --gallery`` takes it; None: the CLI's default file.
    gallery: str | None = None
    #: A registered encoder or a model file from ``visage train``; None: the one that filled the
    #: gallery, DEFAULT_ENCODER for a new gallery (see :attr:`visage.gallery.Gallery.encoder_key`).
    encoder: str | None = None
    #: The file ``visage calibrate`` wrote, fitted for the encoder; None: the encoder's shipped calibration.
    calibration: str | None = None
    detector: str = DEFAULT_DETECTOR
    #: SQLite file for API keys and the audit log; None: ``server.db`` beside the gallery file.
    state: str | None = None
    #: Requests a key may make per minute (sustained), and the burst it may make at once.
    rate_per_minute: float = Field(120.0, gt=0)
    rate_burst: int = Field(30, ge=1)
    #: Largest request body in bytes (uploads included), and largest image in pixels.
    max_request_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    max_pixels: int = Field(12_000_000, ge=64 * 64)
    #: Photos accepted in one enrolment request.
    max_photos: int = Field(20, ge=1)
    #: Frames a liveness clip or challenge may hold, and the longest side they are scaled to.
    max_frames: int = Field(150, ge=10)
    max_frame_side: int = Field(640, ge=120)
    #: Seconds a liveness challenge stays open, and how many may be open at once: per key (so one key
    #: cannot take every slot) and in all.
    challenge_seconds: float = Field(120.0, gt=0)
    max_challenges_per_key: int = Field(4, ge=1)
    max_challenges: int = Field(256, ge=1)
    #: Bytes of frames one challenge may hold, and all open challenges together (they are kept in memory).
    max_challenge_bytes: int = Field(32 * 1024 * 1024, ge=64 * 1024)
    max_challenge_bytes_total: int = Field(512 * 1024 * 1024, ge=64 * 1024)
    #: Style transfer jobs: how many may wait, the largest output side, the default side and steps.
    max_queued_jobs: int = Field(8, ge=1)
    max_style_size: int = Field(512, ge=32)
    style_size: int = Field(256, ge=16)
    style_steps: int = Field(100, ge=1)
    #: Finished jobs are kept this long (seconds) for their results to be fetched.
    job_ttl: float = Field(3600.0, gt=0)
    #: Gallery connections opened in parallel in each process: requests beyond this many wait for one
    #: to be free. (Calls into the face models take turns within a process: see Service.compute.)
    workers: int = Field(2, ge=1, le=64)
    #: Server processes, each with its own models and gallery connections, over the same gallery and
    #: state files (``visage serve --processes``). None: one per CPU core this process may use.
    processes: int | None = Field(None, ge=1, le=64)
    #: Longest a request may wait for its turn on the face models. A request that would wait longer
    #: (judged from the queue ahead of it and the recent time per turn) is refused at once with 503
    #: and ``Retry-After``, and so is one whose turn has not come after this long. 0: no bound.
    max_wait_seconds: float = Field(1.0, ge=0)
    #: Requests that may wait for the face models in one process at once (beyond: 503 at once).
    max_queue: int = Field(32, ge=1)
    #: Folder where the processes of one server share open liveness challenges and style jobs (a
    #: small SQLite file). None: ``visage serve`` makes a private one in memory-backed /dev/shm
    #: (else the temp folder) for the server's lifetime.
    shared_dir: str | None = None
    #: Origins allowed to call the API from a browser. Empty: CORS off (same-origin only).
    cors_origins: list[str] = Field(default_factory=list)
    #: Torch threads (style transfer) per process.
    threads: int = Field(2, ge=1)
    #: Days audit rows are kept (the server's and the gallery's); older ones are deleted at start and
    #: every thousand requests. 0: kept for ever.
    audit_days: float = Field(90.0, ge=0)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value):
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    def gallery_path(self) -> Path | None:
        """The gallery's SQLite file, or None when the gallery is not a local file (Milvus)."""
        if self.gallery is None:
            return default_gallery_path()
        if "://" in self.gallery or self.gallery.startswith("milvus-lite:"):
            return None
        return Path(self.gallery).expanduser()

    def process_count(self) -> int:
        """Processes to run: :attr:`processes`, or one per CPU core this process may use.

        A Milvus Lite gallery is one process's file (a second opener is refused): one process, and
        asking for more is an error."""
        if self.gallery is not None and self.gallery.startswith("milvus-lite:"):
            if (self.processes or 1) > 1:
                from ..errors import InvalidArgument

                raise InvalidArgument("a Milvus Lite gallery can be opened by one process only: serve it with "
                                      "--processes 1, or use an SQLite gallery or a Milvus server")
            return 1
        return self.processes or usable_cores()

    def state_path(self) -> Path:
        """Where API keys and the audit log live."""
        if self.state:
            return Path(self.state).expanduser()
        beside = self.gallery_path() or default_gallery_path()
        return beside.parent / "server.db"

    def gallery_key(self) -> str | None:
        """The passphrase encrypting stored encodings, from ``$VISAGE_GALLERY_KEY``
        (:func:`visage.config.gallery_key`), or None."""
        return config.gallery_key()


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity, else the machine's count)."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def load_settings(**options) -> ServerSettings:
    """ServerSettings from the environment, overridden by ``options`` (None means "not given").

    A value out of range, from an option or a ``VISAGE_SERVER_*`` variable, raises
    :class:`~visage.errors.InvalidArgument` naming the setting, instead of pydantic's report.
    """
    from pydantic import ValidationError

    from ..errors import InvalidArgument

    try:
        return ServerSettings(**{k: v for k, v in options.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']} (got {e.get('input')!r})"
                             for e in exc.errors())
        raise InvalidArgument(f"bad server setting: {problems}") from None
