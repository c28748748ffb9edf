"""Galleries opened for the server: a small pool, each with its own SQLite connection and index.

Requests that use the gallery borrow one for their duration. SQLite orders concurrent writers
(each enrolment is one transaction), and each gallery's search index follows the others' writes
through the store's change cursor. Shutting down waits for every borrowed gallery to come back,
so enrolments in flight are committed before the files close.
"""

from __future__ import annotations

import contextlib
import queue
import threading

from ..errors import GalleryError, VisageError
from ..gallery import Gallery
from .crypto import open_encrypted_or_plain
from .settings import ServerSettings


class Busy(VisageError):
    """Every gallery stayed busy for longer than the wait allowed."""


def open_gallery(settings: ServerSettings) -> Gallery:
    """The gallery ``settings`` names, encrypted at rest when ``VISAGE_GALLERY_KEY`` is set."""
    path, key = settings.gallery_path(), settings.gallery_key()
    if path is None:
        if key:
            raise GalleryError("encryption at rest (VISAGE_GALLERY_KEY) needs an SQLite gallery file")
        return Gallery(settings.gallery, encoder=settings.encoder, calibration=settings.calibration,
                       detector=settings.detector)
    return Gallery(open_encrypted_or_plain(path, key), encoder=settings.encoder, calibration=settings.calibration,
                   detector=settings.detector)


class GalleryPool:
    """``size`` open galleries lent out one request at a time."""

    def __init__(self, settings: ServerSettings, size: int | None = None, wait: float = 300.0):
        self.wait = wait
        self._all: list[Gallery] = []
        self._free: queue.Queue[Gallery] = queue.Queue()
        self._lent = 0
        self._cond = threading.Condition()
        self._closed = False
        try:
            for _ in range(size or settings.workers):
                gallery = open_gallery(settings)
                self._all.append(gallery)
                self._free.put(gallery)
        except Exception:
            self.close()
            raise

    @contextlib.contextmanager
    def borrow(self):
        """Lend a gallery for the ``with`` block; raises :class:`Busy` after ``wait`` seconds."""
        with self._cond:
            if self._closed:
                raise Busy("the server is shutting down")
            self._lent += 1
        try:
            try:
                gallery = self._free.get(timeout=self.wait)
            except queue.Empty:
                raise Busy(f"every gallery connection stayed busy for {self.wait:.0f} s; retry later") from None
            try:
                yield gallery
            finally:
                self._free.put(gallery)
        finally:
            with self._cond:
                self._lent -= 1
                self._cond.notify_all()

    def close(self, timeout: float = 60.0) -> bool:
        """Refuse new borrowers, wait up to ``timeout`` s for the lent galleries, close all.
        Returns False when some were still lent at the deadline (they are closed anyway)."""
        with self._cond:
            self._closed = True
            drained = self._cond.wait_for(lambda: self._lent == 0, timeout)
        for gallery in self._all:
            with contextlib.suppress(Exception):
                gallery.close()
        return drained
