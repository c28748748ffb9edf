"""End to end: the web page in Debian's Chromium, driven by Playwright, against a real server.

The camera is Chromium's fake device playing a clip made from a dev-set photo. The tests run in
order on one server: enrol the person from the camera (the second time, the page must ask first),
identify them from a snapshot, look at the page at a phone's width and with a key that is not an
admin key, run the live check (a photo must not get in), then rename the person, remove a face and
the person, and identify again (now "Not recognised", in amber). Each checks what the page shows:
texts, colours, thumbnails, the admin badge, and that the key survives a reload.

Screenshots go to the test's tmp folder, and also to $VISAGE_E2E_SCREENSHOTS when it names a folder
(``VISAGE_E2E_SCREENSHOTS=docs/images`` refreshes the pictures in the docs).

Needs /usr/bin/chromium and the playwright package (``scripts/install_browser.sh`` installs both);
skips with the reason when either is missing.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import free_port

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


def camera_clip(photo: Path, path: Path, frames: int = 60) -> Path:
    """A 640×480 clip of ``photo`` (letterboxed), drifting a few pixels as a hand-held picture does.

    No two frames are alike (a sub-pixel vertical drift as well): two snapshots of one frame are the
    same picture, which the gallery rightly refuses to enrol twice, and frames i and 15 − i of a
    sideways swing alone were equal."""
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
        shift = np.float32([[1, 0, dx], [0, 1, 2 * i / frames]])
        out.append(cv2.warpAffine(canvas, shift, (640, 480), borderMode=cv2.BORDER_REPLICATE))
    return write_y4m(path, out)


def start_server(folder: Path):
    """``visage serve`` in a thread on a free loopback port; returns (url, admin key, user key, stop)."""
    import uvicorn

    from visage.server import ServerSettings, create_app
    from visage.server.auth import KeyStore

    settings = ServerSettings(gallery=str(folder / "gallery.db"), port=free_port())
    keys = KeyStore(settings.state_path())
    admin, user = keys.create("front desk", admin=True), keys.create("door 1")
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

    return f"http://127.0.0.1:{settings.port}", admin, user, stop


def screenshot(page, folder: Path, name: str) -> Path:
    """Save a screenshot in ``folder`` (the test's tmp folder) and in $VISAGE_E2E_SCREENSHOTS if set."""
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    extra = os.environ.get("VISAGE_E2E_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(extra) / path.name)
    return path


def overlay_pixels(page) -> int:
    """How many pixels of the overlay canvas are painted (the drawn result)."""
    return page.evaluate("""() => {
        const c = document.getElementById('overlay');
        const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
        return n;
    }""")


def colour(page, selector: str) -> str:
    return page.eval_on_selector(selector, "el => getComputedStyle(el).color")


GREEN, AMBER, RED = "rgb(21, 128, 61)", "rgb(180, 83, 9)", "rgb(185, 28, 28)"  # style.css, per outcome
DESKTOP, PHONE = {"width": 1280, "height": 800}, {"width": 390, "height": 844}


class Site:
    """The server and a Chromium with the fake camera; :meth:`open` opens the page in a new tab."""

    def __init__(self, browser, url: str, admin: str, user: str, folder: Path):
        self.browser, self.url, self.admin, self.user, self.folder = browser, url, admin, user, folder
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.answer = True  # how the next confirm dialogs are answered

    def open(self, key: str, viewport: dict):
        page = self.browser.new_context(viewport=viewport).new_page()
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None)
        page.on("dialog", self._dialog)
        page.goto(self.url + "/")
        page.fill("#api-key", key)
        page.click("#key-form button[type=submit]")
        page.wait_for_selector("#key-status[data-state=ok]", timeout=10_000)
        page.wait_for_selector("#camera-status[data-state=ready]", timeout=20_000)
        return page

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.accept() if self.answer else dialog.dismiss()


@pytest.fixture(scope="module")
def site(shared_data, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    folder = tmp_path_factory.mktemp("e2e")
    url, admin, user, stop = start_server(folder)
    clip = camera_clip(shared_data / "faces" / "facerec__obama" / "obama2.jpg", folder / "camera.y4m")
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={clip}"]
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=args, headless=True)
            try:
                yield Site(browser, url, admin, user, folder)
            finally:
                browser.close()
    finally:
        stop()


@pytest.fixture(scope="module")
def desktop(site):
    """The page at a desktop's size with the admin key, shared by the tests that follow one another."""
    page = site.open(site.admin, DESKTOP)
    yield page
    page.context.close()


def enrol_from_camera(page, name: str) -> str:
    page.fill("#enrol-name", name)
    page.click("#enrol-camera")
    page.wait_for_selector("#enrol-status:not([data-state=busy])", timeout=90_000)
    return page.get_attribute("#enrol-status", "data-state")


def identify_snapshot(page) -> str:
    page.click("#identify-snapshot")
    page.wait_for_selector("#result:is([data-state=ok], [data-state=warn], [data-state=error])", timeout=90_000)
    return page.get_attribute("#result", "data-state")


def person(name: str) -> str:
    return f'#people .person[data-name="{name}"]'


def test_admin_key_survives_a_reload(site, desktop):
    page = desktop
    assert page.is_visible("#key-badge") and page.inner_text("#key-badge") == "Admin"
    assert "front desk" in page.inner_text("#key-status")
    page.reload()
    page.wait_for_selector("#key-status[data-state=ok]", timeout=10_000)
    page.wait_for_selector("#camera-status[data-state=ready]", timeout=20_000)
    assert page.is_visible("#key-badge"), page.inner_text("#key-status")
    assert page.evaluate("() => sessionStorage.getItem('visage-key')") == site.admin
    assert page.evaluate("() => localStorage.length") == 0
    assert "No one is enrolled yet" in page.inner_text("#people-status")


def test_enrol_twice_asks_first_and_identify(site, desktop):
    page = desktop
    assert enrol_from_camera(page, "Barack Obama") == "ok", page.inner_text("#enrol-status")
    assert page.inner_text("#enrol-status") == "Enrolled Barack Obama."
    assert colour(page, "#enrol-status") == GREEN
    page.wait_for_selector(f"{person('Barack Obama')} .face img", timeout=10_000)
    page.wait_for_function(f"""() => {{
        const img = document.querySelector('{person("Barack Obama")} .face img');
        return img.complete && img.naturalWidth > 0; }}""", timeout=10_000)
    assert page.inner_text(f"{person('Barack Obama')} .person-count") == "1 face"

    # The same name again: the page asks first. Declined, nothing is added.
    site.answer, site.dialogs[:] = False, []
    assert enrol_from_camera(page, "Barack Obama") == "idle"
    assert len(site.dialogs) == 1 and "Barack Obama is already enrolled with 1 face" in site.dialogs[0]
    assert "Nothing added" in page.inner_text("#enrol-status")
    site.answer = True
    state = enrol_from_camera(page, "Barack Obama")
    assert len(site.dialogs) == 2, site.dialogs
    assert state == "ok", page.inner_text("#enrol-status")
    assert "Added 1 face to Barack Obama (2 in all)" in page.inner_text("#enrol-status")
    page.wait_for_function(f"""() => document.querySelectorAll('{person("Barack Obama")} .face img').length === 2""",
                           timeout=10_000)

    # Identify from a snapshot: recognised, in green, with the name drawn over the video.
    assert identify_snapshot(page) == "ok", page.inner_text("#result")
    assert page.inner_text("#result").startswith("Recognised: Barack Obama")
    assert colour(page, "#result") == GREEN
    assert page.get_attribute("#overlay", "data-drawn") == "1" and overlay_pixels(page) > 500
    screenshot(page, site.folder, "web-desktop")
    assert not site.errors, site.errors


def test_phone_width_has_no_horizontal_scrolling(site):
    page = site.open(site.admin, PHONE)
    try:
        page.wait_for_function(f"""() => {{
            const img = document.querySelector('{person("Barack Obama")} .face img');
            return img && img.complete && img.naturalWidth > 0; }}""", timeout=10_000)
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
        for selector in ("#enrol-camera", "#live-check", f"{person('Barack Obama')} .remove"):
            box = page.locator(selector).bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, selector
        screenshot(page, site.folder, "web-phone")
    finally:
        page.context.close()
    assert not site.errors, site.errors


def test_user_key_has_no_badge_and_cannot_change_people(site):
    page = site.open(site.user, DESKTOP)
    try:
        assert not page.is_visible("#key-badge")
        assert "not enrol" in page.inner_text("#key-status")
        page.wait_for_selector(person("Barack Obama"), timeout=10_000)
        assert page.locator(f"{person('Barack Obama')} button").count() == 0  # no rename, no remove
        assert page.locator("#people img").count() == 0  # thumbnails need an admin key
        assert page.is_disabled("#enrol-camera") and page.is_visible("#enrol-hint")
    finally:
        page.context.close()
    assert not site.errors, site.errors


def test_live_check_in_the_browser(site, desktop):
    """The page asks for actions, streams frames, and draws the verdict. A photo on a fake camera
    cannot turn its head, so it must not be let in by name."""
    if not _passive_model_available():
        pytest.skip("no passive liveness model in this checkout (visage/data/liveness_cnn_v3.npz)")
    page = desktop
    page.evaluate("() => document.getElementById('overlay').getContext('2d').clearRect(0, 0, 9999, 9999)")
    page.click("#live-check")
    page.wait_for_selector("#prompt:not([hidden])", timeout=10_000)
    assert page.inner_text("#prompt")
    page.wait_for_selector("#result:is([data-state=ok], [data-state=warn], [data-state=error])", timeout=120_000)
    text = page.inner_text("#result")
    screenshot(page, site.folder, "web-live-check")
    decision = page.get_attribute("#result", "data-decision")
    assert decision in ("challenge failed", "attack", "insufficient evidence"), text
    assert page.get_attribute("#result", "data-state") in ("warn", "error") and colour(page, "#result") in (AMBER, RED)
    assert "Barack Obama" not in text and "score" not in text  # plain words; numbers only under Details
    assert page.get_attribute("#result", "data-admitted") == "false"
    if decision == "attack":
        assert text == "This looks like a photo or a screen, not a live face."
    if decision != "insufficient evidence":
        assert page.get_attribute("#overlay", "data-drawn") == "1"
        assert overlay_pixels(page) > 500  # the box and its label are drawn
    assert not site.errors, site.errors


def test_rename_remove_and_not_recognised(site, desktop):
    page = desktop
    site.answer = True
    page.click(f"{person('Barack Obama')} .rename")
    page.fill("#people .rename-form input", "Obama")
    page.click("#people .rename-form button[type=submit]")
    page.wait_for_selector(person("Obama"), timeout=10_000)
    assert page.locator(person("Barack Obama")).count() == 0
    assert "Renamed Barack Obama to Obama" in page.inner_text("#people-status")

    site.dialogs[:] = []
    page.wait_for_selector(f"{person('Obama')} .remove-face", timeout=10_000)
    page.click(f"{person('Obama')} .remove-face >> nth=0")
    page.wait_for_function(f"""() => {{
        const count = document.querySelector('{person("Obama")} .person-count');
        return count && count.textContent === '1 face'; }}""", timeout=10_000)
    assert "Remove this face of Obama" in site.dialogs[0]

    page.click(f"{person('Obama')} .remove")
    page.wait_for_selector("#people-status:text('Removed Obama.')", timeout=10_000)
    assert "Remove Obama and their 1 face?" in site.dialogs[1]
    page.wait_for_function("() => document.querySelectorAll('#people .person').length === 0", timeout=10_000)

    # Nobody is enrolled now: the same face is not recognised, in amber, not green.
    assert identify_snapshot(page) == "warn", page.inner_text("#result")
    assert page.inner_text("#result").startswith("Not recognised")
    assert colour(page, "#result") == AMBER
    assert not site.errors, site.errors


def _passive_model_available() -> bool:
    from visage.errors import ModelError
    from visage.liveness.passive import load_model

    try:
        load_model()
        return True
    except ModelError:
        return False
