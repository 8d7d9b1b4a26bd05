"""The search index: Chroma collections plus a SQLite keyword (FTS5/BM25) index and build manifest beside them.

Chroma holds the dense vectors, documents and metadata (embedded `PersistentClient` under the p2m
home, or a Chroma server by URL — same code). The sidecar SQLite file holds what Chroma does not
do: BM25 keyword scores (SQLite's FTS5 `bm25()`), and a manifest of which entry was indexed with
which content digest, so a build is idempotent, incremental and resumes after an interruption
(an entry counts as indexed only after Chroma accepted its batch). Vectors are computed by the
caller (tools/), so memory/ never imports a model.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from p2m.errors import ConfigError
from p2m.memory.home import home_dir

__all__ = ["KINDS", "VectorIndex", "Hit", "matches_where", "open_index", "digest"]

KINDS = ("datasets", "models", "local")  # hub datasets, hub models, the user's own data folders
_COLLECTION = {"datasets": "hub-datasets", "models": "hub-models", "local": "local-data"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS manifest (kind TEXT, id TEXT, digest TEXT, PRIMARY KEY (kind, id));
CREATE TABLE IF NOT EXISTS sources (name TEXT PRIMARY KEY, watermark TEXT, info TEXT);
CREATE VIRTUAL TABLE IF NOT EXISTS keywords USING fts5(kind UNINDEXED, id UNINDEXED, name, text,
                                                       tokenize='porter unicode61');
"""


class Hit(dict):
    """One search result: id, distance or score, metadata, document."""


def _chroma_settings() -> Any:
    from chromadb.config import Settings

    return Settings(anonymized_telemetry=False, allow_reset=False)


def digest(*parts: Any) -> str:
    """A short content digest: an entry whose digest is unchanged is not re-embedded."""
    raw = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha1(raw).hexdigest()[:16]


def matches_where(meta: dict[str, Any], where: dict[str, Any] | None) -> bool:
    """Evaluate the subset of Chroma's `where` language p2m uses ($eq/$ne/$in/$nin/$gte/$lte/$gt/$lt/$and/$or)."""
    if not where:
        return True
    if "$and" in where:
        return all(matches_where(meta, w) for w in where["$and"])
    if "$or" in where:
        return any(matches_where(meta, w) for w in where["$or"])
    for key, cond in where.items():
        value = meta.get(key)
        ops = cond if isinstance(cond, dict) else {"$eq": cond}
        if not all(_op(op, value, arg) for op, arg in ops.items()):
            return False
    return True


def _op(op: str, value: Any, arg: Any) -> bool:
    try:
        if op == "$eq":
            return value == arg
        if op == "$ne":
            return value != arg
        if op == "$in":
            return value in arg
        if op == "$nin":
            return value not in arg
        if value is None:
            return False
        return {"$gte": value >= arg, "$lte": value <= arg, "$gt": value > arg, "$lt": value < arg}[op]
    except TypeError:
        return False


