"""Encryption at rest of the face encodings a gallery stores.

When ``VISAGE_GALLERY_KEY`` holds a passphrase, the server opens its SQLite gallery through
:class:`EncryptedStore`: every encoding is encrypted before it is written and decrypted when it is
read back into the search index, so the file on disk holds no usable encoding. Names, photo hashes
and boxes stay readable (they are needed to manage people and to refuse duplicate photos).

The cipher is AES-256 in XTS mode, the mode made for encrypting storage in place: it keeps the
length, so an encrypted encoding fits the same column as a plain one. Each encoding is one XTS data
unit under one tweak, so two bit-identical encodings encrypt alike (the gallery already refuses a
photo enrolled twice); nothing else about an encoding can be learned without the key. The face
thumbnails (small JPEGs) are encrypted too, with AES-256-GCM under a random nonce each: they are
blobs of their own, so the length need not be kept, and GCM also refuses a tampered one. The keys come
from the passphrase through scrypt with a random salt kept in the gallery, and a check value there
refuses a wrong passphrase with a clear message instead of returning nonsense matches.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import replace

import numpy as np

from ..errors import GalleryError
from ..gallery.store import ENCRYPTION_SALT_KEY, Changes, Cursor, SQLiteStore
from ..gallery.types import FaceRecord, StoredFace

_SALT_KEY, _CHECK_KEY = ENCRYPTION_SALT_KEY, "encryption_check"
_CHECK_MESSAGE = b"visage gallery encryption key check v1"
_TWEAK = bytes(16)
_THUMBNAIL_INFO = b"visage gallery thumbnail key v1"


def _derive(passphrase: str, salt: bytes) -> tuple[bytes, bytes]:
    """(64-byte AES-256-XTS key, 32-byte key for the check value) from ``passphrase``."""
    material = hashlib.scrypt(passphrase.encode("utf-8"), salt=salt, n=2 ** 14, r=8, p=1, dklen=96,
                              maxmem=64 * 1024 * 1024)
    return material[:64], material[64:]


class EncryptedStore(SQLiteStore):
    """An SQLite gallery whose encodings are encrypted with a key derived from ``passphrase``."""

    encrypted = True

    def __init__(self, path, passphrase: str):
        if not passphrase:
            raise GalleryError("an encrypted gallery needs a non-empty key")
        super().__init__(path)
        salt_hex = self._meta(_SALT_KEY)
        if salt_hex is None:
            faces = self._db.execute("SELECT COUNT(*) FROM faces").fetchone()[0]
            if faces:
                self.close()
                raise GalleryError(f"{self.location}: holds {faces} unencrypted encodings; export it and import "
                                   "the file into a new gallery with the key set to encrypt them")
            salt = secrets.token_bytes(16)
            self._xts_key, mac_key = _derive(passphrase, salt)
            self._thumbnail_key = self._thumbnail_key_from(mac_key)
            with self._write() as db:
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (_SALT_KEY, salt.hex()))
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (_CHECK_KEY, self._check(mac_key)))
        else:
            self._xts_key, mac_key = _derive(passphrase, bytes.fromhex(salt_hex))
            if not hmac.compare_digest(self._meta(_CHECK_KEY) or "", self._check(mac_key)):
                self.close()
                raise GalleryError(f"{self.location}: wrong encryption key for this gallery (VISAGE_GALLERY_KEY)")
            self._thumbnail_key = self._thumbnail_key_from(mac_key)

    @staticmethod
    def _thumbnail_key_from(mac_key: bytes) -> bytes:
        # A key of its own for thumbnails, derived from the check-value key (as HKDF-Expand would).
        return hmac.new(mac_key, _THUMBNAIL_INFO, hashlib.sha256).digest()

    @staticmethod
    def _check(mac_key: bytes) -> str:
        return hmac.new(mac_key, _CHECK_MESSAGE, hashlib.sha256).hexdigest()

    def _cipher(self):
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        return Cipher(algorithms.AES(self._xts_key), modes.XTS(_TWEAK))

    def seal(self, vector: np.ndarray) -> np.ndarray:
        """The encrypted form of one encoding, as float32 values of the same length."""
        data = np.ascontiguousarray(vector, np.float32).tobytes()
        enc = self._cipher().encryptor()
        return np.frombuffer(enc.update(data) + enc.finalize(), np.float32).copy()

    def unseal(self, vector: np.ndarray) -> np.ndarray:
        """The plain encoding from its encrypted form."""
        dec = self._cipher().decryptor()
        data = np.ascontiguousarray(vector, np.float32).tobytes()
        return np.frombuffer(dec.update(data) + dec.finalize(), np.float32).copy()

    def seal_thumbnail(self, jpeg: bytes) -> bytes:
        """A thumbnail encrypted with AES-256-GCM: a 12-byte random nonce, then ciphertext and tag."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = secrets.token_bytes(12)
        return nonce + AESGCM(self._thumbnail_key).encrypt(nonce, jpeg, None)

    def unseal_thumbnail(self, sealed: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            return AESGCM(self._thumbnail_key).decrypt(sealed[:12], sealed[12:], None)
        except InvalidTag:
            raise GalleryError(f"{self.location}: a stored thumbnail is damaged or was not encrypted "
                               "with this gallery's key") from None

    def _open_face(self, face: StoredFace) -> StoredFace:
        return replace(face, record=replace(face.record, encoding=self.unseal(face.record.encoding)))

    # -- the Store interface, with encodings sealed on the way in and opened on the way out -------
    def add(self, name: str, records: list[FaceRecord], encoder: str, dim: int, encoder_key: str | None = None):
        sealed = [replace(r, encoding=self.seal(r.encoding),
                          thumbnail=None if r.thumbnail is None else self.seal_thumbnail(r.thumbnail))
                  for r in records]
        return super().add(name, sealed, encoder, dim, encoder_key)

    def thumbnail(self, face_id: int) -> bytes | None:
        sealed = super().thumbnail(face_id)
        return None if sealed is None else self.unseal_thumbnail(sealed)

    def faces(self, name: str) -> list[StoredFace]:
        return [self._open_face(f) for f in super().faces(name)]

    def iter_faces(self, batch: int = 10_000):
        for face in super().iter_faces(batch):
            yield self._open_face(face)

    def changes(self, cursor: Cursor) -> Changes:
        found = super().changes(cursor)
        if len(found.vectors):
            found.vectors = np.stack([self.unseal(v) for v in found.vectors])
        return found


def open_encrypted_or_plain(path, passphrase: str | None) -> SQLiteStore:
    """The store for the gallery file ``path``: encrypted when ``passphrase`` is given.

    Refuses (GalleryError) an encrypted gallery without a passphrase, rather than matching faces
    against ciphertext.
    """
    if passphrase:
        return EncryptedStore(path, passphrase)
    return SQLiteStore(path)  # which refuses an encrypted file itself


