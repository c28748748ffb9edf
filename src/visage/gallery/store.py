"""What a gallery backend stores, and the SQLite backend (the embedded default).

A backend keeps people, their faces and an audit log, and refuses to mix encoders. It records the
encoder that filled it twice over: its embedding space (the encoder's ``.name``, which every new
encoding must match) and how to load it again (:func:`encoder_key_for`), so that the gallery can be
used without naming its encoder. The SQLite backend is one file in WAL mode; every enrolment of a
person is one transaction, so a killed process leaves either the whole person or nothing, and
concurrent writers queue on SQLite's lock. Local indexes follow the store through
:meth:`SQLiteStore.changes`, a cursor over added and removed faces, so they are updated, not rebuilt.
"""

from __future__ import annotations

import errno
import json
import os
import random
import sqlite3
import time
import unicodedata
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from .. import __version__
from ..errors import (
    FaceNotFound,
    GalleryDamaged,
    GalleryError,
    InvalidArgument,
    NameTaken,
    PersonNotFound,
    StorageFull,
)
from ..faces.types import Box
from .types import FaceRecord, Person, StoredFace

#: ``PRAGMA application_id`` of a visage gallery ("VSGL"), so foreign SQLite files are refused.
APPLICATION_ID = 0x5653474C
#: Meta key present only in galleries whose encodings are encrypted.
ENCRYPTION_SALT_KEY = "encryption_salt"
SCHEMA_VERSION = 1
#: Embedding spaces stored by galleries made before they recorded how to load their encoder, and
#: the registry key that makes each. dlib and dlib-torch share one space; the faster one is chosen.
LEGACY_ENCODER_KEYS = {"dlib-resnet-v1": "dlib-torch", "facenet-vggface2": "facenet"}

#: A small JPEG of each face (see FaceRecord.thumbnail), in a table of its own so that scans of the
#: faces never read pictures; deleting a face deletes its thumbnail (foreign keys are on).
_THUMBNAILS = """CREATE TABLE IF NOT EXISTS thumbnails (
    face_id INTEGER PRIMARY KEY REFERENCES faces(id) ON DELETE CASCADE,
    jpeg BLOB NOT NULL)"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS people (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS faces (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    person_id INTEGER NOT NULL REFERENCES people(id),
    encoding BLOB NOT NULL,
    encoder TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    source TEXT NOT NULL,
    box TEXT,
    landmarks TEXT,
    quality REAL NOT NULL,
    added REAL NOT NULL);
CREATE INDEX IF NOT EXISTS faces_person ON faces(person_id);
CREATE INDEX IF NOT EXISTS faces_sha256 ON faces(sha256);
CREATE TABLE IF NOT EXISTS removed (seq INTEGER PRIMARY KEY AUTOINCREMENT, face_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    operation TEXT NOT NULL,
    sha256 TEXT,
    source TEXT,
    result TEXT NOT NULL);
""" + _THUMBNAILS


@dataclass
class Cursor:
    """How far a local index has followed the store: last face id, last removal, generation."""

    face: int = 0
    removal: int = 0
    generation: int = -1


@dataclass
class Changes:
    """Faces added and removed since a :class:`Cursor`, and the new cursor."""

    face_ids: np.ndarray
    person_ids: np.ndarray
    vectors: np.ndarray
    removed: np.ndarray
    cursor: Cursor
    names_changed: bool = False


@dataclass
class AddResult:
    """The outcome of :meth:`Store.add`: face ids written, and records skipped as duplicates."""

    face_ids: list[int] = field(default_factory=list)
    duplicates: list[tuple[FaceRecord, str]] = field(default_factory=list)


def encoder_key_for(encoder: str | os.PathLike) -> str:
    """What a gallery records to load ``encoder`` again: a registry key as it is, a trained model
    file as its absolute path (so the gallery works from any folder)."""
    from ..encoders import is_trained_file

    return str(Path(encoder).expanduser().resolve()) if is_trained_file(encoder) else str(encoder)


