"""``visage serve`` as a real process: SIGTERM during an enrolment finishes it before exiting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from helpers import free_port, jpeg
from visage.gallery import Gallery
from visage.server.auth import KeyStore

pytestmark = pytest.mark.slow  # starts the server as a real process


def test_sigterm_finishes_the_enrolment_in_flight(tmp_path, shared_data):
    gallery, state, port = tmp_path / "gallery.db", tmp_path / "server.db", free_port()
    keys = KeyStore(state)
    admin = keys.create("admin", admin=True)
    keys.close()
    folder = shared_data / "faces" / "facerec__obama"
    photos = [("photos", (p.name, jpeg(p, 400), "image/jpeg")) for p in sorted(folder.iterdir())]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen([sys.executable, "-m", "visage", "serve", "--gallery", str(gallery), "--state", str(state),
                               "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("the server did not start")
        answer: dict = {}

        def enrol():
            answer["response"] = httpx.post(url + "/v1/enroll", headers={"X-API-Key": admin},
                                            data={"name": "Obama"}, files=photos, timeout=120)

        sender = threading.Thread(target=enrol)
        sender.start()
        time.sleep(1.0)  # the request is in: the models load and the photos are encoded for seconds
        assert "response" not in answer, "the enrolment finished before SIGTERM; the test proves nothing"
        server.send_signal(signal.SIGTERM)
        sender.join(120)
        code = server.wait(90)
        output = server.stdout.read()
    finally:
        if server.poll() is None:
            server.kill()
    response = answer["response"]
    assert response.status_code == 200, response.text
    assert response.json()["faces_added"] == len(photos)
    # uvicorn shuts down cleanly, then re-raises SIGTERM so the exit status tells how it ended.
    assert code in (0, -signal.SIGTERM), output
    assert "Waiting for application shutdown" in output and "Finished server process" in output
    with Gallery(gallery) as g:
        assert [(p.name, p.faces) for p in g.people()] == [("Obama", len(photos))]
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/health", timeout=2)
