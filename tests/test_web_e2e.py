"""End to end: the web page in Debian's Chromium, driven by Playwright, against a real server.

The camera is Chromium's fake device playing a clip made from a dev-set photo. The test enrols the
person from the camera, identifies them from a snapshot, runs the live check, and checks that each
step completes and that the result is drawn over the video.

Needs /usr/bin/chromium and the playwright package (``scripts/install_browser.sh`` installs both);
skips with the reason when either is missing.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.slow,  # a real browser
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (run scripts/install_browser.sh)"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None,
                       reason="the playwright package is missing (run scripts/install_browser.sh)"),
]


def write_y4m(path: Path, frames: list[np.ndarray], fps: int = 15) -> Path:
    """Write BGR frames (even width and height) as a YUV4MPEG2 file, the format Chromium's fake camera plays."""
    import cv2

    height, width = frames[0].shape[:2]
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            out.write(b"FRAME\n")
            out.write(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


def camera_clip(photo: Path, path: Path, frames: int = 30) -> Path:
    """A 640×480 clip of ``photo`` (letterboxed), drifting a few pixels as a hand-held picture does."""
    import cv2

    img = cv2.imread(str(photo))
    scale = min(640 / img.shape[1], 480 / img.shape[0])
    img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    canvas = np.full((480, 640, 3), 40, np.uint8)
    top, left = (480 - img.shape[0]) // 2, (640 - img.shape[1]) // 2
    canvas[top:top + img.shape[0], left:left + img.shape[1]] = img
    out = []
    for i in range(frames):
        dx = 3 * np.sin(2 * np.pi * i / frames)
        shift = np.float32([[1, 0, dx], [0, 1, 0]])
        out.append(cv2.warpAffine(canvas, shift, (640, 480), borderMode=cv2.BORDER_REPLICATE))
    return write_y4m(path, out)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(folder: Path):
    """``visage serve`` in a thread on a free loopback port; returns (url, admin key, stop)."""
    import uvicorn

    from visage.server import ServerSettings, create_app
    from visage.server.auth import KeyStore

    settings = ServerSettings(gallery=str(folder / "gallery.db"), port=free_port())
    keys = KeyStore(settings.state_path())
    admin = keys.create("e2e", admin=True)
    keys.close()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=settings.port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start"

    def stop():
        server.should_exit = True
        thread.join(30)

    return f"http://127.0.0.1:{settings.port}", admin, stop


def snapshot(page, name: str) -> None:
    """Save a screenshot when VISAGE_E2E_SCREENSHOTS names a folder (to look at what was drawn)."""
    folder = os.environ.get("VISAGE_E2E_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"))


def overlay_pixels(page) -> int:
    """How many pixels of the overlay canvas are painted (the drawn result)."""
    return page.evaluate("""() => {
        const c = document.getElementById('overlay');
        const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
        return n;
    }""")


@pytest.fixture(scope="module")
def browser_page(shared_data, tmp_path_factory):
    """A server, and the page open in Chromium with the fake camera and the admin key set."""
    from playwright.sync_api import sync_playwright

    folder = tmp_path_factory.mktemp("e2e")
    url, key, stop = start_server(folder)
    clip = camera_clip(shared_data / "faces" / "facerec__obama" / "obama2.jpg", folder / "camera.y4m")
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={clip}"]
    errors: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=args, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1200, "height": 800})
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
                page.goto(url + "/")
                page.fill("#api-key", key)
                page.click("#key-form button")
                page.wait_for_selector("#camera-status[data-state=ready]", timeout=20_000)
                yield page, errors
            finally:
                browser.close()
    finally:
        stop()


def test_enrol_and_identify_in_the_browser(browser_page):
    page, errors = browser_page
    # Enrol from the camera.
    page.fill("#enrol-name", "Barack Obama")
    page.click("#enrol-camera")
    page.wait_for_selector("#enrol-status:is([data-state=done], [data-state=error])", timeout=90_000)
    assert page.get_attribute("#enrol-status", "data-state") == "done", page.inner_text("#enrol-status")
    assert "Enrolled Barack Obama: 1 face(s) added" in page.inner_text("#enrol-status")
    page.wait_for_selector("#people li", timeout=10_000)
    assert "Barack Obama (1 face)" in page.inner_text("#people")

    # Identify from a snapshot: the name is drawn over the video.
    page.click("#identify-snapshot")
    page.wait_for_selector("#result:is([data-state=done], [data-state=error])", timeout=90_000)
    assert page.get_attribute("#result", "data-state") == "done", page.inner_text("#result")
    assert "Barack Obama" in page.inner_text("#result")
    assert page.get_attribute("#overlay", "data-drawn") == "1"
    assert overlay_pixels(page) > 500
    snapshot(page, "identified")
    assert not errors, errors


def test_live_check_in_the_browser(browser_page):
    """The page asks for actions, streams frames, and draws the verdict. A photo on a fake camera
    cannot turn its head, so it must not be let in by name."""
    if not _passive_model_available():
        pytest.skip("no passive liveness model in this checkout (visage/data/liveness_cnn_v3.npz)")
    page, errors = browser_page
    page.evaluate("() => document.getElementById('overlay').getContext('2d').clearRect(0, 0, 9999, 9999)")
    page.click("#live-check")
    page.wait_for_selector("#prompt:not([hidden])", timeout=10_000)
    assert page.inner_text("#prompt")
    page.wait_for_selector("#result:is([data-state=done], [data-state=error])", timeout=120_000)
    text = page.inner_text("#result")
    snapshot(page, "live_check")
    assert page.get_attribute("#result", "data-state") == "done", text
    decision = page.get_attribute("#result", "data-decision")
    assert decision in ("challenge failed", "attack", "insufficient evidence"), text
    assert "Live check:" in text and "Barack Obama" not in text.split("Identity:")[-1]
    if decision != "insufficient evidence":
        assert page.get_attribute("#overlay", "data-drawn") == "1"
        assert overlay_pixels(page) > 500  # the red box and "unknown · challenge failed" are drawn
    assert not errors, errors


def _passive_model_available() -> bool:
    from visage.errors import ModelError
    from visage.liveness.passive import load_model

    try:
        load_model()
        return True
    except ModelError:
        return False
