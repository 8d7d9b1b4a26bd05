"""Filling the search index: documents from a Hub metadata snapshot, the live Hub, the HF cache and local data.

Each source yields `Entry` records (id, the text that is embedded, the text keyword search sees,
metadata for filters and reasons); `build()` embeds them in batches and writes them with
`VectorIndex.upsert`, skipping entries whose content digest is already indexed — so a build is
idempotent, a refresh re-embeds only what changed, and an interrupted build resumes.
"""

from __future__ import annotations

import json
import math
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
    "hub_task_type",
    "size_rows",
    "as_list",
    "tag_values",
    "require_index",
    "popularity",
    "chunk_text",
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


def tag_values(tags: Iterable[str], prefix: str) -> list[str]:
    return [t.split(":", 1)[1] for t in tags if t.startswith(prefix + ":")]


def as_list(value: Any) -> list[str]:
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
    tags = as_list(row.get("tags"))
    cats = as_list(row.get("task_categories")) or tag_values(tags, "task_categories")
    ids = as_list(row.get("task_ids")) or tag_values(tags, "task_ids")
    langs = as_list(row.get("language")) or tag_values(tags, "language")
    lic = row.get("license") or ",".join(tag_values(tags, "license")) or None
    size_cat = row.get("size_category") or ",".join(tag_values(tags, "size_categories")) or None
    columns = as_list(row.get("columns"))
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
        "license": lic if isinstance(lic, str) else ",".join(as_list(lic)) or None,
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
    tags = as_list(row.get("tags"))
    desc = re.sub(r"\s+", " ", re.sub(r"[#*`|>\[\]()!]+", " ", row.get("description") or "")).strip()
    task_type = hub_task_type(row.get("pipeline_tag"), tags)
    langs = as_list(row.get("language"))
    head = f"{_words_of_id(row['id'])}. {row.get('pipeline_tag') or ''}. {', '.join(tags[:12])}."
    extra = f" Datasets: {', '.join(as_list(row.get('datasets'))[:10])}." if row.get("datasets") else ""
    meta = {
        "name": row["id"],
        "source": source,
        "task_type": task_type or "unknown",
        "pipeline_tag": row.get("pipeline_tag"),
        "license": ",".join(as_list(row.get("license"))) or None,
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
