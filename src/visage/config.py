"""Settings in one place: default models, folders, limits, and every environment variable visage reads.

Nothing here reads the environment when it is imported: each setting that comes from an
environment variable is a small function that reads it when called, so a change to the
environment (a test's ``monkeypatch.setenv``, a server's start-up script) takes effect at once.

Folders follow one rule. ``$VISAGE_HOME``, when set, is the single folder for everything visage
writes: fetched and converted models, caches and the default gallery. When it is not set, files
that can be made again (models, caches) go to ``~/.cache/visage`` (:func:`visage_home`) and the
user's own data, the default gallery, goes to ``~/.local/share/visage`` (:func:`data_home`), so
that clearing a cache never deletes a gallery.

Environment variables:

- ``VISAGE_HOME``: see above.
- ``VISAGE_MAX_PIXELS``: largest image decoded, in pixels (default 120 million).
- ``VISAGE_MAX_BYTES``: largest encoded image file read, in bytes (default 200 MiB).
- ``VISAGE_WINOGRAD``: ``0`` turns the NNPACK (Winograd) convolutions off.
- ``VISAGE_MILVUS_TOKEN``: the token sent to a Milvus server gallery.
- ``VISAGE_GALLERY_KEY``: the passphrase the server encrypts stored encodings with.
- ``VISAGE_SERVER_*``: the server's settings (:mod:`visage.server.settings`).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import VisageError

#: The face detector used when none is named: dlib's HOG detector (fast on a CPU).
DEFAULT_DETECTOR = "hog"
#: Lowest detection score kept, per detector (their scores are on different scales). Measured on
#: the dev set (the 114 photos of faces/ and the 9 group photos of detection/, every detection
#: looked at) and on skimage's astronaut, whose mission patch HOG takes for a face: HOG scores that
#: false face 0.062 and its weakest true face 0.260 (lfw Arnold_Schwarzenegger_0008), so its floor
#: sits in the gap, a little nearer the false face. MMOD and MTCNN find no false face there, so
#: their floors are their own cut-offs, dlib's 0 and O-Net's 0.7; their weakest true faces scored
#: 0.229 (facerec_obama_partial_face2) and 0.863 (lfw Colin_Powell_0010, a face in the background).
DEFAULT_MIN_SCORE = {"hog": 0.15, "mmod": 0.0, "mtcnn": 0.7}
#: dlib's ResNet and FaceNet fused (``visage.encoders.fused``): fewer errors than either alone.
DEFAULT_ENCODER = "dlib+facenet"
#: The encoder ``visage train`` starts from: one network to fine-tune or to put a head on.
#: dlib's ResNet run by PyTorch: dlib's numbers (to 1e-6), batched; also the fast choice elsewhere.
DEFAULT_TRAIN_ENCODER = "dlib-torch"

HOME_ENV = "VISAGE_HOME"
MAX_PIXELS_ENV = "VISAGE_MAX_PIXELS"
MAX_BYTES_ENV = "VISAGE_MAX_BYTES"
WINOGRAD_ENV = "VISAGE_WINOGRAD"
MILVUS_TOKEN_ENV = "VISAGE_MILVUS_TOKEN"
#: Environment variable holding the passphrase that encrypts stored encodings (optional).
GALLERY_KEY_ENV = "VISAGE_GALLERY_KEY"

#: Largest image accepted by default, in pixels (width × height). Guards against decompression bombs.
DEFAULT_MAX_PIXELS = 120_000_000
#: Largest encoded image file accepted by default, in bytes.
DEFAULT_MAX_BYTES = 200 * 1024 * 1024


def _home_override() -> Path | None:
    value = os.environ.get(HOME_ENV)
    return Path(value).expanduser() if value else None


def visage_home() -> Path:
    """Where models, converted weights and caches live: ``$VISAGE_HOME``, else ``~/.cache/visage``."""
    return _home_override() or Path.home() / ".cache" / "visage"


def data_home() -> Path:
    """Where the user's own data (the default gallery) lives: ``$VISAGE_HOME``, else ``~/.local/share/visage``."""
    return _home_override() or Path.home() / ".local" / "share" / "visage"


def default_gallery_path() -> Path:
    """``$VISAGE_HOME/gallery.db`` when VISAGE_HOME is set, else ``~/.local/share/visage/gallery.db``."""
    return data_home() / "gallery.db"


def _positive_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise VisageError(f"{name}={value!r}: expected a whole number") from None
    if number <= 0:
        raise VisageError(f"{name}={value!r}: expected a number above 0")
    return number


def max_pixels() -> int:
    """Largest image decoded, in pixels: ``$VISAGE_MAX_PIXELS``, else :data:`DEFAULT_MAX_PIXELS`."""
    return _positive_int(MAX_PIXELS_ENV, DEFAULT_MAX_PIXELS)


def max_bytes() -> int:
    """Largest encoded image file read, in bytes: ``$VISAGE_MAX_BYTES``, else :data:`DEFAULT_MAX_BYTES`."""
    return _positive_int(MAX_BYTES_ENV, DEFAULT_MAX_BYTES)


def winograd_enabled() -> bool:
    """Whether NNPACK (Winograd) convolutions may be used: False when ``$VISAGE_WINOGRAD`` is ``0``."""
    return os.environ.get(WINOGRAD_ENV, "1") != "0"


def milvus_token() -> str | None:
    """The token for a Milvus server gallery, from ``$VISAGE_MILVUS_TOKEN``, or None."""
    return os.environ.get(MILVUS_TOKEN_ENV) or None


def gallery_key() -> str | None:
    """The passphrase encrypting stored encodings, from ``$VISAGE_GALLERY_KEY``, or None."""
    return os.environ.get(GALLERY_KEY_ENV, "") or None
