"""Search benchmarks: retrieval quality on a labelled query set, and index speed at scale.

`retrieval_bench` scores each ranking mode on queries {"query", "relevant": [ids], "task_type"}:
recall@5 = relevant ids among the top 5 (a result covers the mirrors folded into it) over
min(5, number relevant); MRR = 1 / rank of the first relevant result. `scale_bench` fills a
synthetic collection of N entries with realistic text lengths and measures build time, size on disk
and filtered top-10 query latency.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from p2m.errors import DataError
from p2m.memory.vectors import VectorIndex
from p2m.tools.parse import detect_task_type
from p2m.tools.search import MODES, search

__all__ = ["load_queries", "retrieval_bench", "scale_bench"]


def load_queries(path: Path) -> list[dict[str, Any]]:
    """Labelled queries, one JSON object per line with "query" and "relevant"."""
    rows = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise DataError(f"cannot read {path} ({e.strerror or e})") from e
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            assert isinstance(row["query"], str) and isinstance(row["relevant"], list) and row["relevant"]
        except (json.JSONDecodeError, KeyError, TypeError, AssertionError) as e:
            raise DataError(f'{path}:{n}: expected {{"query": str, "relevant": [ids]}}') from e
        rows.append(row)
    if not rows:
        raise DataError(f"{path} has no queries")
    return rows


def _score(ranked: list[list[str]], relevant: set[str], k: int = 5) -> tuple[float, float]:
    covered: set[str] = set()
    for ids in ranked[:k]:
        covered |= set(ids) & relevant
    recall = min(1.0, len(covered) / min(k, len(relevant)))
    rr = next((1.0 / r for r, ids in enumerate(ranked, 1) if set(ids) & relevant), 0.0)
    return recall, rr


def retrieval_bench(index: VectorIndex, queries: list[dict[str, Any]], k: int = 10,
                    modes: tuple[str, ...] = MODES) -> dict[str, Any]:  # fmt: skip
    """recall@5 and MRR per ranking mode, overall and per task type, with per-query results.

    The rerank gets the task type the way a run does, read from the query by `detect_task_type`
    (not the labelled one).
    """
    from p2m.tools.embed import embed

    vectors = embed([q["query"] for q in queries])
    out: dict[str, Any] = {"n_queries": len(queries), "modes": {}}
    for mode in modes:
        per_query, times = [], []
        for q, vec in zip(queries, vectors, strict=True):
            t = time.perf_counter()
            cands = search(index, q["query"], "datasets", k=k, mode=mode, embed_fn=lambda _t, v=vec: v[None, :],
                           task_type=detect_task_type(q["query"], [], []))  # fmt: skip
            times.append(time.perf_counter() - t)
            recall, rr = _score([[c.id, *c.duplicates] for c in cands], set(q["relevant"]))
            per_query.append({"query": q["query"], "task_type": q.get("task_type"), "recall@5": recall, "rr": rr,
                              "top5": [c.id for c in cands[:5]]})  # fmt: skip
        by_type: dict[str, list[float]] = {}
        for r in per_query:
            by_type.setdefault(r["task_type"] or "?", []).append(r["recall@5"])
        out["modes"][mode] = {
            "recall@5": round(statistics.mean(r["recall@5"] for r in per_query), 3),
            "mrr": round(statistics.mean(r["rr"] for r in per_query), 3),
            "ms_per_query": round(1000 * statistics.mean(times), 1),
            "recall@5_by_task_type": {t: round(statistics.mean(v), 3) for t, v in sorted(by_type.items())},
            "queries": per_query,
        }
    return out


_WORDS = (
    "dataset corpus of english news articles reviews tweets questions answers passages labelled annotated "
    "sentiment topic classification translation summarization python code pairs dialogue medical legal "
    "scientific abstracts crowdsourced wikipedia sentences entities intent spam emotion toxicity benchmark "
    "train test validation split collected from the web with human annotations and model outputs"
).split()
_TASKS = ("classification", "extractive_qa", "text_to_code", "data_to_text", "text_generation")
_LICENSES = ("apache-2.0", "mit", "cc-by-4.0", "cc-by-sa-4.0", "other")


def scale_bench(folder: Path, n: int, n_queries: int = 1000, batch: int = 5000, seed: int = 0,
                progress: bool = False) -> dict[str, Any]:  # fmt: skip
    """Fill a fresh collection with `n` synthetic entries and time build and filtered top-10 queries.

    Texts follow the snapshot's dataset descriptions in length (log-normal, median ~230 chars);
    vectors are random unit vectors (embedding a million texts on 2 cores would take hours and
    is measured separately as the embedder's rate), so this measures the index, not the embedder.
    """
    from tqdm.auto import tqdm

    shutil.rmtree(folder, ignore_errors=True)
    index = VectorIndex(folder)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for start in tqdm(range(0, n, batch), desc="synthetic entries", unit="batch", disable=not progress):
        m = min(batch, n - start)
        vecs = rng.standard_normal((m, 384)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        lengths = np.clip(rng.lognormal(np.log(35), 0.8, m).astype(int), 5, 600)
        texts = [" ".join(rng.choice(_WORDS, size=int(w))) for w in lengths]
        ids = [f"synthetic/{start + i}" for i in range(m)]
        metas = [{"name": i, "task_type": _TASKS[j % 5], "license": _LICENSES[(j // 5) % 5],
                  "downloads": int(rng.integers(0, 10**6)), "lang_en": True} for j, i in enumerate(ids, start)]  # fmt: skip
        index.upsert("datasets", ids, [[t] for t in texts], metas, vecs, ["x"] * m, texts)
    build = time.perf_counter() - t0
    size = sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())
    lat_f, lat_u = [], []
    queries = rng.standard_normal((n_queries, 384)).astype(np.float32)
    for q in queries[:20]:  # warm-up: load the HNSW segments into memory
        index.dense("datasets", q, 10)
    for i, q in enumerate(queries):
        where = {"task_type": _TASKS[i % 5]}
        t = time.perf_counter()
        hits = index.dense("datasets", q, 10, where)
        lat_f.append(1000 * (time.perf_counter() - t))
        assert len(hits) == 10 and all(h["metadata"]["task_type"] == where["task_type"] for h in hits)
    for q in queries[:200]:
        t = time.perf_counter()
        index.dense("datasets", q, 10)
        lat_u.append(1000 * (time.perf_counter() - t))
    index.close()
    return {
        "entries": n,
        "build_seconds": round(build, 1),
        "entries_per_second": round(n / build, 1),
        "disk_mb": round(size / 1e6, 1),
        "filtered_top10_ms": {
            "p50": round(float(np.percentile(lat_f, 50)), 2),
            "p95": round(float(np.percentile(lat_f, 95)), 2),
            "n": len(lat_f),
        },  # fmt: skip
        "unfiltered_top10_ms": {
            "p50": round(float(np.percentile(lat_u, 50)), 2),
            "p95": round(float(np.percentile(lat_u, 95)), 2),
            "n": len(lat_u),
        },  # fmt: skip
    }