class Store(Protocol):
    """A gallery backend."""

    location: str

    def encoder(self) -> tuple[str, int] | None:
        """(encoder name, dimension) of the stored encodings, or None while the gallery is empty."""
        ...

    def encoder_key(self) -> str | None:
        """How to load the encoder that filled the gallery (:func:`encoder_key_for`), or None while
        it is empty or when it was made before this was recorded."""
        ...

    def add(self, name: str, records: list[FaceRecord], encoder: str, dim: int,
            encoder_key: str | None = None) -> AddResult:
        """Add faces to ``name`` (created if new), all or nothing; skip faces already stored.

        ``encoder``/``dim`` are the embedding space, which must match the stored one; ``encoder_key``,
        how to load that encoder, is recorded when the gallery has none yet.
        """
        ...

    def owners(self, sha256s: list[str]) -> dict[str, str]:
        """Which person each already-enrolled photo (by sha256) belongs to."""
        ...

    def people(self) -> list[Person]: ...

    def faces(self, name: str) -> list[StoredFace]: ...

    def rename(self, old: str, new: str) -> None: ...

    def remove(self, name: str) -> int: ...

    def remove_face(self, face_id: int) -> tuple[str, int]:
        """Forget one face; returns its owner's name and how many faces they have left. The person
        goes with their last face (a person without faces cannot be recognised)."""
        ...

    def thumbnail(self, face_id: int) -> bytes | None:
        """The JPEG thumbnail stored with face ``face_id``, or None when it has none
        (raises :class:`FaceNotFound` for an unknown id)."""
        ...

    def names(self) -> dict[int, str]:
        """Person id → name."""
        ...

    def iter_faces(self, batch: int = 10_000) -> Iterator[StoredFace]: ...

    def log(self, operation: str, sha256: str | None, source: str | None, result: dict) -> None: ...

    def audit(self, limit: int = 100) -> list[dict]: ...

    def close(self) -> None: ...


def _box_json(box: Box | None) -> str | None:
    return json.dumps(box.to_dict()) if box else None


#: Audit rows: the longest result JSON and source name kept (longer ones are cut, see capped_json).
AUDIT_RESULT_CHARS = 4000
AUDIT_SOURCE_CHARS = 300