class VectorIndex:
    """Chroma collections of Hub datasets, Hub models and local data, with keyword scores and a manifest.

    Args:
        folder: where the embedded Chroma database and the sidecar SQLite live.
        chroma_url: a Chroma server (`http://127.0.0.1:8000`) to use instead of the embedded client;
            the sidecar stays in `folder`.
    """

    def __init__(self, folder: Path, chroma_url: str | None = None) -> None:
        self.folder = Path(folder)
        self.chroma_url = chroma_url
        self._lock = threading.RLock()
        self._collections: dict[str, Any] = {}
        # a server is reached first, so an unreachable one leaves nothing behind on disk
        self._client = self._connect() if chroma_url else None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create the index folder {self.folder} ({e.strerror or e})") from e
        side = self.folder / (f"keywords-{digest(chroma_url)}.sqlite" if chroma_url else "keywords.sqlite")
        try:
            self._db = sqlite3.connect(side, check_same_thread=False)
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise ConfigError(
                f"the index at {self.folder} is unreadable ({e}); remove that folder and run `p2m index build`"
            ) from e
        if self._client is None:
            self._client = self._connect()

    def _connect(self) -> Any:
        import chromadb

        try:
            if self.chroma_url:
                url = urlparse(self.chroma_url if "//" in self.chroma_url else f"http://{self.chroma_url}")
                client = chromadb.HttpClient(
                    host=url.hostname or "127.0.0.1",
                    port=url.port or 8000,
                    ssl=url.scheme == "https",
                    settings=_chroma_settings(),
                )
                client.heartbeat()
                return client
            return chromadb.PersistentClient(path=str(self.folder / "chroma"), settings=_chroma_settings())
        except Exception as e:  # chromadb raises many types for an unreachable server or a corrupt folder
            where = (
                f"the Chroma server at {self.chroma_url}"
                if self.chroma_url
                else f"the index at {self.folder}"
            )
            hint = (
                "start it with `chroma run --path DIR` or drop --chroma-url"
                if self.chroma_url
                else "remove that folder and run `p2m index build` again"
            )
            raise ConfigError(f"cannot open {where} ({type(e).__name__}: {str(e)[:160]}); {hint}") from e

    def collection(self, kind: str) -> Any:
        if kind not in KINDS:
            raise ValueError(f"unknown index kind {kind!r}")
        with self._lock:
            if kind not in self._collections:
                try:
                    self._collections[kind] = self._client.get_or_create_collection(
                        _COLLECTION[kind], embedding_function=None, metadata={"hnsw:space": "cosine"}
                    )
                except Exception as e:
                    raise ConfigError(
                        f"the index at {self.folder} is unreadable ({type(e).__name__}: {str(e)[:160]}); "
                        "remove that folder and run `p2m index build` again"
                    ) from e
            return self._collections[kind]

    # -- manifest -------------------------------------------------------------------------------
    def digests(self, kind: str) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT id, digest FROM manifest WHERE kind=?", (kind,)).fetchall())

    def count(self, kind: str) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM manifest WHERE kind=?", (kind,)).fetchone()[0]

    def watermark(self, source: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT watermark FROM sources WHERE name=?", (source,)).fetchone()
        return row[0] if row else None

    def set_watermark(self, source: str, watermark: str, info: dict[str, Any] | None = None) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO sources VALUES (?,?,?)", (source, watermark, json.dumps(info or {}))
            )

    # -- writing --------------------------------------------------------------------------------
    def upsert(
        self,
        kind: str,
        ids: list[str],
        chunks: list[list[str]],
        metadatas: list[dict[str, Any]],
        embeddings: np.ndarray,
        digests: list[str],
        keyword_texts: list[str],
    ) -> None:
        """Write one batch of entries, each as one or more chunks (`embeddings`: one row per chunk, in order).

        Chroma first (an entry's old chunks are replaced), then the keyword rows and the manifest in
        one transaction: an entry counts as indexed only when all of it is stored.
        """
        if not ids:
            return
        col = self.collection(kind)
        with self._lock:
            stale = [i for i in ids
                     if self._db.execute("SELECT 1 FROM manifest WHERE kind=? AND id=?", (kind, i)).fetchone()]  # fmt: skip
        if stale:
            col.delete(where={"parent": {"$in": stale}})
        chunk_ids, docs, metas = [], [], []
        for eid, texts, meta in zip(ids, chunks, metadatas, strict=True):
            clean = _clean_meta(meta)
            for j, text in enumerate(texts):
                chunk_ids.append(f"{eid}#{j}")
                docs.append(text)
                metas.append({**clean, "parent": eid, "chunk": j})
        if len(chunk_ids) != len(embeddings):
            raise ValueError(f"{len(chunk_ids)} chunks but {len(embeddings)} embeddings")
        for s in range(0, len(chunk_ids), 4096):  # Chroma caps the batch size
            col.upsert(ids=chunk_ids[s : s + 4096], documents=docs[s : s + 4096], metadatas=metas[s : s + 4096],
                       embeddings=np.asarray(embeddings[s : s + 4096], dtype=np.float32))  # fmt: skip
        with self._lock, self._db:
            for eid, text, dig in zip(ids, keyword_texts, digests, strict=True):
                # the keyword row shares the manifest row's rowid, so replacing it is a lookup, not a scan
                row = self._db.execute(
                    "SELECT rowid FROM manifest WHERE kind=? AND id=?", (kind, eid)
                ).fetchone()
                if row:
                    self._db.execute("DELETE FROM keywords WHERE rowid=?", (row[0],))
                    self._db.execute("UPDATE manifest SET digest=? WHERE rowid=?", (dig, row[0]))
                    rowid = row[0]
                else:
                    rowid = self._db.execute(
                        "INSERT INTO manifest VALUES (?,?,?)", (kind, eid, dig)
                    ).lastrowid
                self._db.execute("INSERT INTO keywords(rowid, kind, id, name, text) VALUES (?,?,?,?,?)",
                                 (rowid, kind, eid, _name_words(eid), text))  # fmt: skip

    def delete(self, kind: str, ids: list[str]) -> None:
        if not ids:
            return
        self.collection(kind).delete(where={"parent": {"$in": list(ids)}})
        with self._lock, self._db:
            for eid in ids:
                row = self._db.execute(
                    "SELECT rowid FROM manifest WHERE kind=? AND id=?", (kind, eid)
                ).fetchone()
                if row:
                    self._db.execute("DELETE FROM keywords WHERE rowid=?", (row[0],))
                    self._db.execute("DELETE FROM manifest WHERE rowid=?", (row[0],))

    # -- reading --------------------------------------------------------------------------------
    def dense(
        self, kind: str, embedding: np.ndarray, k: int, where: dict[str, Any] | None = None
    ) -> list[Hit]:
        """Top-k entries by cosine similarity of their best chunk, metadata filter applied.

        With a filter, the nearest chunks are fetched unfiltered and filtered here first: one HNSW
        walk, no scan of the metadata table, so a filter costs almost nothing on a large collection.
        Only when that leaves fewer than k (a rare filter) does Chroma's own pre-filtered query run.
        """
        col = self.collection(kind)
        n = col.count()
        if n == 0:
            return []
        fetch = min(n, k * (8 if where else 3))
        hits = self._query(col, embedding, fetch, None)
        if where:
            hits = [h for h in hits if matches_where(h["metadata"], where)]
        best = _best_per_parent(hits)
        if where and len(best) < k and fetch < n:
            best = _best_per_parent(self._query(col, embedding, min(k * 3, n), where))
        return best[:k]

    @staticmethod
    def _query(col: Any, embedding: np.ndarray, n: int, where: dict[str, Any] | None) -> list[Hit]:
        res = col.query(
            query_embeddings=[np.asarray(embedding, dtype=np.float32)],
            n_results=n,
            where=where or None,
            include=["metadatas", "documents", "distances"],
        )
        return [
            Hit(
                id=(m or {}).get("parent", i), similarity=1.0 - float(d), metadata=m or {}, document=doc or ""
            )
            for i, d, m, doc in zip(
                res["ids"][0], res["distances"][0], res["metadatas"][0], res["documents"][0], strict=True
            )
        ]

    def keyword(self, kind: str, query: str, k: int) -> list[tuple[str, float]]:
        """Top-k ids by BM25 (higher is better) for the words of `query` (any word may match)."""
        words = [w for w in re.findall(r"[a-z0-9]+", query.lower()) if len(w) > 1 and w not in _GENERIC]
        if not words:
            return []
        match = " OR ".join(f'"{w}"' for w in dict.fromkeys(words))
        with self._lock:
            rows = self._db.execute(  # a word in the entry's name weighs 4× one in its text
                "SELECT id, -bm25(keywords, 0, 0, 4.0, 1.0) AS s FROM keywords WHERE keywords MATCH ? AND kind=? "
                "ORDER BY s DESC LIMIT ?",
                (match, kind, k),
            ).fetchall()
        return [(i, float(s)) for i, s in rows]

    def get(self, kind: str, ids: list[str]) -> dict[str, Hit]:
        """Entries by id, with metadata, document and embedding."""
        if not ids:
            return {}
        res = self.collection(kind).get(ids=[f"{i}#0" for i in ids], include=["metadatas", "documents"])
        return {
            (m or {}).get("parent", i): Hit(
                id=(m or {}).get("parent", i), metadata=m or {}, document=doc or ""
            )
            for i, m, doc in zip(res["ids"], res["metadatas"], res["documents"], strict=True)
        }

    def close(self) -> None:
        with self._lock:
            self._db.close()


