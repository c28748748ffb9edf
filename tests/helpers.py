"""What the server tests share: dev-set photos as request bodies, free loopback ports and
``visage serve`` run as its own process."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image, ImageOps


def jpeg(path: Path, side: int = 300) -> bytes:
    """The photo at ``path`` upright and scaled to ``side`` px on its long side, as JPEG bytes."""
    img = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    img.thumbnail((side, side))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=92)
    return out.getvalue()


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(folder: Path, *extra: str, name: str = "serve", env: dict[str, str] | None = None,
                ) -> tuple[subprocess.Popen, str]:
    """``visage serve`` over ``folder``'s gallery.db and server.db on a free port, logging to
    ``folder/<name>.log``; returns (process, base URL) once /health answers."""
    import httpx

    port = free_port()
    log_path = folder / f"{name}.log"
    log = open(log_path, "w")
    server = subprocess.Popen([sys.executable, "-m", "visage", "serve", "--gallery", str(folder / "gallery.db"),
                               "--state", str(folder / "server.db"), "--port", str(port), *extra],
                              env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                              stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        if server.poll() is not None:
            raise AssertionError(log_path.read_text())
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return server, url
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise AssertionError(f"visage serve did not start; see {log_path}")


def stop(server: subprocess.Popen) -> int:
    """SIGTERM, then the exit code; kills the process if it has not exited in 90 s."""
    server.send_signal(signal.SIGTERM)
    try:
        return server.wait(90)
    except subprocess.TimeoutExpired:
        server.kill()
        raise
