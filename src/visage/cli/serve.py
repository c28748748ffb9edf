"""``visage serve``: the REST API and web page under uvicorn, and API key management.

Argument parsing only; the app is :func:`visage.server.create_app`.
"""

from __future__ import annotations

import json

from ..config import DEFAULT_ENCODER
from .faces import add_calibration_option, add_encoder_option


def register(sub) -> None:
    p = sub.add_parser("serve", help="run the REST API and web page (FastAPI under uvicorn)",
                       description="Serve the gallery, face, liveness and style endpoints and the web page. "
                                   "Settings also come from VISAGE_SERVER_* variables; the gallery's "
                                   "encryption key only from VISAGE_GALLERY_KEY. API docs: /docs.")
    p.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8000)")
    p.add_argument("--gallery", metavar="FILE", default=None,
                   help="gallery file, as `visage enroll` takes it (default $VISAGE_HOME/gallery.db, "
                        "else ~/.local/share/visage/gallery.db)")
    add_encoder_option(p, default=None, default_help=f"the one that filled the gallery; {DEFAULT_ENCODER} for a "
                                                     "new one. Every endpoint encodes with it")
    add_calibration_option(p)
    p.add_argument("--state", metavar="FILE", default=None,
                   help="API keys and audit log (default: server.db beside the gallery)")
    p.add_argument("--cors", metavar="ORIGIN", action="append", default=None,
                   help="allow browser calls from this origin (repeatable); CORS is off by default")
    p.add_argument("--workers", type=int, default=None,
                   help="gallery connections open at once in each process (default 2); within a process, calls "
                        "into the face models take turns")
    p.add_argument("--processes", type=int, default=None, metavar="N",
                   help="server processes over the same gallery, each with its own models (default: one per "
                        "CPU core)")
    p.add_argument("--max-wait", type=float, default=None, metavar="SECONDS", dest="max_wait",
                   help="longest a request may queue for the face models; one that would wait longer gets "
                        "503 with Retry-After at once (default 1.0; 0: no bound)")
    keys = p.add_mutually_exclusive_group()
    keys.add_argument("--create-key", metavar="NAME", help="make an API key called NAME, print it once, and exit")
    keys.add_argument("--list-keys", action="store_true", help="list API keys (never their secrets) and exit")
    keys.add_argument("--revoke-key", metavar="ID", help="revoke the key with this id and exit")
    p.add_argument("--admin", action="store_true", help="with --create-key: the key may enrol and remove people")
    p.add_argument("--json", action="store_true", help="with --list-keys: print JSON")
    p.set_defaults(run=run_serve)


def settings_from(args):
    """ServerSettings from the environment, overridden by the options given."""
    from ..server.settings import load_settings

    return load_settings(host=args.host, port=args.port, gallery=args.gallery, state=args.state,
                         cors_origins=args.cors, workers=args.workers, encoder=args.encoder,
                         calibration=args.calibration, processes=args.processes, max_wait_seconds=args.max_wait)


def run_serve(args) -> int:
    from ..errors import VisageError
    from ..server.auth import KeyStore

    settings = settings_from(args)
    # `--create-key ""` is a key request with a bad name, not a request to start the server.
    creating = args.create_key is not None
    if args.admin and not creating:
        raise VisageError("--admin goes with --create-key NAME")
    if creating or args.list_keys or args.revoke_key is not None:
        store = KeyStore(settings.state_path())
        try:
            if creating:
                key = store.create(args.create_key, admin=args.admin)
                kind = "admin key" if args.admin else "key"
                print(key)
                import sys

                print(f"{kind} for {args.create_key!r} stored (hashed) in {settings.state_path()}; "
                      "this is the only time it is shown", file=sys.stderr)
            elif args.list_keys:
                found = [k.to_dict() for k in store.list()]
                if args.json:
                    print(json.dumps(found, indent=2))
                for k in [] if args.json else found:
                    state = "revoked" if k["revoked"] else ("admin" if k["admin"] else "user")
                    print(f"{k['id']}  {state:8s}  {k['name']}")
            else:
                store.revoke(args.revoke_key)
                print(f"revoked {args.revoke_key}")
        finally:
            store.close()
        return 0
    return serve(settings)


def serve(settings) -> int:
    """Run the app until SIGINT or SIGTERM; requests in flight are finished first.

    With more than one process (:attr:`ServerSettings.processes`), the gallery, state file and
    encoder are checked here first, then uvicorn's supervisor runs the workers on the bound socket
    (see :mod:`visage.server.processes`)."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    processes = settings.process_count()
    if processes == 1:
        from ..server import create_app

        app = create_app(settings)
        sock, port = _bind(settings)
        print(f"visage: serving on http://{settings.host}:{port}/ (API docs at /docs)", flush=True)
        _uvicorn_server(app).run(sockets=[sock])
        return 0
    return _serve_processes(settings, processes)


def _bind(settings):
    """Bind first, so "serving on" is only said once it is true (and a port in use is a clear error)."""
    import socket

    from ..errors import VisageError

    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    try:
        sock = socket.create_server((settings.host, settings.port), family=family)
    except OSError as exc:
        raise VisageError(f"cannot listen on {settings.host}:{settings.port} ({exc.strerror or exc})") from None
    return sock, sock.getsockname()[1]


def _uvicorn_config(app, **extra):
    import uvicorn

    # timeout_graceful_shutdown: on SIGTERM, stop accepting, then give requests in flight this long.
    return uvicorn.Config(app, log_level="info", access_log=True, timeout_graceful_shutdown=60,
                          server_header=False, **extra)


def _uvicorn_server(app):
    import uvicorn

    return uvicorn.Server(_uvicorn_config(app))


def _serve_processes(settings, processes: int) -> int:
    import os

    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    from ..server.processes import SETTINGS_ENV, torch_threads
    from ..server.service import build_service
    from ..server.shared import make_shared_dir, remove_shared_dir

    made = None
    if settings.shared_dir is None:  # the workers' shared challenges and jobs: private, in memory, for this run
        made = make_shared_dir()
        settings = settings.model_copy(update={"shared_dir": str(made)})
    try:
        build_service(settings).close()  # a bad gallery, state file or encoder stops the server here, clearly
        sock, port = _bind(settings)
        print(f"visage: serving on http://{settings.host}:{port}/ (API docs at /docs) with {processes} "
              f"processes, {torch_threads(processes)} torch thread(s) each", flush=True)
        os.environ[SETTINGS_ENV] = settings.model_dump_json()
        supervisor = Multiprocess(_uvicorn_config("visage.server.processes:worker_app", factory=True,
                                                  workers=processes), sockets=[sock])
        supervisor.run()
        failed = any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes)
    finally:
        if made is not None:
            remove_shared_dir(made)
    return 1 if failed else 0