def capped_json(value: dict, max_chars: int, max_text: int = 200) -> str:
    """``value`` as JSON of at most ``max_chars`` characters, for an audit row.

    Texts longer than ``max_text`` are cut (marked with "…"); if the JSON is still too long, it is
    replaced by ``{"truncated": <its first characters>}``, so the row always reads back as JSON.
    """
    text = json.dumps(value, default=str)
    if len(text) <= max_chars:
        return text

    def shorten(item):
        if isinstance(item, str):
            return item if len(item) <= max_text else item[:max_text] + "…"
        if isinstance(item, dict):
            return {shorten(str(k)): shorten(v) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [shorten(v) for v in item]
        return item

    text = json.dumps(shorten(value), default=str)
    if len(text) <= max_chars:
        return text
    inner = text[:max_chars]
    while len(capped := json.dumps({"truncated": inner})) > max_chars:  # escapes make the JSON longer
        inner = inner[:max(0, len(inner) - (len(capped) - max_chars))]
    return capped


def delete_old_audit_rows(db: sqlite3.Connection, keep_days: float, now: float | None = None) -> int:
    """Delete the rows of ``db``'s ``audit`` table older than ``keep_days`` days (0: none); returns how many.

    Row ids grow with time, so the rows to go are those below the first recent id: found by
    walking ids from the oldest, without an index on the time column.
    """
    if keep_days <= 0:
        return 0
    cutoff = (time.time() if now is None else now) - keep_days * 86400.0
    first_kept = db.execute("SELECT id FROM audit WHERE time >= ? ORDER BY id LIMIT 1", (cutoff,)).fetchone()
    if first_kept is None:
        return db.execute("DELETE FROM audit WHERE time < ?", (cutoff,)).rowcount
    return db.execute("DELETE FROM audit WHERE id < ?", (first_kept[0],)).rowcount


def prune_audit(store: Store, keep_days: float, now: float | None = None) -> int:
    """Delete ``store``'s audit rows older than ``keep_days`` days (0: keep all); returns how many.

    Only SQLite galleries keep their audit rows in a file this can prune; others return 0.
    """
    return store.prune_audit(keep_days, now) if isinstance(store, SQLiteStore) else 0


def _landmarks_json(points: np.ndarray | None) -> str | None:
    return None if points is None else json.dumps(np.round(np.asarray(points, float), 2).tolist())


def _record_from_row(encoding: np.ndarray, sha: str, source: str, box: str | None, lm: str | None,
                     quality: float) -> FaceRecord:
    return FaceRecord(
        encoding=encoding, sha256=sha, source=source,
        box=Box(**json.loads(box)) if box else None,
        landmarks5=np.asarray(json.loads(lm), np.float32) if lm else None, quality=quality)


#: errno values that mean the disk, or the user's quota on it, is full.
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_storage_full(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's "database or disk is full" or an OS write refused for want of space."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return (code & 0xFF) == sqlite3.SQLITE_FULL if code is not None else "disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS


def storage_full(location: str, exc: BaseException) -> StorageFull:
    """The :class:`StorageFull` to raise for ``exc`` (a failed write to the gallery at ``location``)."""
    return StorageFull(f"{location}: no space left on the disk (or the quota is used up), so nothing was "
                       f"written ({exc}); free some space and retry")


def _initialise(db: sqlite3.Connection) -> None:
    """Write a new gallery's schema and meta rows (inside the caller's transaction)."""
    db.execute(f"PRAGMA application_id={APPLICATION_ID}")
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    for statement in _SCHEMA.strip().split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute("INSERT OR IGNORE INTO meta VALUES ('generation', '0')")
    db.execute("INSERT OR IGNORE INTO meta VALUES ('created_by', ?)", (f"visage {__version__}",))
    db.execute("INSERT OR IGNORE INTO meta VALUES ('gallery_id', ?)", (uuid.uuid4().hex,))


def _create_atomically(path: Path) -> None:
    """Make a whole new gallery under a temporary name, then link it into place.

    Two processes creating one gallery at once never see a half-made file: the first link wins,
    and the other process drops its copy and opens the winner's.
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.new")
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE))
    try:
        db = sqlite3.connect(tmp, isolation_level=None)
        try:
            # WAL is recorded in the file, so the processes that open it never have to switch modes
            # (a switch needs the whole file to itself, and fails at once when another process reads).
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("BEGIN IMMEDIATE")
            _initialise(db)
            db.execute("COMMIT")
        finally:
            db.close()
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process made it first
    finally:
        tmp.unlink(missing_ok=True)


#: How long opening a gallery goes on trying while another process holds it locked.
_OPEN_RETRY_SECONDS = 30.0


def _is_locked(exc: sqlite3.OperationalError) -> bool:
    message = str(exc).lower()
    return "locked" in message or "busy" in message


#: Owner-only permissions: a gallery holds face templates, which are personal data.
PRIVATE_FILE, PRIVATE_FOLDER = 0o600, 0o700


def make_private_folders(folder: Path) -> None:
    """Create ``folder`` and any missing parents with owner-only permissions (0700)."""
    missing = [p for p in [folder, *folder.parents] if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    for made in missing:
        made.chmod(PRIVATE_FOLDER)


def tighten_private(path: Path) -> None:
    """Make a file that others can read (a gallery, the server's state) owner-only (0600), with a warning.

    SQLite gives its -wal and -shm files the database file's permissions, so they are checked too.
    """
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if not file.exists() or file.stat().st_mode & 0o077 == 0:
            continue
        try:
            file.chmod(PRIVATE_FILE)
            warnings.warn(f"{file}: was readable by others; made readable by its owner only (0600)", stacklevel=4)
        except OSError as exc:
            warnings.warn(f"{file}: readable by others, and could not be tightened ({exc.strerror})", stacklevel=4)


class SQLiteStore:
    """A gallery in one SQLite file (WAL journal, one transaction per enrolled person)."""

    #: Whether this store encrypts encodings (see visage.server.crypto); a plain store refuses encrypted files.
    encrypted = False
    #: Bytes a stored encoding holds beyond its float32 values (an encrypted store's nonce and tag).
    sealed_overhead = 0

    # -- how values are written and read back: as they are here, encrypted by visage.server.crypto --
    def _seal_encoding(self, vector: np.ndarray) -> bytes:
        return vector.tobytes()

    def _open_encoding(self, blob: bytes) -> np.ndarray:
        return np.frombuffer(blob, np.float32).copy()

    def _open_encodings(self, blobs: list[bytes], dim: int) -> np.ndarray:
        """The encodings ``blobs`` (already length-checked) as one (n, dim) float32 array."""
        return (np.frombuffer(b"".join(blobs), np.float32).reshape(len(blobs), dim)
                if blobs else np.zeros((0, dim), np.float32))

    def _seal_text(self, text: str | None, column: str) -> str | bytes | None:
        """What to store for the free text ``text`` (a file name, landmarks, an audit summary)."""
        return text

    def _open_text(self, stored: str | bytes | None, column: str) -> str | None:
        return stored  # type: ignore[return-value]  # a plain gallery stores text as text

    def _record(self, encoding: bytes, sha: str, source, box: str | None, lm, quality: float) -> FaceRecord:
        """The FaceRecord of one faces row (its columns as stored)."""
        return _record_from_row(self._open_encoding(encoding), sha, self._open_text(source, "source") or "", box,
                                self._open_text(lm, "landmarks"), quality)

    def __init__(self, path: str | os.PathLike, *, create: bool = True):
        self.path = Path(path).expanduser()
        self.location = str(self.path)
        if self.path.is_dir():
            raise GalleryError(f"{self.path}: is a directory, not a gallery file")
        exists = self.path.exists() and self.path.stat().st_size > 0
        if not exists and not create:
            raise GalleryError(f"{self.path}: no such gallery")
        if not exists:
            try:
                make_private_folders(self.path.parent)
                if not self.path.exists():
                    _create_atomically(self.path)
                    exists = True
            except (OSError, sqlite3.Error) as exc:
                if is_storage_full(exc):
                    raise storage_full(self.location, exc) from exc
                raise
        deadline = time.monotonic() + _OPEN_RETRY_SECONDS
        while True:
            try:
                self._db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None, check_same_thread=False)
                try:
                    self._check_or_create(exists)
                except BaseException:
                    self._db.close()
                    raise
                break
            except sqlite3.OperationalError as exc:
                # SQLite answers "locked" without waiting in a few cases (another process recovering
                # the WAL, or setting the file up): wait a moment and open again.
                if _is_locked(exc) and time.monotonic() < deadline:
                    time.sleep(0.05 + random.random() * 0.1)
                    continue
                if is_storage_full(exc):
                    raise storage_full(self.location, exc) from exc
                raise GalleryError(f"{self.path}: not a visage gallery ({exc})") from None
            except sqlite3.DatabaseError as exc:
                if is_storage_full(exc):
                    raise storage_full(self.location, exc) from exc
                raise GalleryError(f"{self.path}: not a visage gallery ({exc})") from None
        tighten_private(self.path)  # only once it is known to be a gallery: another program's file is left alone

    # -- opening -------------------------------------------------------------------------------
    def _check_or_create(self, exists: bool) -> None:
        db = self._db
        if exists:
            app_id = db.execute("PRAGMA application_id").fetchone()[0]
            if app_id != APPLICATION_ID:
                raise GalleryError(f"{self.path}: an SQLite database, but not a visage gallery")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise GalleryError(f"{self.path}: made by a newer visage (schema {version}); upgrade visage")
        db.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed enrolment survives a crash of the machine, not only of the process.
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        if not exists:
            with self._write():
                _initialise(db)
        else:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            missing = {"meta", "people", "faces", "removed", "audit"} - tables
            if missing:
                raise GalleryError(f"{self.path}: damaged visage gallery (missing tables {sorted(missing)})")
            result = db.execute("PRAGMA quick_check").fetchone()[0]
            if result != "ok":
                raise GalleryError(f"{self.path}: damaged visage gallery ({result})")
            self._check_rows()
            if not self.encrypted and self._meta(ENCRYPTION_SALT_KEY) is not None:
                raise GalleryError(f"{self.path}: its encodings are encrypted; set VISAGE_GALLERY_KEY to the key "
                                   "that made it and use `visage serve`")
            if self._meta("gallery_id") is None:  # galleries made before ids existed get one
                with self._write():
                    db.execute("INSERT OR IGNORE INTO meta VALUES ('gallery_id', ?)", (uuid.uuid4().hex,))
            if "thumbnails" not in tables:  # galleries made before thumbnails: their faces have none
                with self._write():
                    db.execute(_THUMBNAILS)

    def _check_rows(self) -> None:
        """Cheap checks that the rows are usable: meta values parse, every face has its person.

        (An encoding of the wrong length is caught when it is read: checking them all here would
        read the whole file on every open.)
        """
        self._meta_int("generation")
        self._meta_int("dim")
        for table, rowid, parent, _ in self._db.execute("PRAGMA foreign_key_check"):
            raise GalleryDamaged(f"{self.path}: damaged visage gallery: {table} row {rowid} refers to a {parent} "
                                 f"row that does not exist; restore the gallery from a backup, or delete that row "
                                 f"(sqlite3: DELETE FROM {table} WHERE rowid = {rowid})")

    def _meta_int(self, key: str) -> int | None:
        """A meta value that must be a whole number (0 or more), or None when absent."""
        value = self._meta(key)
        if value is None:
            return None
        try:
            number = int(value)
        except ValueError:
            number = -1
        if number < 0:
            raise GalleryDamaged(f"{self.path}: damaged visage gallery: meta row {key!r} is {value[:40]!r}, not a "
                                 "whole number; restore the gallery from a backup")
        return number

    def _check_encoding(self, face_id: int, blob: bytes, dim: int | None) -> None:
        """Refuse an encoding whose length is not the gallery's dimension (float32 values, and the
        nonce and tag of an encrypted one)."""
        if dim is None or len(blob) != dim * 4 + self.sealed_overhead:
            sealed = f" + {self.sealed_overhead} of nonce and tag" if self.sealed_overhead else ""
            expected = (f"{dim * 4 + self.sealed_overhead} bytes ({dim} float32 values{sealed})" if dim
                        else "none (the gallery records no dimension)")
            raise GalleryDamaged(f"{self.path}: damaged visage gallery: faces row {face_id} has a {len(blob)}-byte "
                                 f"encoding, expected {expected}; restore the gallery from a backup, or delete that "
                                 f"face (DELETE /v1/faces/{face_id}, or sqlite3: DELETE FROM faces WHERE id = {face_id})")

    class _Txn:
        def __init__(self, db: sqlite3.Connection, location: str):
            self.db, self.location = db, location

        def __enter__(self):
            # IMMEDIATE takes the write lock up front, so checks made inside hold until commit.
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, kind, exc, tb):
            failure = exc
            if kind is None:
                try:
                    self.db.execute("COMMIT")
                    return False
                except sqlite3.Error as commit_failed:
                    failure = commit_failed
            if self.db.in_transaction:  # after a full disk SQLite may have rolled back already
                self.db.execute("ROLLBACK")
            if failure is not None and is_storage_full(failure):
                raise storage_full(self.location, failure) from failure
            if failure is not exc:
                raise failure
            return False

    def _write(self) -> _Txn:
        return SQLiteStore._Txn(self._db, self.location)

    def _bump(self) -> None:
        self._db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    # -- the Store interface -------------------------------------------------------------------
    def encoder(self) -> tuple[str, int] | None:
        name, dim = self._meta("encoder"), self._meta_int("dim")
        return (name, dim) if name and dim else None

    def encoder_key(self) -> str | None:
        return self._meta("encoder_key")

    def add(self, name: str, records: list[FaceRecord], encoder: str, dim: int,
            encoder_key: str | None = None) -> AddResult:
        name = _check_name(name)
        result = AddResult()
        if not records:
            return result
        now = time.time()
        with self._write() as db:
            self._bind_encoder(encoder, dim, encoder_key)
            row = db.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
            person_id = row[0] if row else db.execute(
                "INSERT INTO people (name, created) VALUES (?, ?)", (name, now)).lastrowid
            for rec in records:
                vector = np.asarray(rec.encoding, np.float32).reshape(-1)
                if len(vector) != dim:
                    raise GalleryError(f"{rec.source}: encoding has {len(vector)} values, the gallery holds {dim}")
                box = _box_json(rec.box)
                dup = db.execute("SELECT p.name FROM faces f JOIN people p ON p.id = f.person_id "
                                 "WHERE f.sha256 = ? AND f.box IS ?", (rec.sha256, box)).fetchone()
                if dup:
                    result.duplicates.append((rec, dup[0]))
                    continue
                face_id = db.execute(
                    "INSERT INTO faces (person_id, encoding, encoder, sha256, source, box, landmarks, quality, added)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (person_id, self._seal_encoding(vector), encoder, rec.sha256, self._seal_text(rec.source, "source"),
                     box, self._seal_text(_landmarks_json(rec.landmarks5), "landmarks"), float(rec.quality),
                     now)).lastrowid
                if rec.thumbnail is not None:
                    db.execute("INSERT INTO thumbnails (face_id, jpeg) VALUES (?, ?)", (face_id, rec.thumbnail))
                result.face_ids.append(face_id)
            if not result.face_ids and not row:
                # Every face was a duplicate: do not leave an empty person behind.
                db.execute("DELETE FROM people WHERE id = ?", (person_id,))
            self._bump()
        return result

    def _bind_encoder(self, encoder: str, dim: int, encoder_key: str | None) -> None:
        bound = self.encoder()
        if bound is None:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('encoder', ?)", (encoder,))
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('dim', ?)", (str(dim),))
        elif bound != (encoder, dim):
            raise GalleryError(f"{self.location}: holds {bound[0]} encodings ({bound[1]}-d); "
                               f"refusing to mix in {encoder} ({dim}-d)")
        if encoder_key and self.encoder_key() is None:
            # A gallery made before keys were recorded learns its key from the first enrolment that has one.
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('encoder_key', ?)", (encoder_key,))

    def owners(self, sha256s: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for i in range(0, len(sha256s), 500):
            chunk = sha256s[i:i + 500]
            marks = ",".join("?" * len(chunk))
            for sha, name in self._db.execute(
                    f"SELECT f.sha256, p.name FROM faces f JOIN people p ON p.id = f.person_id "
                    f"WHERE f.sha256 IN ({marks})", chunk):
                out[sha] = name
        return out

    def people(self) -> list[Person]:
        rows = self._db.execute("SELECT p.name, COUNT(f.id), p.created FROM people p "
                                "LEFT JOIN faces f ON f.person_id = p.id GROUP BY p.id ORDER BY p.name")
        return [Person(name, n, created) for name, n, created in rows]

    def _person_id(self, name: str) -> int:
        row = self._db.execute("SELECT id FROM people WHERE name = ?", (_lookup_name(name),)).fetchone()
        if row is None:
            raise PersonNotFound(f"no person called {name!r} in the gallery")
        return row[0]

    def faces(self, name: str) -> list[StoredFace]:
        pid = self._person_id(name)
        dim = self._stored_dim()
        rows = self._db.execute("SELECT f.id, f.encoding, f.sha256, f.source, f.box, f.landmarks, f.quality, f.added, "
                                "t.face_id IS NOT NULL FROM faces f LEFT JOIN thumbnails t ON t.face_id = f.id "
                                "WHERE f.person_id = ? ORDER BY f.id", (pid,)).fetchall()
        for fid, blob, *_ in rows:
            self._check_encoding(fid, blob, dim)
        return [StoredFace(fid, name, self._record(*rest[:6]), rest[6], bool(rest[7])) for fid, *rest in rows]

    def _stored_dim(self) -> int | None:
        bound = self.encoder()
        return bound[1] if bound else None

    def rename(self, old: str, new: str) -> None:
        new = _check_name(new)
        with self._write() as db:
            pid = self._person_id(old)
            if db.execute("SELECT 1 FROM people WHERE name = ?", (new,)).fetchone():
                raise NameTaken(f"there is already a person called {new!r}")
            db.execute("UPDATE people SET name = ? WHERE id = ?", (new, pid))
            self._bump()

    def remove(self, name: str) -> int:
        with self._write() as db:
            pid = self._person_id(name)
            ids = [r[0] for r in db.execute("SELECT id FROM faces WHERE person_id = ?", (pid,))]
            db.executemany("INSERT INTO removed (face_id) VALUES (?)", [(i,) for i in ids])
            db.execute("DELETE FROM faces WHERE person_id = ?", (pid,))
            db.execute("DELETE FROM people WHERE id = ?", (pid,))
            self._bump()
        return len(ids)

    def remove_face(self, face_id: int) -> tuple[str, int]:
        with self._write() as db:
            row = db.execute("SELECT p.id, p.name FROM faces f JOIN people p ON p.id = f.person_id WHERE f.id = ?",
                             (face_id,)).fetchone()
            if row is None:
                raise FaceNotFound(f"no face with id {face_id} in {self.location}")
            pid, name = row
            db.execute("INSERT INTO removed (face_id) VALUES (?)", (face_id,))
            db.execute("DELETE FROM faces WHERE id = ?", (face_id,))
            left = db.execute("SELECT COUNT(*) FROM faces WHERE person_id = ?", (pid,)).fetchone()[0]
            if not left:
                db.execute("DELETE FROM people WHERE id = ?", (pid,))
            self._bump()
        return name, left

    def thumbnail(self, face_id: int) -> bytes | None:
        row = self._db.execute("SELECT t.jpeg FROM faces f LEFT JOIN thumbnails t ON t.face_id = f.id WHERE f.id = ?",
                               (face_id,)).fetchone()
        if row is None:
            raise FaceNotFound(f"no face with id {face_id} in {self.location}")
        return row[0]

    def names(self) -> dict[int, str]:
        return dict(self._db.execute("SELECT id, name FROM people"))

    def changes(self, cursor: Cursor) -> Changes:
        """Faces added and removed since ``cursor`` (one consistent snapshot)."""
        db = self._db
        db.execute("BEGIN")  # a read transaction: one snapshot for all three queries
        try:
            generation = self._meta_int("generation") or 0
            if generation == cursor.generation:
                empty = np.zeros(0, np.int64)
                return Changes(empty, empty, np.zeros((0, 0), np.float32), empty, cursor)
            rows = db.execute("SELECT id, person_id, encoding FROM faces WHERE id > ? ORDER BY id",
                              (cursor.face,)).fetchall()
            removed = db.execute("SELECT seq, face_id FROM removed WHERE seq > ? ORDER BY seq",
                                 (cursor.removal,)).fetchall()
            orphan = db.execute("SELECT f.id, f.person_id FROM faces f LEFT JOIN people p ON p.id = f.person_id "
                                "WHERE f.id > ? AND p.id IS NULL LIMIT 1", (cursor.face,)).fetchone()
        finally:
            db.execute("COMMIT")
        face_ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        person_ids = np.fromiter((r[1] for r in rows), np.int64, len(rows))
        if orphan:
            raise GalleryDamaged(f"{self.path}: damaged visage gallery: faces row {orphan[0]} belongs to person "
                                 f"{orphan[1]}, who is not in the people table; restore the gallery from a backup, "
                                 f"or delete that face (sqlite3: DELETE FROM faces WHERE id = {orphan[0]})")
        dim = self._stored_dim() if rows else 0
        for fid, _, blob in rows:
            self._check_encoding(fid, blob, dim)
        vectors = self._open_encodings([r[2] for r in rows], dim or 0)
        new = Cursor(face=int(face_ids[-1]) if len(rows) else cursor.face,
                     removal=removed[-1][0] if removed else cursor.removal, generation=generation)
        return Changes(face_ids, person_ids, vectors, np.array([r[1] for r in removed], np.int64), new,
                       names_changed=True)

    def iter_faces(self, batch: int = 10_000) -> Iterator[StoredFace]:
        last = 0
        dim = self._stored_dim()
        while True:
            rows = self._db.execute(
                "SELECT f.id, p.name, f.encoding, f.sha256, f.source, f.box, f.landmarks, f.quality, f.added, "
                "t.face_id IS NOT NULL FROM faces f JOIN people p ON p.id = f.person_id "
                "LEFT JOIN thumbnails t ON t.face_id = f.id WHERE f.id > ? ORDER BY f.id LIMIT ?",
                (last, batch)).fetchall()
            if not rows:
                return
            for fid, name, *rest in rows:
                self._check_encoding(fid, rest[0], dim)
                yield StoredFace(fid, name, self._record(*rest[:6]), rest[6], bool(rest[7]))
            last = rows[-1][0]

    def log(self, operation: str, sha256: str | None, source: str | None, result: dict) -> None:
        with self._write() as db:
            db.execute("INSERT INTO audit (time, operation, sha256, source, result) VALUES (?, ?, ?, ?, ?)",
                       (time.time(), operation[:64], sha256[:64] if sha256 else sha256,
                        self._seal_text(source[:AUDIT_SOURCE_CHARS] if source else source, "audit.source"),
                        self._seal_text(capped_json(result, AUDIT_RESULT_CHARS), "audit.result")))

    def audit(self, limit: int = 100) -> list[dict]:
        rows = self._db.execute("SELECT id, time, operation, sha256, source, result FROM audit "
                                "ORDER BY id DESC LIMIT ?", (limit,))
        return [{"id": i, "time": t, "operation": op, "sha256": sha, "source": self._open_text(src, "audit.source"),
                 "result": json.loads(self._open_text(res, "audit.result") or "{}")} for i, t, op, sha, src, res in rows]

    def prune_audit(self, keep_days: float, now: float | None = None) -> int:
        """Delete audit rows older than ``keep_days`` days (0: none); returns how many."""
        with self._write() as db:
            return delete_old_audit_rows(db, keep_days, now)

    def integrity(self) -> str:
        """SQLite's own integrity check: ``"ok"`` when the file is sound."""
        return self._db.execute("PRAGMA integrity_check").fetchone()[0]

    def close(self) -> None:
        self._db.close()


#: Bidirectional embeddings, overrides and isolates: they make a name display as another one.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _lookup_name(name: str) -> str:
    """A name as stored: NFC (so composed and decomposed accents are one person) and stripped."""
    return unicodedata.normalize("NFC", name or "").strip()


def _check_name(name: str) -> str:
    """The name to store for a new person or a rename; raises InvalidArgument for one a person cannot read."""
    name = _lookup_name(name)
    if not name:
        raise InvalidArgument("a person needs a name with something other than spaces in it")
    if len(name) > 200 or any(unicodedata.category(c) == "Cc" or c in _BIDI_CONTROLS for c in name):
        raise InvalidArgument(f"{name[:40]!r}: names must be at most 200 printable characters, without control "
                              "or text-direction characters")
    return name
