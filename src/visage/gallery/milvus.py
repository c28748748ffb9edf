"""A gallery backend on Milvus, a distributed vector database, through ``pymilvus``.

The same class talks to Milvus Lite (a local Milvus in one file, for development and tests) and
to a Milvus server or cluster; only the location string differs:

- ``milvus-lite:/path/to/gallery.milvus.db``
- ``milvus://host:19530`` or ``milvus+https://host:443``, with ``?db=NAME`` and ``?prefix=NAME``
  (collection name prefix, default ``visage``) and ``?index=HNSW`` (server-side index type,
  default ``AUTOINDEX``; Milvus Lite uses ``FLAT``). The token comes from ``$VISAGE_MILVUS_TOKEN``
  (``user:password`` or an API key), never from the command line.

Search runs on the server: Milvus returns the nearest faces, visage keeps each person's nearest.
Milvus has no multi-collection transactions, so all faces of one enrolment go in one insert
request and a person counts as enrolled only once they have faces. Face thumbnails are not kept
in Milvus (it stores vectors and short strings); faces there have none.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import numpy as np

from ..config import milvus_token
from ..errors import FaceNotFound, GalleryError, NameTaken, PersonNotFound
from ..extras import missing_extra
from .store import AddResult, _box_json, _check_name, _landmarks_json, _lookup_name, _record_from_row
from .types import FaceRecord, Person, StoredFace

#: The most rows Milvus returns from one search or query.
MAX_LIMIT = 16_384
_DUMMY = [0.0, 0.0]  # Milvus wants a vector in every collection; bookkeeping rows carry this one.


def _quote(text: str) -> str:
    return json.dumps(text)  # a double-quoted string with escapes, as Milvus filter expressions read them


class MilvusStore:
    """People, faces and the audit log in four Milvus collections (``<prefix>_meta``, ``_people``,
    ``_faces``, ``_audit``)."""

    def __init__(self, location: str):
        try:
            from pymilvus import MilvusClient
        except ModuleNotFoundError as exc:
            missing = missing_extra(exc)
            if missing is None:
                raise
            raise missing from None
        self.location = location
        kwargs, options = _client_arguments(location)
        self.prefix = options.get("prefix", "visage")
        self.lite = location.startswith("milvus-lite:")
        self.index_type = options.get("index", "FLAT" if self.lite else "AUTOINDEX")
        try:
            self._client = MilvusClient(**kwargs)
        except Exception as exc:  # noqa: BLE001 - pymilvus raises many kinds; all mean "cannot reach this Milvus"
            raise GalleryError(f"{location}: cannot open Milvus ({exc})") from None
        self._dim: int | None = None
        self._ensure_bookkeeping()

    # -- collections -----------------------------------------------------------------------------
    def _name(self, kind: str) -> str:
        return f"{self.prefix}_{kind}"

    def _create(self, kind: str, fields: list[tuple], dim: int, auto_id: bool = False) -> None:
        from pymilvus import DataType

        schema = self._client.create_schema(auto_id=auto_id, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        for name, dtype, extra in fields:
            schema.add_field(name, getattr(DataType, dtype), **extra)
        schema.add_field("v", DataType.FLOAT_VECTOR, dim=dim)
        index = self._client.prepare_index_params()
        index.add_index(field_name="v", index_type=self.index_type if kind == "faces" else "FLAT",
                        metric_type="L2")
        self._client.create_collection(self._name(kind), schema=schema, index_params=index,
                                       consistency_level="Strong")

    def _ensure_bookkeeping(self) -> None:
        text = lambda n: ("VARCHAR", {"max_length": n})
        try:
            existing = set(self._client.list_collections())
            if self._name("meta") not in existing:
                self._create("meta", [("key", *text(64)), ("value", *text(1024))], 2)
            if self._name("people") not in existing:
                self._create("people", [("name", *text(256)), ("created", "DOUBLE", {})], 2)
            if self._name("audit") not in existing:
                self._create("audit", [("time", "DOUBLE", {}), ("operation", *text(32)), ("sha256", *text(64)),
                                       ("source", *text(1024)), ("result", *text(65535))], 2, auto_id=True)
        except GalleryError:
            raise
        except Exception as exc:  # noqa: BLE001 - pymilvus raises many kinds; all mean "cannot set up"
            raise GalleryError(f"{self.location}: cannot set up Milvus collections ({exc})") from None
        meta = self._client.query(self._name("meta"), filter='key == "format"', output_fields=["value"])
        if meta and meta[0]["value"] != "visage-gallery":
            raise GalleryError(f"{self.location}: collections {self.prefix}_* are not a visage gallery")
        if not meta:
            self._client.insert(self._name("meta"), [{"id": 0, "key": "format", "value": "visage-gallery", "v": _DUMMY}])

    def _faces_ready(self, dim: int | None = None) -> bool:
        if self._client.has_collection(self._name("faces")):
            return True
        if dim is None:
            return False
        text = lambda n: ("VARCHAR", {"max_length": n})
        self._create("faces", [("person_id", "INT64", {}), ("encoder", *text(128)), ("sha256", *text(64)),
                               ("source", *text(1024)), ("box", *text(256)), ("landmarks", *text(1024)),
                               ("quality", "DOUBLE", {}), ("added", "DOUBLE", {})], dim, auto_id=True)
        return True

    # -- the Store interface ---------------------------------------------------------------------
    def encoder(self) -> tuple[str, int] | None:
        rows = self._client.query(self._name("meta"), filter='key in ["encoder", "dim"]', output_fields=["key", "value"])
        values = {r["key"]: r["value"] for r in rows}
        return (values["encoder"], int(values["dim"])) if "encoder" in values and "dim" in values else None

    def encoder_key(self) -> str | None:
        rows = self._client.query(self._name("meta"), filter='key == "encoder_key"', output_fields=["value"])
        return rows[0]["value"] if rows else None

    def _bind_encoder(self, encoder: str, dim: int, encoder_key: str | None) -> None:
        bound = self.encoder()
        if bound is None:
            self._client.upsert(self._name("meta"), [{"id": 1, "key": "encoder", "value": encoder, "v": _DUMMY},
                                                      {"id": 2, "key": "dim", "value": str(dim), "v": _DUMMY}])
        elif bound != (encoder, dim):
            raise GalleryError(f"{self.location}: holds {bound[0]} encodings ({bound[1]}-d); "
                               f"refusing to mix in {encoder} ({dim}-d)")
        if encoder_key and self.encoder_key() is None:
            self._client.upsert(self._name("meta"), [{"id": 3, "key": "encoder_key", "value": encoder_key,
                                                      "v": _DUMMY}])

    def _person(self, name: str) -> dict | None:
        rows = self._client.query(self._name("people"), filter=f"name == {_quote(_lookup_name(name))}",
                                  output_fields=["id", "name", "created"])
        return rows[0] if rows else None

    def _person_id(self, name: str) -> int:
        row = self._person(name)
        if row is None:
            raise PersonNotFound(f"no person called {name!r} in the gallery")
        return int(row["id"])

    def add(self, name: str, records: list[FaceRecord], encoder: str, dim: int,
            encoder_key: str | None = None) -> AddResult:
        name = _check_name(name)
        result = AddResult()
        if not records:
            return result
        self._bind_encoder(encoder, dim, encoder_key)
        self._faces_ready(dim)
        existing = self._existing({r.sha256 for r in records})
        person = self._person(name)
        person_id = int(person["id"]) if person else secrets.randbits(62)
        now = time.time()
        rows = []
        for rec in records:
            vector = np.asarray(rec.encoding, np.float32).reshape(-1)
            if len(vector) != dim:
                raise GalleryError(f"{rec.source}: encoding has {len(vector)} values, the gallery holds {dim}")
            box = _box_json(rec.box) or ""
            owner = existing.get((rec.sha256, box))
            if owner is not None:
                result.duplicates.append((rec, owner))
                continue
            existing[(rec.sha256, box)] = name
            rows.append({"person_id": person_id, "v": vector.tolist(), "encoder": encoder, "sha256": rec.sha256,
                         "source": str(rec.source)[:1024], "box": box, "landmarks": _landmarks_json(rec.landmarks5) or "",
                         "quality": float(rec.quality), "added": now})
        if not rows:
            return result
        if person is None:
            self._client.insert(self._name("people"), [{"id": person_id, "name": name, "created": now, "v": _DUMMY}])
        # One request for all of the person's faces.
        result.face_ids = [int(i) for i in self._client.insert(self._name("faces"), rows)["ids"]]
        return result

    def _existing(self, shas: set[str]) -> dict[tuple[str, str], str]:
        if not shas or not self._faces_ready():
            return {}
        names = self.names()
        out = {}
        shas_list = sorted(shas)
        for i in range(0, len(shas_list), 500):
            expr = "sha256 in [" + ", ".join(_quote(s) for s in shas_list[i:i + 500]) + "]"
            for r in self._client.query(self._name("faces"), filter=expr, output_fields=["sha256", "box", "person_id"],
                                        limit=MAX_LIMIT):
                out[(r["sha256"], r["box"])] = names.get(int(r["person_id"]), "?")
        return out

    def owners(self, sha256s: list[str]) -> dict[str, str]:
        return {sha: name for (sha, _), name in self._existing(set(sha256s)).items()}

    def names(self) -> dict[int, str]:
        rows = self._iterate(self._name("people"), "id >= 0", ["id", "name"])
        return {int(r["id"]): r["name"] for r in rows}

    def _iterate(self, collection: str, expr: str, fields: list[str]) -> Iterator[dict]:
        it = self._client.query_iterator(collection, batch_size=1000, filter=expr, output_fields=fields)
        try:
            while True:
                batch = it.next()
                if not batch:
                    return
                yield from batch
        finally:
            it.close()

    def _counts(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        if self._faces_ready():
            for r in self._iterate(self._name("faces"), "person_id >= 0", ["person_id"]):
                counts[int(r["person_id"])] = counts.get(int(r["person_id"]), 0) + 1
        return counts

    def people(self) -> list[Person]:
        counts = self._counts()
        rows = self._iterate(self._name("people"), "id >= 0", ["id", "name", "created"])
        # A person row without faces is an enrolment that never finished: not a person.
        return sorted((Person(r["name"], counts[int(r["id"])], r["created"]) for r in rows if int(r["id"]) in counts),
                      key=lambda p: p.name)

    def faces(self, name: str) -> list[StoredFace]:
        pid = self._person_id(name)
        if not self._faces_ready():
            return []
        rows = self._iterate(self._name("faces"), f"person_id == {pid}",
                             ["id", "v", "sha256", "source", "box", "landmarks", "quality", "added"])
        return sorted((self._stored(r, name) for r in rows), key=lambda f: f.id)

    @staticmethod
    def _stored(r: dict, name: str) -> StoredFace:
        record = _record_from_row(np.array(r["v"], np.float32), r["sha256"], r["source"],
                                  r["box"] or None, r["landmarks"] or None, r["quality"])
        return StoredFace(int(r["id"]), name, record, r["added"])

    def rename(self, old: str, new: str) -> None:
        new = _check_name(new)
        row = self._person(old)
        if row is None:
            raise PersonNotFound(f"no person called {old!r} in {self.location}")
        if self._person(new) is not None:
            raise NameTaken(f"there is already a person called {new!r}")
        self._client.upsert(self._name("people"), [{"id": int(row["id"]), "name": new, "created": row["created"],
                                                     "v": _DUMMY}])

    def remove(self, name: str) -> int:
        pid = self._person_id(name)
        n = self._counts().get(pid, 0)
        if self._faces_ready():
            self._client.delete(self._name("faces"), filter=f"person_id == {pid}")
        self._client.delete(self._name("people"), filter=f"id == {pid}")
        return n

    def _face(self, face_id: int) -> dict:
        rows = self._client.query(self._name("faces"), filter=f"id == {int(face_id)}",
                                  output_fields=["id", "person_id"]) if self._faces_ready() else []
        if not rows:
            raise FaceNotFound(f"no face with id {face_id} in {self.location}")
        return rows[0]

    def remove_face(self, face_id: int) -> tuple[str, int]:
        pid = int(self._face(face_id)["person_id"])
        name = self.names().get(pid, "?")
        left = self._counts().get(pid, 1) - 1  # counted before the delete, which a later query may not see yet
        self._client.delete(self._name("faces"), filter=f"id == {int(face_id)}")
        if not left:
            self._client.delete(self._name("people"), filter=f"id == {pid}")
        return name, left

    def thumbnail(self, face_id: int) -> bytes | None:
        self._face(face_id)
        return None

    def iter_faces(self, batch: int = 1000) -> Iterator[StoredFace]:
        if not self._faces_ready():
            return
        names = self.names()
        for r in self._iterate(self._name("faces"), "person_id >= 0",
                               ["id", "person_id", "v", "sha256", "source", "box", "landmarks", "quality", "added"]):
            if int(r["person_id"]) in names:
                yield self._stored(r, names[int(r["person_id"])])

    def log(self, operation: str, sha256: str | None, source: str | None, result: dict) -> None:
        self._client.insert(self._name("audit"), [{"time": time.time(), "operation": operation, "sha256": sha256 or "",
                                                    "source": (source or "")[:1024],
                                                    "result": json.dumps(result)[:65535], "v": _DUMMY}])

    def audit(self, limit: int = 100) -> list[dict]:
        rows = list(self._iterate(self._name("audit"), "time >= 0",
                                  ["id", "time", "operation", "sha256", "source", "result"]))
        rows.sort(key=lambda r: (r["time"], r["id"]), reverse=True)
        return [{"id": int(r["id"]), "time": r["time"], "operation": r["operation"], "sha256": r["sha256"] or None,
                 "source": r["source"] or None, "result": json.loads(r["result"])} for r in rows[:limit]]

    def searcher(self) -> MilvusSearch:
        """Server-side search (the gallery uses it instead of a local index)."""
        return MilvusSearch(self)

    def close(self) -> None:
        self._client.close()


class MilvusSearch:
    """Nearest faces from Milvus, folded into each person's nearest."""

    def __init__(self, store: MilvusStore):
        self.store = store

    def search(self, queries: np.ndarray, k: int, match: str) -> list[list[tuple[str, float]]]:
        if match != "nearest":
            raise GalleryError("the Milvus backend matches the nearest face only (match='nearest')")
        store = self.store
        if not store._faces_ready():
            return [[] for _ in queries]
        names = store.names()
        out = []
        for query in np.asarray(queries, np.float32):
            want = 4 * k + 16
            while True:
                hits = store._client.search(store._name("faces"), data=[query.tolist()], limit=min(want, MAX_LIMIT),
                                            output_fields=["person_id"], anns_field="v",
                                            search_params={"metric_type": "L2"})[0]
                best: dict[str, float] = {}
                for h in hits:  # nearest first; L2 in Milvus is the squared distance
                    name = names.get(int(h["entity"]["person_id"]))
                    if name is not None and name not in best:
                        best[name] = float(np.sqrt(max(h["distance"], 0.0)))
                if len(best) >= k or len(hits) < want or want >= MAX_LIMIT:
                    break
                want *= 8
            out.append(sorted(best.items(), key=lambda kv: kv[1])[:k])
        return out


def _client_arguments(location: str) -> tuple[dict, dict]:
    """MilvusClient keyword arguments and visage options (prefix, index) from a location string."""
    if location.startswith("milvus-lite:"):
        path = location[len("milvus-lite:"):]
        path, _, query = path.partition("?")
        if not path:
            raise GalleryError(f"{location}: give a file, e.g. milvus-lite:./gallery.milvus.db")
        if not path.endswith(".db"):
            raise GalleryError(f"{location}: a Milvus Lite file name must end in .db")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return {"uri": os.path.abspath(path)}, {k: v[-1] for k, v in parse_qs(query).items()}
    parts = urlsplit(location)
    scheme = "https" if parts.scheme == "milvus+https" else "http"
    if not parts.hostname:
        raise GalleryError(f"{location}: expected milvus://HOST:PORT")
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    kwargs = {"uri": f"{scheme}://{parts.hostname}:{parts.port or 19530}"}
    token = milvus_token()
    if token:
        kwargs["token"] = token
    if "db" in options:
        kwargs["db_name"] = options["db"]
    return kwargs, options
