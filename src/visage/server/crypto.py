"""Encryption at rest of what a gallery stores about each face.

When ``VISAGE_GALLERY_KEY`` holds a passphrase, the server opens its SQLite gallery through
:class:`EncryptedStore`. Every face's encoding, landmarks and source file name, its thumbnail, and
the source and result of every audit row in the gallery are sealed with AES-256-GCM under a random
12-byte nonce of their own before they are written, and opened when read back: the file on disk
holds none of them, two enrolments of the same pixels give different ciphertexts, and a tampered
value is refused (GCM's tag) rather than read as nonsense. Each value is bound to its column
(associated data), so one cannot be moved into another column unnoticed.

What stays readable, because the gallery needs it without the key or to answer cheaply: person
names (unique and looked up by name), their creation times, face counts, each face's photo hash
and box (they refuse a photo enrolled twice), quality score and time added, the embedding name,
dimension and encoder key, the audit rows' time, operation and photo hash, and the generation and
removal counters. ``docs/service.md`` lists them.

The keys come from the passphrase through scrypt with a random salt kept in the gallery; a check
value there refuses a wrong passphrase with a clear message instead of returning nonsense matches.
Galleries encrypted by visage before format 2 (encodings in AES-XTS under a fixed tweak, landmarks,
file names and audit rows in the clear) are converted, in one transaction, the first time they are
opened with their key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import replace

import numpy as np

from ..errors import GalleryDamaged, GalleryError
from ..gallery.store import ENCRYPTION_SALT_KEY, SQLiteStore
from ..gallery.types import FaceRecord

_SALT_KEY, _CHECK_KEY = ENCRYPTION_SALT_KEY, "encryption_check"
#: Meta key naming how the gallery is encrypted; absent in galleries made before format 2.
FORMAT_KEY, FORMAT = "encryption_format", "2"
_CHECK_MESSAGE = b"visage gallery encryption key check v1"
_TWEAK = bytes(16)
_THUMBNAIL_INFO = b"visage gallery thumbnail key v1"
_RECORD_INFO = b"visage gallery record key v2"
_NONCE, _TAG = 12, 16


def _derive(passphrase: str, salt: bytes) -> tuple[bytes, bytes]:
    """(64-byte AES-256-XTS key of format 1, 32-byte key the others come from) from ``passphrase``."""
    material = hashlib.scrypt(passphrase.encode("utf-8"), salt=salt, n=2 ** 14, r=8, p=1, dklen=96,
                              maxmem=64 * 1024 * 1024)
    return material[:64], material[64:]


def _subkey(mac_key: bytes, info: bytes) -> bytes:
    # A key of its own for each use, derived from the check-value key (as HKDF-Expand would).
    return hmac.new(mac_key, info, hashlib.sha256).digest()


class EncryptedStore(SQLiteStore):
    """An SQLite gallery whose encodings, landmarks, file names, thumbnails and audit summaries are
    encrypted with keys derived from ``passphrase``."""

    encrypted = True
    sealed_overhead = _NONCE + _TAG

    def __init__(self, path, passphrase: str):
        if not passphrase:
            raise GalleryError("an encrypted gallery needs a non-empty key")
        super().__init__(path)
        try:
            self._unlock(passphrase)
        except BaseException:
            self.close()
            raise

    def _unlock(self, passphrase: str) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        # Deleted rows are overwritten with zeros, so a removed person's name and the plain rows an
        # upgrade replaces do not linger in free pages.
        self._db.execute("PRAGMA secure_delete=ON")
        salt_hex = self._meta(_SALT_KEY)
        if salt_hex is None:
            with self._write() as db:  # under the write lock: two processes opening a new gallery agree on one salt
                salt_hex = self._meta(_SALT_KEY)
                if salt_hex is None:
                    faces = db.execute("SELECT COUNT(*) FROM faces").fetchone()[0]
                    if faces:
                        raise GalleryError(f"{self.location}: holds {faces} unencrypted encodings; export it and "
                                           "import the file into a new gallery with the key set to encrypt them")
                    salt = secrets.token_bytes(16)
                    _, mac_key = _derive(passphrase, salt)
                    db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (_SALT_KEY, salt.hex()))
                    db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (_CHECK_KEY, self._check(mac_key)))
                    db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (FORMAT_KEY, FORMAT))
                    salt_hex = salt.hex()
        try:
            salt = bytes.fromhex(salt_hex)
        except ValueError:
            raise GalleryDamaged(f"{self.location}: damaged visage gallery: meta row {_SALT_KEY!r} is not hex; "
                                 "restore the gallery from a backup") from None
        xts_key, mac_key = _derive(passphrase, salt)
        if not hmac.compare_digest(self._meta(_CHECK_KEY) or "", self._check(mac_key)):
            raise GalleryError(f"{self.location}: wrong encryption key for this gallery (VISAGE_GALLERY_KEY)")
        self._thumbnail_key = _subkey(mac_key, _THUMBNAIL_INFO)
        self._aead = AESGCM(_subkey(mac_key, _RECORD_INFO))
        found = self._meta(FORMAT_KEY)
        if found is None:
            self._upgrade_from_format_1(xts_key)
        elif found != FORMAT:
            raise GalleryError(f"{self.location}: encrypted in format {found[:20]!r}, which this visage does not "
                               "know (it knows format 2); upgrade visage")

    @staticmethod
    def _check(mac_key: bytes) -> str:
        return hmac.new(mac_key, _CHECK_MESSAGE, hashlib.sha256).hexdigest()

    # -- sealing: AES-256-GCM, a random nonce per value, the column as associated data ------------
    def _seal(self, data: bytes, column: str) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        return nonce + self._aead.encrypt(nonce, data, column.encode())

    def _open(self, sealed, column: str) -> bytes:
        from cryptography.exceptions import InvalidTag

        if isinstance(sealed, bytes) and len(sealed) >= _NONCE + _TAG:
            try:
                return self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], column.encode())
            except InvalidTag:
                pass
        raise GalleryDamaged(f"{self.location}: damaged visage gallery: a stored {column} value is not "
                             "encrypted with this gallery's key (tampered with, or written by something else); "
                             "restore the gallery from a backup")

    def _seal_encoding(self, vector: np.ndarray) -> bytes:
        return self._seal(np.ascontiguousarray(vector, np.float32).tobytes(), "faces.encoding")

    def _open_encoding(self, blob: bytes) -> np.ndarray:
        return np.frombuffer(self._open(blob, "faces.encoding"), np.float32).copy()

    def _open_encodings(self, blobs: list[bytes], dim: int) -> np.ndarray:
        return np.stack([self._open_encoding(b) for b in blobs]) if blobs else np.zeros((0, dim), np.float32)

    def _seal_text(self, text: str | None, column: str) -> bytes | None:
        return None if text is None else self._seal(text.encode("utf-8"), column)

    def _open_text(self, stored: str | bytes | None, column: str) -> str | None:
        return None if stored is None else self._open(stored, column).decode("utf-8")

    def seal_thumbnail(self, jpeg: bytes) -> bytes:
        """A thumbnail encrypted with AES-256-GCM: a 12-byte random nonce, then ciphertext and tag."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = secrets.token_bytes(_NONCE)
        return nonce + AESGCM(self._thumbnail_key).encrypt(nonce, jpeg, None)

    def unseal_thumbnail(self, sealed: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            return AESGCM(self._thumbnail_key).decrypt(sealed[:_NONCE], sealed[_NONCE:], None)
        except InvalidTag:
            raise GalleryError(f"{self.location}: a stored thumbnail is damaged or was not encrypted "
                               "with this gallery's key") from None

    # -- format 1 (encodings in AES-XTS under a fixed tweak, the rest in the clear) -> format 2 ----
    def _upgrade_from_format_1(self, xts_key: bytes) -> None:
        """Re-encrypt a format-1 gallery in place, in one transaction (a crash leaves it as it was)."""
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        def xts_open(blob: bytes) -> bytes:
            dec = Cipher(algorithms.AES(xts_key), modes.XTS(_TWEAK)).decryptor()
            return dec.update(blob) + dec.finalize()

        with self._write() as db:
            if self._meta(FORMAT_KEY) is not None:  # another process upgraded it meanwhile
                return
            dim, last = self._stored_dim(), 0
            while rows := db.execute("SELECT id, encoding, source, landmarks FROM faces WHERE id > ? ORDER BY id "
                                     "LIMIT 1000", (last,)).fetchall():
                for face_id, blob, source, landmarks in rows:
                    if dim is None or len(blob) != dim * 4:
                        raise GalleryDamaged(f"{self.path}: damaged visage gallery: faces row {face_id} has a "
                                             f"{len(blob)}-byte encoding; restore the gallery from a backup")
                    db.execute("UPDATE faces SET encoding = ?, source = ?, landmarks = ? WHERE id = ?",
                               (self._seal(xts_open(blob), "faces.encoding"), self._seal_text(source, "source"),
                                self._seal_text(landmarks, "landmarks"), face_id))
                last = rows[-1][0]
            last = 0
            while rows := db.execute("SELECT id, source, result FROM audit WHERE id > ? ORDER BY id LIMIT 1000",
                                     (last,)).fetchall():
                for row_id, source, result in rows:
                    db.execute("UPDATE audit SET source = ?, result = ? WHERE id = ?",
                               (self._seal_text(source, "audit.source"), self._seal_text(result, "audit.result"),
                                row_id))
                last = rows[-1][0]
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (FORMAT_KEY, FORMAT))
            self._bump()  # indexes built from the old rows reload
        # Copy the new pages over the old ones in the file now, not at some later checkpoint.
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- thumbnails are sealed on the way in and opened on the way out -----------------------------
    def add(self, name: str, records: list[FaceRecord], encoder: str, dim: int, encoder_key: str | None = None):
        sealed = [replace(r, thumbnail=None if r.thumbnail is None else self.seal_thumbnail(r.thumbnail))
                  for r in records]
        return super().add(name, sealed, encoder, dim, encoder_key)

    def thumbnail(self, face_id: int) -> bytes | None:
        sealed = super().thumbnail(face_id)
        return None if sealed is None else self.unseal_thumbnail(sealed)


def open_encrypted_or_plain(path, passphrase: str | None) -> SQLiteStore:
    """The store for the gallery file ``path``: encrypted when ``passphrase`` is given.

    Refuses (GalleryError) an encrypted gallery without a passphrase, rather than matching faces
    against ciphertext.
    """
    if passphrase:
        return EncryptedStore(path, passphrase)
    return SQLiteStore(path)  # which refuses an encrypted file itself
