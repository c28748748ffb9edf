"""Several server processes behind one socket: ``visage serve --processes N``.

The models run one call at a time inside a process (:class:`~visage.server.service.ComputeSlot`),
so one process uses about one core. N processes, each with its own models, gallery connections and
torch threads (cores / N, at least 1), use N. uvicorn's supervisor binds nothing itself: the parent
binds the socket, starts the workers (spawned: fresh interpreters, never forked after torch ran)
and restarts one that dies. Every worker builds its app from :func:`worker_app`, with the settings
the parent resolved, passed in the environment as JSON (never a secret: the gallery's key stays in
``VISAGE_GALLERY_KEY``).

What the processes share, and how:

- the gallery file: SQLite in WAL mode orders the writers, and each process's search index follows
  the others' enrolments and removals through the store's change cursor before every search;
- the state file (API keys, audit log): SQLite too, each write one transaction;
- open liveness challenges and style jobs: an SQLite file in :attr:`ServerSettings.shared_dir`
  (see :mod:`.shared`), so a challenge or job made through one process works through any;
- rate limits are per process (each process allows a key the configured rate), so a key's real
  ceiling is up to N times the setting.
"""

from __future__ import annotations

import logging
import os
import sys

#: The environment variable that carries the resolved settings to the worker processes.
SETTINGS_ENV = "VISAGE_SERVE_SETTINGS_JSON"


def torch_threads(processes: int) -> int:
    """Torch threads for each of ``processes`` workers: the usable cores shared out, at least 1."""
    from .settings import usable_cores

    return max(1, usable_cores() // max(1, processes))


def worker_app():
    """The app of one worker process (an ASGI app factory for uvicorn)."""
    from uvicorn.config import STARTUP_FAILURE

    from ..errors import VisageError
    from .app import create_app
    from .settings import ServerSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = ServerSettings.model_validate_json(os.environ[SETTINGS_ENV])
    import torch

    torch.set_num_threads(torch_threads(settings.process_count()))
    try:
        return create_app(settings)
    except VisageError as exc:
        logging.getLogger("visage.server").error("worker %d cannot start: %s", os.getpid(), exc)
        sys.exit(STARTUP_FAILURE)  # the supervisor stops instead of restarting a worker that cannot start
