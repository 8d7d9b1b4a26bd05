"""Retrieval: labelled data from the index (the user's data, the HF cache, the Hub when online) mapped onto
the task's labels, sampled, deduplicated against the evaluation rows, and recorded with its provenance."""

from __future__ import annotations

from typing import Any

from p2m.agent.run import Run
from p2m.errors import P2MError

__all__ = ["retrieve", "HELD_OUT"]

HELD_OUT = 200  # retrieved rows kept out of training as real validation rows, at most


def retrieve(r: Run) -> dict[str, Any]:
    """Search the index for labelled data that fits the task, map it, and keep a balanced sample.

    Every fifth row kept (up to `HELD_OUT`) is held out as real validation rows: a dataset's labels are
    real, and they say more about real inputs than the teacher's own rows.
    """
    spec = r.spec
    if spec.task_type != "classification":
        r.decide("retrieve", f"skipped: retrieval maps labelled data, not {spec.task_type} data", n=0)
        return {"rows": 0, "tried": [], "used": []}
    from p2m.memory.vectors import open_index
    from p2m.tools.hubsources import hub_offline
    from p2m.tools.retrieve import load_candidate, map_columns, sample_examples
    from p2m.tools.search import search, spec_query

    info: dict[str, Any] = {"rows": 0, "tried": [], "used": [], "held_out": 0}
    if not r.opts.retrieve or r.opts.retrieve_max == 0:
        r.decide("retrieve", "skipped: retrieval is off for this run", n=0)
        return info
    index = open_index(r.opts.chroma_url)
    if not any(index.count(k) for k in ("datasets", "local")):
        r.decide("retrieve", "skipped: the index is empty (`p2m index add PATH` or `p2m index build`)", n=0)
        return info
    cands = search(index, spec_query(spec), "datasets", k=max(20, r.opts.retrieve_candidates),
                   task_type=spec.task_type, labels=spec.labels)  # fmt: skip
    # only what can be loaded here: the user's data and the HF cache always, the Hub when online
    online = not hub_offline()
    cands = [c for c in cands if c.kind == "local" or c.metadata.get("cached_path") or online]
    exclude = [x for x, _ in r.eval_rows()] + [x for x, _ in spec.demonstrations]
    budget = r.opts.retrieve_max
    for cand in cands[: r.opts.retrieve_candidates]:
        tried = {"id": cand.id, "score": cand.score}
        info["tried"].append(tried)
        try:
            table, provenance = load_candidate(cand)
        except P2MError as e:
            tried["skipped"] = str(e)
            continue
        llm = r.llm if r.opts.llm.base_url else None  # the embedded teacher is not asked to judge mappings
        cmap = map_columns(table, spec, llm=llm, seed=r.opts.train.seed)
        if cmap is None:
            tried["skipped"] = "no text column with labels that map onto two or more task labels"
            continue
        rows, rep = sample_examples(table, cmap, spec, budget, provenance, exclude=exclude, seed=r.opts.train.seed,
                                    licence=cand.metadata.get("license"))  # fmt: skip
        if not rows:
            tried["skipped"] = "no usable rows after mapping and dedup"
            continue
        held = 0
        for i, row in enumerate(rows):
            if i % 5 == 4 and held < HELD_OUT - info["held_out"]:
                row["split"], held = "validation", held + 1
        r.store.add_examples(r.run_id, rows)
        info["held_out"] += held
        tried.update(rep)
        info["used"].append(cand.id)
        info["rows"] += len(rows)
        budget -= len(rows)
        mapped = {k: v for k, v in cmap.labels.items() if v}
        r.decide("retrieve", f"{cand.id}: {len(rows)} rows, labels mapped {mapped} by {cmap.by}",
                 dataset=cand.id, n=len(rows))  # fmt: skip
        r.log(f"retrieved {len(rows)} rows from {cand.id} (labels {mapped})")
        if budget <= 0:
            break
    if not info["used"]:
        r.decide("retrieve", "no found data set could be loaded and mapped onto the task", n=0)
    return info
