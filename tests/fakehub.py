"""A loopback fake of the Hugging Face Hub HTTP API, driven by the real `huggingface_hub` client in tests.

Routes, as on huggingface.co: `GET /api/datasets` and `GET /api/models` (paginated with a
`Link: <next>; rel="next"` header; `limit`, `search`, `author`, `filter`, `sort`, `direction`, `full`,
`cardData`, `expand` honoured), `GET /api/{datasets,models}/{id}[/revision/{rev}]` (info with `siblings`),
`GET /api/{datasets,models}/{id}/tree/{rev}[/{path}]`, and `HEAD`/`GET /[datasets/]{id}/resolve/{rev}/{file}`
with `X-Repo-Commit`, `ETag` and `Content-Length`, so `hf_hub_download` fills the HF cache as in production.
Unknown repos get 404 with `X-Error-Code: RepoNotFound` (-> `RepositoryNotFoundError`).

The catalog is read lazily from a hub-snapshot folder (`datasets.jsonl`, `models.jsonl`): row i gets
lastModified = 2023-01-01 + i hours and sha = sha1(id); snapshot repos serve a `.gitattributes` and a
README.md made from their card. `add_dataset_files` and `add_model_files` add repos with real files (newer
than any row); a model repo with files also answers `config` (model_type, architectures from its config.json)
and `safetensors` (parameter counts read from the safetensors headers), as the Hub does.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import sys
import threading
from contextlib import suppress
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import islice
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import yaml

EPOCH = datetime(2023, 1, 1, tzinfo=timezone.utc)
GITATTRIBUTES = b"*.arrow filter=lfs diff=lfs merge=lfs -text\n"
DATASET_TAG_KEYS = ("task_categories", "task_ids", "language", "license", "size_categories")
HUB_500 = "Internal Error - We're working hard to fix this as soon as possible!"


def default_snapshot() -> Path:
    """`shared/hub-snapshot` beside the checkout; `P2M_SHARED` overrides the `shared` folder."""
    shared = os.environ.get("P2M_SHARED") or Path(__file__).resolve().parents[2] / "shared"
    return Path(shared) / "hub-snapshot"


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def _git_oid(data: bytes) -> str:
    """The git blob id, which the Hub sends as the ETag of a non-LFS file."""
    return _sha1(b"blob %d\0" % len(data) + data)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _as_list(value: Any) -> list[Any]:
    return [] if value in (None, "") else value if isinstance(value, list) else [value]


def _split_readme(text: str) -> tuple[dict[str, Any], str]:
    """(YAML front matter, body) of a README.md."""
    if text.startswith("---\n") and "\n---" in text[3:]:
        front, _, body = text[4:].partition("\n---")
        with suppress(yaml.YAMLError):
            card = yaml.safe_load(front)
            return (card if isinstance(card, dict) else {}), body.lstrip("-\n")
    return {}, text


class Repo:
    """One dataset or model repo: Hub metadata plus files (made on first use for snapshot rows)."""

    def __init__(self, kind: str, rid: str, card: dict, meta: dict, modified: datetime) -> None:
        self.kind, self.id, self.card, self.meta, self.modified = kind, rid, card, meta, modified
        self.sha = _sha1(rid.encode())
        self._files: dict[str, bytes] | None = None

    @property
    def files(self) -> dict[str, bytes]:
        if self._files is None:
            front = (self.meta.get("front_matter") or "").strip()
            if not front and self.card:
                front = yaml.safe_dump(self.card, sort_keys=False).strip()
            readme = (f"---\n{front}\n---\n\n" if front else "") + (self.meta["description"] or "")
            self._files = {".gitattributes": GITATTRIBUTES, "README.md": readme.encode()}
        return self._files

    def set_files(self, files: dict[str, bytes]) -> None:
        self._files = files
        listing = "".join(f"{p}:{_git_oid(d)}\n" for p, d in sorted(files.items()))
        self.sha = _sha1(f"{self.id}\n{listing}".encode())

    @property
    def tags(self) -> list[str]:
        card, meta = self.card, self.meta
        if self.kind == "dataset":
            tags = [f"{k}:{v}" for k in DATASET_TAG_KEYS for v in _as_list(card.get(k))]
            tags += _as_list(meta.get("tags"))
        else:
            tags = [v for k in ("library_name", "tags", "pipeline_tag") for v in _as_list(meta.get(k))]
            tags += _as_list(card.get("language")) + [f"license:{v}" for v in _as_list(card.get("license"))]
            tags += [f"dataset:{d}" for d in _as_list(card.get("datasets"))]
        return list(dict.fromkeys([*tags, "region:us"]))

    def entry(self, *, full: bool, card: bool, blobs: bool = False) -> dict[str, Any]:
        """The repo's JSON as the Hub sends it in a listing (or, with full=card=True, from an info call)."""
        meta, rid = self.meta, self.id
        author = rid.split("/")[0] if "/" in rid else None
        out: dict[str, Any] = {"_id": self.sha[:24], "id": rid, "author": author, "sha": self.sha}
        out.update(lastModified=_iso(self.modified), createdAt=_iso(EPOCH), private=False, gated=False)
        out.update(disabled=False, downloads=meta.get("downloads") or 0, likes=meta.get("likes") or 0)
        out["tags"] = self.tags
        if self.kind == "model":
            out.update(modelId=rid, **{k: meta.get(k) for k in ("pipeline_tag", "library_name")})
            if self._files is not None:  # only repos added with real files: snapshot rows stay as they were
                out.update(_model_files_info(self._files))
        elif full:
            out.update(description=meta["description"] or "", key="")
        if self.card and (card or (full and self.kind == "dataset")):
            out["cardData"] = self.card
        if full:
            out["siblings"] = [
                {"rfilename": p, **({"size": len(d), "blobId": _git_oid(d)} if blobs else {})}
                for p, d in sorted(self.files.items())
            ]
        return out


