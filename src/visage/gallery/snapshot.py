"""Index snapshots beside an SQLite gallery, so a new process need not re-read every encoding.

After a search index has taken in many faces at once (a cold start on a large gallery, a bulk
import) it is saved to ``<gallery file>.index/`` with the store cursor it had reached. The next
process memory-maps the exact index's array (or reads the IVF index) from there and applies only
the changes made since, through the same cursor. A snapshot is a cache: anything wrong with it
(missing, half-written, another gallery's, another index kind) means reading the store instead.
Encrypted or remote stores get no snapshot: it would be a plaintext copy of their encodings.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .index import ExactIndex, IvfIndex
from .store import PRIVATE_FOLDER, Cursor, SQLiteStore

#: Save a snapshot after one refresh took in at least this many faces.
SNAPSHOT_MIN_FACES = 50_000
FORMAT = 1


def snapshot_dir(store) -> Path | None:
    """Where ``store``'s snapshot lives, or None when it must not have one."""
    if type(store) is not SQLiteStore:  # subclasses (encrypted at rest) and other backends: never
        return None
    return store.path.with_name(store.path.name + ".index")


def _identity(store: SQLiteStore) -> str | None:
    return store._meta("gallery_id")


def save(store, index, kind: str, cursor: Cursor) -> bool:
    """Write ``index`` and ``cursor`` next to ``store``; returns False when it was not written."""
    folder = snapshot_dir(store)
    if folder is None or not hasattr(index, "save") or _identity(store) is None:
        return False
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(mode=PRIVATE_FOLDER)  # it holds every encoding: the owner's alone, like the gallery
        index.save(tmp)
        # The state file last: a folder without it is never used.
        (tmp / "state.json").write_text(json.dumps({
            "format": FORMAT, "gallery_id": _identity(store), "kind": kind, "dim": index.dim,
            "cursor": {"face": cursor.face, "removal": cursor.removal}}))
        old = folder.with_name(f"{folder.name}.old-{os.getpid()}")
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
        return True
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        return False


def load(store, kind: str, dim: int):
    """(index, cursor) from ``store``'s snapshot, or None when there is none it can use."""
    folder = snapshot_dir(store)
    if folder is None or not (folder / "state.json").is_file():
        return None
    try:
        if folder.stat().st_mode & 0o077:  # written by an older visage: others could read the encodings
            folder.chmod(PRIVATE_FOLDER)
        state = json.loads((folder / "state.json").read_text())
        if (state.get("format") != FORMAT or state.get("gallery_id") != _identity(store)
                or state.get("kind") != kind or state.get("dim") != dim):
            return None
        face, removal = int(state["cursor"]["face"]), int(state["cursor"]["removal"])
        newest = store._db.execute("SELECT COALESCE(MAX(seq), 0) FROM removed").fetchone()[0]
        last_face = store._db.execute("SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'faces'"
                                      ).fetchone()[0]
        if removal > newest or face > last_face:
            return None  # the file was replaced by an older copy: the snapshot is from its future
        index = (ExactIndex if kind == "exact" else IvfIndex).load(folder, dim)
    except (OSError, EOFError, ValueError, KeyError, TypeError, RuntimeError):
        return None
    # generation -1: the first refresh always applies what changed since the snapshot.
    return index, Cursor(face=face, removal=removal, generation=-1)
