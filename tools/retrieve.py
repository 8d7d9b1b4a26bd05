"""Using found data: load a candidate (local folder, HF cache, or the Hub when online), map its columns and
labels onto the task, sample, and deduplicate against the user's evaluation data.

Loading goes through `datasets` (CSV/TSV, JSON/JSONL, Parquet, `save_to_disk` folders). Label mapping
does not trust names alone: each source label is compared with each task label by the embedding of
its name *and* by the centroid of its examples against the task label's prototype (name plus the
prompt's demonstrations), so numeric or cryptic labels ("0", "Sci/Tech") map too. A capable LLM
confirms or corrects each mapping; the embedded 135M teacher is not asked (the rule decides).
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from p2m.errors import DataError, LLMError
from p2m.tools.hubindex import Entry, dataset_entry
from p2m.tools.hubsources import hub_offline
from p2m.tools.types import Candidate, TaskSpec

__all__ = ["load_table", "local_entry", "load_candidate", "ColumnMap", "map_columns", "sample_examples"]

_FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
_TEXT_NAMES = ("text", "sentence", "review", "content", "document", "tweet", "headline", "title", "utterance",
               "message", "body", "comment", "question", "query", "input", "description", "sms", "post")  # fmt: skip
_LABEL_NAMES = ("label", "labels", "category", "class", "target", "sentiment", "topic", "intent", "y", "output",
                "emotion", "polarity", "tag", "coarse_label", "label_text")  # fmt: skip
_MAX_LABELS = 50


def load_table(path: Path) -> Any:
    """A `datasets.Dataset` from a data file or folder; one readable DataError for anything unusable."""
    import datasets

    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path} does not exist")
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # its errors come back as one DataError line
    try:
        if path.is_dir() and ((path / "state.json").exists() or (path / "dataset_dict.json").exists()):
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                split = "train" if "train" in ds else next(iter(ds))
                ds = ds[split]
        else:
            files = (
                sorted(p for p in path.rglob("*") if p.suffix.lower() in _FORMATS)
                if path.is_dir()
                else [path]
            )
            if path.is_file() and path.suffix.lower() not in _FORMATS:
                raise DataError(f"{path}: unsupported format; use CSV, TSV, JSONL, JSON or Parquet")
            formats = sorted({_FORMATS[p.suffix.lower()] for p in files})
            if not files:
                raise DataError(f"{path} holds no CSV, TSV, JSONL, JSON or Parquet file")
            if len(formats) > 1:
                raise DataError(
                    f"{path} mixes formats ({', '.join(formats)}); keep one format per folder or add the files "
                    "one by one"
                )
            for p in files:  # the usual ways a file is wrong, said plainly before `datasets` reads it
                _check_file(p)
            kwargs = {"delimiter": "\t"} if all(p.suffix.lower() == ".tsv" for p in files) else {}
            ds = datasets.load_dataset(
                formats[0], data_files=[str(p) for p in files], split="train", **kwargs
            )
    except DataError:
        raise
    except Exception as e:  # datasets/pyarrow raise many types for malformed files
        raise DataError(
            f"cannot read {path} ({_reason(e)}); check that it is valid CSV, JSONL or Parquet"
        ) from e
    if len(ds) == 0:
        raise DataError(f"{path} has no rows; add labelled rows under its header")
    return ds


def _check_file(path: Path) -> None:
    """An empty file, or a text file that is not UTF-8, gets its own message."""
    from p2m.tools.uploads import decode_text

    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty; add a header and labelled rows")
    if _FORMATS[path.suffix.lower()] != "parquet":
        with open(path, "rb") as f:
            head = f.read(1_000_000)
            text = decode_text(head, str(path), final=not f.read(1))
        header = 1 if path.suffix.lower() in (".csv", ".tsv") else 0
        if len([line for line in text.splitlines() if line.strip()]) - header <= 0:
            raise DataError(
                f"{path} has no rows; add labelled rows" + (" under its header" if text.strip() else "")
            )


def _reason(e: BaseException) -> str:
    """The first line of the first specific error in the chain: `datasets` wraps it in a generic one."""
    first = None
    for _ in range(10):  # a bounded walk: chains can loop
        text = str(e).strip()
        first = first or text
        if text and not text.startswith("An error occurred while generating"):
            first = text
            break
        if (e := e.__cause__ or e.__context__) is None:
            break
    return first.splitlines()[0][:200] if first else "unknown error"


def _string_columns(ds: Any) -> list[str]:
    from datasets import Value

    return [
        c for c, f in ds.features.items() if isinstance(f, Value) and f.dtype in ("string", "large_string")
    ]


def local_entry(path: Path, name: str | None = None, license: str = "user") -> Entry:
    """An index entry describing a local data set: its name, columns, label values and sample rows."""
    from p2m.tools.uploads import check_upload_size

    path = Path(path).expanduser().resolve()
    if path.exists():
        check_upload_size(path)  # before anything reads it
    ds = load_table(path)
    name = name or (path.stem if path.is_file() else path.name)
    cols = list(ds.features)
    sample = ds.select(range(min(len(ds), 5)))
    label_col, values = _guess_label(ds, None)
    text_col = _guess_text(ds, exclude=label_col)
    if not (label_col and text_col):  # runs could never train on it
        missing = "text column" if label_col else f"label column (2 to {_MAX_LABELS} distinct short values)"
        raise DataError(f"{path.name} has no {missing} (its columns: {', '.join(cols)}); index labelled "
                        "data, e.g. with columns text and label")  # fmt: skip
    sample_texts = [str(t)[:200] for t in sample[text_col]] if text_col else []
    desc = (
        f"Local data set {name} with {len(ds)} rows and columns {', '.join(cols)}."
        + (f" Labels ({label_col}): {', '.join(values[:20])}." if values else "")
        + (f" Examples: {' | '.join(sample_texts)}" if sample_texts else "")
    )
    return dataset_entry(
        {"id": f"local/{name}", "description": desc, "columns": cols, "n_rows": len(ds), "path": str(path),
         "license": license, "language": []},
        "local",
    )  # fmt: skip


def load_candidate(cand: Candidate, max_bytes: int = 200_000_000) -> tuple[Any, str]:
    """Load a search candidate and return (table, provenance prefix).

    Local data and the HF cache work offline; other Hub datasets are downloaded only when the Hub
    is reachable (HF_HUB_OFFLINE unset), and only their data files of a supported format.
    """
    meta = cand.metadata
    if meta.get("path"):
        return load_table(Path(meta["path"])), f"user:{meta['path']}"
    rev = (meta.get("revision") or "main")[:12]
    if meta.get("cached_path"):
        return load_table(Path(meta["cached_path"])), f"hub:{cand.id}@{rev}"
    from huggingface_hub import HfApi, constants, hf_hub_download

    if hub_offline():
        raise DataError(f"{cand.id} is not in the local cache and the Hub is offline")
    endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    try:
        info = HfApi(endpoint=endpoint).dataset_info(cand.id, files_metadata=True, timeout=30)
        files = [s for s in info.siblings or [] if Path(s.rfilename).suffix.lower() in _FORMATS]
        train = [s for s in files if re.search(r"train", s.rfilename, re.I)] or files
        if not train:
            raise DataError(f"{cand.id} has no CSV, JSONL or Parquet data files")
        if sum(s.size or 0 for s in train) > max_bytes:
            raise DataError(f"{cand.id}'s data files are larger than {max_bytes / 1e6:g} MB")
        paths = [hf_hub_download(cand.id, s.rfilename, repo_type="dataset", revision=info.sha, endpoint=endpoint)
                 for s in train]  # fmt: skip
    except DataError:
        raise
    except Exception as e:
        why = " ".join(str(e).split())[:160]  # one line: Hub errors span several
        raise DataError(
            f"cannot load {cand.id} from the Hub ({type(e).__name__}: {why}); it is skipped"
        ) from e
    folder = Path(paths[0]).parent if len(paths) == 1 else Path(os.path.commonpath(paths))
    table = load_table(Path(paths[0])) if len(paths) == 1 else load_table(folder)
    return table, f"hub:{cand.id}@{(info.sha or rev)[:12]}"


def _guess_label(ds: Any, text_col: str | None) -> tuple[str | None, list[str]]:
    from datasets import ClassLabel, Value

    feats = ds.features
    for c, f in feats.items():
        if isinstance(f, ClassLabel):
            return c, list(f.names)
    head = ds.select(range(min(len(ds), 2000)))
    ranked = sorted(feats, key=lambda c: (c.lower() not in _LABEL_NAMES, _LABEL_NAMES.index(c.lower())
                                          if c.lower() in _LABEL_NAMES else 0))  # fmt: skip
    for c in ranked:
        if c == text_col or not isinstance(feats[c], Value):
            continue
        values = sorted({str(v) for v in head[c] if v is not None and str(v).strip()})
        if 2 <= len(values) <= _MAX_LABELS and (
            c.lower() in _LABEL_NAMES or len(values) <= max(2, len(head) // 3)
        ):
            avg = sum(len(v) for v in values) / len(values)
            if avg <= 40:
                return c, values
    return None, []


def _guess_text(ds: Any, exclude: str | None) -> str | None:
    head = ds.select(range(min(len(ds), 200)))
    best, best_score = None, -1.0
    for c in _string_columns(ds):
        if c == exclude:
            continue
        lengths = [len(str(v)) for v in head[c] if v is not None]
        if not lengths:
            continue
        score = float(np.log1p(np.mean(lengths))) + (3.0 if c.lower() in _TEXT_NAMES else 0.0)
        if score > best_score:
            best, best_score = c, score
    return best


@dataclass
class ColumnMap:
    """How a found data set's columns and labels become the task's inputs and labels."""

    input_column: str
    label_column: str
    labels: dict[str, str | None]  # source label value → task label (None: not used)
    scores: dict[str, float] = field(default_factory=dict)  # source label → mapping confidence
    by: str = "rule"

    def covered(self) -> set[str]:
        return {v for v in self.labels.values() if v}


def _label_strings(ds: Any, col: str) -> list[str]:
    from datasets import ClassLabel

    f = ds.features[col]
    if isinstance(f, ClassLabel):
        return [f.names[i] for i in ds[col]]
    return [str(v) for v in ds[col]]


def map_columns(ds: Any, spec: TaskSpec, llm: Any = None, seed: int = 0) -> ColumnMap | None:
    """Map a classification data set onto the task, or None when it cannot serve (no text, no labels, <2 fit)."""
    from p2m.tools.embed import embed

    label_col, values = _guess_label(ds, None)
    if not label_col:
        return None
    text_col = _guess_text(ds, exclude=label_col)
    if not text_col:
        return None
    strings = _label_strings(ds, label_col)
    rng = random.Random(seed)
    by_label: dict[str, list[str]] = {}
    for i in rng.sample(range(len(ds)), min(len(ds), 3000)):
        v = strings[i]
        if len(by_label.setdefault(v, [])) < 24 and ds[i][text_col]:
            by_label[v].append(str(ds[i][text_col])[:500])
    src = [v for v in values if by_label.get(v)]
    if len(src) < 2:
        return None
    # task label prototypes: the label name in context and the prompt's demonstrations of it
    protos = []
    for lab in spec.labels:
        texts = [f"{lab}", f"a {spec.input_kind} about {lab}"] + [
            x for x, y in spec.demonstrations if y == lab
        ]
        protos.append(embed(texts).mean(axis=0))
    protos = np.array(protos)
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    centroids = np.array([embed(by_label[v]).mean(axis=0) for v in src])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    sim_centroid = centroids @ protos.T
    numeric = all(re.fullmatch(r"-?\d+(\.\d+)?", v) for v in src)
    if numeric:
        sim = sim_centroid
    else:
        sim_name = embed([v.replace("_", " ") for v in src]) @ embed(list(spec.labels)).T
        sim = 0.5 * sim_name + 0.5 * sim_centroid
    mapping: dict[str, str | None] = {}
    scores: dict[str, float] = {}
    if len(src) == len(spec.labels):
        # as many source labels as task labels: the best one-to-one assignment
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(-sim)
        for i, j in zip(rows, cols, strict=True):
            mapping[src[i]] = spec.labels[j]
            scores[src[i]] = round(float(sim[i, j]), 3)
    else:
        for i, v in enumerate(src):
            order = np.argsort(-sim[i])
            best, second = sim[i, order[0]], sim[i, order[1]] if len(order) > 1 else -1.0
            # a source label maps where it is clearly closer to one task label than to the others,
            # and where that task label also prefers it over the other source labels
            col_best = np.argmax(sim[:, order[0]])
            ok = best - second >= 0.02 and (
                col_best == i or sim[i, order[0]] >= sim[col_best, order[0]] - 0.05
            )
            mapping[v] = spec.labels[order[0]] if ok else None
            scores[v] = round(float(best - second), 3)
    by = "rule"
    if llm is not None and getattr(llm, "capable", False):
        mapping, by = _llm_check(llm, spec, by_label, mapping), "llm"
    cmap = ColumnMap(text_col, label_col, mapping, scores, by)
    return cmap if len(cmap.covered()) >= 2 else None


def _llm_check(llm: Any, spec: TaskSpec, by_label: dict[str, list[str]],
               mapping: dict[str, str | None]) -> dict[str, str | None]:  # fmt: skip
    """Ask a capable LLM which task label (or none) each source label's examples belong to."""
    out = dict(mapping)
    for v in mapping:
        texts = by_label[v]
        shown = "\n".join(f"- {t[:200]}" for t in texts[:5])
        prompt = (f"Task: {spec.instruction}\nTask labels: {', '.join(spec.labels)}.\n"
                  f"A data set labels these examples '{v}':\n{shown}\n"
                  "Which task label do they belong to? Answer 'none' if no task label fits.")  # fmt: skip
        try:
            answer = llm.choose([("user", prompt)], [*spec.labels, "none"], purpose="map_labels")
        except LLMError:  # an unreachable or failing LLM keeps the rule's mapping
            continue
        if answer is None:  # not one of the options: keep the rule's mapping
            continue
        out[v] = None if answer == "none" else answer
    return out