def _model_files_info(files: dict[str, bytes]) -> dict[str, Any]:
    """`config` and `safetensors` of a model repo's info, computed from its files like the Hub does."""
    out: dict[str, Any] = {}
    with suppress(ValueError, KeyError):
        config = json.loads(files["config.json"])
        out["config"] = {k: config[k] for k in ("model_type", "architectures") if k in config}
    counts: dict[str, int] = {}
    for path, data in files.items():
        if path.endswith(".safetensors") and len(data) >= 8:
            with suppress(ValueError):
                header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
                for name, t in header.items():
                    if name != "__metadata__":
                        counts[t["dtype"]] = counts.get(t["dtype"], 0) + math.prod(t["shape"])
    if counts:
        out["safetensors"] = {"parameters": counts, "total": sum(counts.values())}
    return out


def _dataset_repo(row: dict[str, Any], i: int) -> Repo:
    card = {"task_categories": row.get("task_categories"), "task_ids": row.get("task_ids")}
    card.update({"config_names": row.get("configs"), "train-eval-index": row.get("evaluation_metadata")})
    meta = {k: row.get(k) for k in ("description", "downloads", "tags")}
    return Repo("dataset", row["id"], {k: v for k, v in card.items() if v}, meta, EPOCH + timedelta(hours=i))


def _model_repo(row: dict[str, Any], i: int) -> Repo:
    card = {k: row.get(k) for k in ("license", "language", "datasets", "tags", "library_name", "base_model")}
    meta = {k: row.get(k) for k in ("description", "downloads", "likes", "pipeline_tag", "library_name")}
    meta["tags"] = row.get("tags")
    if not row.get("card_front_matter_truncated"):
        meta["front_matter"] = row.get("card_front_matter")
    return Repo("model", row["id"], {k: v for k, v in card.items() if v}, meta, EPOCH + timedelta(hours=i))