# words every task description uses: they match thousands of entries and say nothing about the data
_GENERIC = set(
    "a an the of to in on for with by as and or is are be it its this that these from into each if not no "
    "whether given decide determine classify detect identify predict label labels answer write generate "
    "text texts task model data dataset input output one two which what how do does should can will".split()
)


def _best_per_parent(hits: list[Hit]) -> list[Hit]:
    best: dict[str, Hit] = {}
    for h in hits:  # already sorted by similarity
        best.setdefault(h["id"], h)
    return list(best.values())


def _name_words(repo_id: str) -> str:
    return re.sub(r"[_\-/.]+", " ", repo_id)


def _clean_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """Chroma metadata values must be str/int/float/bool; lists become comma-joined strings, None is dropped."""
    out: dict[str, Any] = {}
    for k, v in meta.items():
        if v is None:
            continue
        if isinstance(v, (list, tuple)):
            v = ",".join(str(x) for x in v)
        elif not isinstance(v, (str, int, float, bool)):
            v = str(v)
        out[k] = v
    return out


def open_index(chroma_url: str | None = None) -> VectorIndex:
    """The index under the p2m home (`P2M_HOME/index`), or a Chroma server by URL."""
    return VectorIndex(home_dir() / "index", chroma_url=chroma_url)