def _norm(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def sample_examples(ds: Any, cmap: ColumnMap, spec: TaskSpec, max_rows: int, provenance: str,
                    exclude: list[str] | None = None, seed: int = 0, licence: str | None = None,
                    near_dup: float = 0.95) -> tuple[list[dict[str, Any]], dict[str, Any]]:  # fmt: skip
    """Up to `max_rows` balanced rows as store rows {input, output, source, quality}, never ones that
    (nearly) repeat `exclude` (the user's evaluation inputs); returns the rows and a report."""
    from p2m.tools.embed import embed

    strings = _label_strings(ds, cmap.label_column)
    texts = ds[cmap.input_column]
    per_label = max(1, max_rows // max(1, len(cmap.covered())))
    order = list(range(len(ds)))
    random.Random(seed).shuffle(order)
    seen = {_norm(x) for x in exclude or []}
    counts: dict[str, int] = {}
    picked: list[tuple[int, str]] = []
    dropped = {"unmapped": 0, "empty": 0, "duplicate_or_eval": 0, "near_eval": 0}
    for i in order:
        target = cmap.labels.get(strings[i])
        if not target:
            dropped["unmapped"] += 1
            continue
        if counts.get(target, 0) >= per_label:
            continue
        text = str(texts[i] or "").strip()
        if not text:
            dropped["empty"] += 1
            continue
        key = _norm(text)
        if key in seen:
            dropped["duplicate_or_eval"] += 1
            continue
        seen.add(key)
        counts[target] = counts.get(target, 0) + 1
        picked.append((i, text))
    if exclude and picked:  # near-duplicates of evaluation rows would inflate the reported score
        sims = embed([t for _, t in picked]) @ embed(list(exclude)).T
        keep = sims.max(axis=1) < near_dup
        dropped["near_eval"] = int((~keep).sum())
        picked = [p for p, k in zip(picked, keep, strict=True) if k]
    rows = [
        {"input": text[:2000], "output": cmap.labels[strings[i]], "source": provenance, "kept": True,
         "split": "train", "quality": {"licence": licence, "source_label": strings[i], "row": i, "mapped_by": cmap.by}}
        for i, text in picked
    ]  # fmt: skip
    per = {lab: sum(r["output"] == lab for r in rows) for lab in spec.labels}
    return rows, {"rows": len(rows), "per_label": per, "dropped": dropped,
                  "mapping": cmap.labels, "input_column": cmap.input_column, "label_column": cmap.label_column,
                  "mapped_by": cmap.by}  # fmt: skip