class FakeHub:
    """Context manager serving a fake Hub on 127.0.0.1:<free port>; `.url`, `.requests` [(method, path)]."""

    def __init__(
        self,
        snapshot: str | Path | None = None,
        *,
        max_datasets: int | None = None,
        max_models: int | None = None,
        page_size: int = 50,
    ) -> None:
        self.snapshot = Path(snapshot) if snapshot is not None else default_snapshot()
        self.max_rows = {"dataset": max_datasets, "model": max_models}
        self.page_size = page_size
        self.requests: list[tuple[str, str]] = []
        self.url = ""
        self._repos: dict[str, dict[str, Repo]] = {}
        self._faults: list[dict[str, Any]] = []
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self._server: _Server | None = None

    def repos(self, kind: str) -> dict[str, Repo]:
        """Repos of a kind ("dataset" or "model") by id; reads its snapshot file (to the cap) on first use."""
        with self._lock:
            if kind not in self._repos:
                path = self.snapshot / f"{kind}s.jsonl"
                make = _dataset_repo if kind == "dataset" else _model_repo
                self._repos[kind] = {}
                if path.is_file():
                    with path.open(encoding="utf-8") as f:
                        rows = (json.loads(line) for line in f if line.strip())
                        for i, row in enumerate(islice(rows, self.max_rows[kind])):
                            self._repos[kind][row["id"]] = make(row, i)
            return self._repos[kind]

    def add_dataset_files(self, repo_id: str, files: dict[str, bytes | str], *, downloads: int = 0) -> Repo:
        """Add a dataset repo with these files (or add them to it); its card is README.md's front matter."""
        repos = self.repos("dataset")
        with self._lock:
            old = repos.get(repo_id)
            merged = dict(old.files) if old else {".gitattributes": GITATTRIBUTES}
            merged.update({p: d.encode() if isinstance(d, str) else d for p, d in files.items()})
            card, body = _split_readme(merged.get("README.md", b"").decode("utf-8", "replace"))
            newest = max((r.modified for r in repos.values()), default=EPOCH) + timedelta(minutes=1)
            meta = {"description": body.strip(), "downloads": downloads, "tags": []}
            repo = Repo("dataset", repo_id, card, meta, max(newest, EPOCH + timedelta(days=365)))
            repo.set_files(merged)
            repos[repo_id] = repo
            return repo

    def add_model_files(
        self,
        repo_id: str,
        files: dict[str, bytes | str],
        *,
        pipeline_tag: str | None = None,
        library_name: str | None = "transformers",
        tags: list[str] | None = None,
        downloads: int = 0,
    ) -> Repo:
        """Add a model repo with these files (config.json, *.safetensors, tokenizer files, README.md, ...).

        Its card (license, language, ...) is README.md's front matter; its `tags` get the library, the
        pipeline tag, the card's language and `license:...`, as on the Hub.
        """
        repos = self.repos("model")
        with self._lock:
            merged = {".gitattributes": GITATTRIBUTES}
            merged.update({p: d.encode() if isinstance(d, str) else d for p, d in files.items()})
            card, body = _split_readme(merged.get("README.md", b"").decode("utf-8", "replace"))
            newest = max((r.modified for r in repos.values()), default=EPOCH) + timedelta(minutes=1)
            meta = {"description": body.strip(), "downloads": downloads, "likes": 0, "tags": tags or []}
            meta.update(pipeline_tag=pipeline_tag, library_name=library_name)
            repo = Repo("model", repo_id, card, meta, max(newest, EPOCH + timedelta(days=365)))
            repo.set_files(merged)
            repos[repo_id] = repo
            return repo

    def fail_listing_after(self, pages: int, status: int = 500, times: int | None = None) -> None:
        """Listing pages past the first `pages` answer `status` (`times` times, or every time if None)."""
        self._faults.append({"pages": pages, "status": status, "times": times})

    def delay_listing_after(self, pages: int, seconds: float, times: int | None = None) -> None:
        """Listing pages past the first `pages` are held `seconds` before the answer (a stalled Hub)."""
        self._faults.append({"pages": pages, "seconds": seconds, "times": times})

    def clear_faults(self) -> None:
        self._faults.clear()

    def _fault(self, page_index: int) -> dict[str, Any] | None:
        with self._lock:
            for fault in self._faults:
                if page_index >= fault["pages"] and (fault["times"] is None or fault["times"] > 0):
                    if fault["times"] is not None:
                        fault["times"] -= 1
                    return fault
        return None

    def start(self) -> FakeHub:
        self._stop.clear()
        self._server = server = _Server(("127.0.0.1", 0), _Handler)
        server.hub = self
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def close(self) -> None:
        self._stop.set()  # wakes delayed handlers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for conn in list(self._conns):  # end keep-alive connections so no client reuses them
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    hub: FakeHub

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that timed out and left is normal
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms delayed-ACK stalls
        self.server.hub._conns.add(self.connection)

    def finish(self) -> None:
        self.server.hub._conns.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def _send(
        self, status: int, body: bytes, headers: dict[str, str], ctype: str = "application/json"
    ) -> None:
        self.send_response(status)
        for key, value in {"Content-Type": ctype, "Content-Length": str(len(body)), **headers}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(200, json.dumps(data).encode(), headers or {})

    def _error(self, status: int, message: str, code: str = "", headers: dict | None = None) -> None:
        extra = {"X-Error-Message": message, **({"X-Error-Code": code} if code else {}), **(headers or {})}
        self._send(status, json.dumps({"error": message}).encode(), extra)

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        self.server.hub.requests.append((self.command, split.path))
        query = parse_qs(split.query, keep_blank_values=True)
        segs = [unquote(s) for s in split.path.strip("/").split("/")]
        try:
            if segs[0] == "api" and len(segs) >= 2 and segs[1] in ("datasets", "models"):
                kind = segs[1][:-1]
                return self._listing(kind, query) if len(segs) == 2 else self._repo_api(kind, segs[2:], query)
            if "resolve" in segs:
                return self._resolve(*(("dataset", segs[1:]) if segs[0] == "datasets" else ("model", segs)))
            self._error(404, "Sorry, we can't find the page you are looking for.")
        except ConnectionError:
            raise
        except Exception as e:  # a bug in the fake: tell the client instead of hanging it
            self._error(500, f"FakeHub error: {e!r}")

    def _find(self, kind: str, segs: list[str], subs: tuple[str, ...]) -> tuple[Repo | None, list[str]]:
        """Split `segs` into a known repo id (1 or 2 segments) and the rest (starting with one of `subs`)."""
        repos = self.server.hub.repos(kind)
        for n in (2, 1):
            if "/".join(segs[:n]) in repos and (len(segs) == n or segs[n] in subs):
                return repos["/".join(segs[:n])], segs[n:]
        self._error(404, "Repository not found", "RepoNotFound")
        return None, []

    def _revision_ok(self, repo: Repo, rest: list[str], min_len: int) -> bool:
        """`rest` = [sub, revision, ...]: checks both, answering 404 when wrong."""
        if len(rest) < min_len:
            self._error(404, "Sorry, we can't find the page you are looking for.")
        elif rest[1] not in ("main", repo.sha):
            self._error(404, f"Invalid rev id: {rest[1]}", "RevisionNotFound", {"X-Repo-Commit": repo.sha})
        else:
            return True
        return False

    def _listing(self, kind: str, q: dict[str, list[str]]) -> None:
        hub = self.server.hub

        def arg(key: str, default: str = "") -> str:
            return q.get(key, [default])[0]

        needles = [s.lower() for s in q.get("search", []) if s]
        repos = [r for r in hub.repos(kind).values() if all(s in r.id.lower() for s in needles)]
        if author := arg("author"):
            repos = [r for r in repos if r.id.startswith(author + "/")]
        for tag in q.get("filter", []) + q.get("pipeline_tag", []):
            repos = [r for r in repos if tag in r.tags]
        if sort := arg("sort"):
            by: dict[str, Any] = {"lastModified": lambda r: r.modified, "id": lambda r: r.id}
            repos.sort(
                key=by.get(sort, lambda r: r.meta.get(sort) or 0), reverse=arg("direction", "-1") != "1"
            )
        total = min(len(repos), int(arg("limit"))) if arg("limit") else len(repos)
        offset = int(arg("cursor", "0"))
        page = repos[offset : min(offset + hub.page_size, total)]
        fault = hub._fault(offset // hub.page_size)
        if fault and "status" in fault:
            return self._error(fault["status"], HUB_500)
        if fault and hub._stop.wait(fault["seconds"]):
            return  # the hub is closing
        full, card = arg("full").lower() == "true", arg("cardData").lower() == "true"
        if expand := q.get("expand"):  # exactly the properties asked for, cardData and siblings included
            data = [r.entry(full=True, card=True) for r in page]
            data = [{k: v for k, v in e.items() if k in (*expand, "_id", "id")} for e in data]
        else:
            data = [r.entry(full=full, card=card) for r in page]
        headers = {}
        if offset + len(page) < total:
            params = [(k, v) for k, vs in q.items() if k != "cursor" for v in vs]
            params.append(("cursor", str(offset + len(page))))
            headers["Link"] = f'<{hub.url}/api/{kind}s?{urlencode(params)}>; rel="next"'
        self._json(data, headers)

    def _repo_api(self, kind: str, segs: list[str], q: dict[str, list[str]]) -> None:
        repo, rest = self._find(kind, segs, ("revision", "tree"))
        if repo is None:
            return
        if not rest or rest[0] == "revision":
            if not rest or self._revision_ok(repo, rest, 2):
                blobs = q.get("blobs", [""])[0].lower() == "true"
                self._json(repo.entry(full=True, card=True, blobs=blobs))
            return
        if not self._revision_ok(repo, rest, 2):
            return
        prefix = "/".join(rest[2:]).strip("/")
        base = f"{prefix}/" if prefix else ""
        recursive = q.get("recursive", [""])[0].lower() == "true"
        under = {p: d for p, d in sorted(repo.files.items()) if p.startswith(base)}
        if prefix and not under:
            return self._error(404, f"{prefix} does not exist", "EntryNotFound", {"X-Repo-Commit": repo.sha})
        items: dict[str, dict[str, Any]] = {}
        for path, data in under.items():
            parts = path[len(base) :].split("/")
            for depth in range(1, len(parts) if recursive else min(2, len(parts))):  # folders on the way
                folder = base + "/".join(parts[:depth])
                oid = _sha1(folder.encode())
                items.setdefault(folder, {"type": "directory", "oid": oid, "size": 0, "path": folder})
            if recursive or len(parts) == 1:
                items[path] = {"type": "file", "oid": _git_oid(data), "size": len(data), "path": path}
        self._json(list(items.values()))

    def _resolve(self, kind: str, segs: list[str]) -> None:
        repo, rest = self._find(kind, segs, ("resolve",))
        if repo is None or not self._revision_ok(repo, rest, 3):
            return
        path, commit = "/".join(rest[2:]), {"X-Repo-Commit": repo.sha}
        if path not in repo.files:
            return self._error(404, "Entry not found", "EntryNotFound", commit)
        data = whole = repo.files[path]
        headers = {**commit, "ETag": f'"{_git_oid(whole)}"', "Accept-Ranges": "bytes"}
        status, rng = 200, self.headers.get("Range", "")
        if rng.startswith("bytes=") and self.command == "GET":  # a resumed download
            lo, _, hi = rng[6:].partition("-")
            start, end = int(lo or 0), min(int(hi) if hi else len(whole) - 1, len(whole) - 1)
            status, data = 206, whole[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{len(whole)}"
        self._send(status, data, headers, "application/octet-stream")
