"""One version of a chat-refined task: generate what it changed, curate, train, deploy, compare.

A refinement redoes only what it affects: new or regenerated labels get new examples (the others
keep theirs), dropped examples stay in the store with their reason, and every version trains its
own candidates (`v<N>-quick-trial`, `v<N>-finetune`) so the metric of each version is on record.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from p2m.agent.run import USER_DROP, Run
from p2m.errors import DataError, TaskError
from p2m.memory import RunStore
from p2m.tools.types import TaskSpec

__all__ = [
    "train_version",
    "compare",
    "history_table",
    "sample",
    "drop_where",
    "mentions",
    "read_upload",
    "USER_DROP",
]


def mentions(text: str, word: str) -> bool:
    """Whether `text` mentions `word` (case-insensitive, a plural or singular form counts)."""
    stem = re.escape(word.lower().rstrip("s")) if len(word) > 3 else re.escape(word.lower())
    return re.search(rf"\b{stem}(?:s|es)?\b", text.lower()) is not None


def drop_where(store: RunStore, run_id: str, pred: Any, reason: str, generated_only: bool = False) -> int:
    """Mark every kept example for which `pred(row)` holds as dropped with `reason`; returns how many."""
    rows = store.examples(run_id, kept=True, source_prefix="generated:" if generated_only else None)
    hits = [
        {"id": r["id"], "kept": False, "drop_reason": reason}
        for r in rows
        if r["source"] != "prompt" and pred(r)
    ]
    store.update_examples(hits)
    return len(hits)


def train_version(r: Run, spec: TaskSpec, version: int, generate: list[str], hints: dict[str, str],
                  banned: list[str]) -> dict[str, Any]:  # fmt: skip
    """Generate for `generate` labels, curate, train and deploy one task version; returns its record.

    The version's stages are recorded in the run store (`generate:v<N>`, `curate:v<N>`, `train:v<N>-`),
    so a session cut off mid-version continues where it stopped.

    Raises:
        P2MError: a readable failure; the run is marked failed and the session can go on.
    """
    from p2m.agent.report import write_plot

    store, rid = r.store, r.run_id
    store.set_status(rid, "running", stage="generate")
    try:
        gen: dict[str, Any] = {}
        if generate:
            want = math.ceil(r.opts.gen.examples / max(1, len(spec.labels)))
            r.decide("generate_more", f"version {version}: examples for {', '.join(generate)} only; the other labels "
                     "keep theirs", labels=generate, n=want * len(generate), version=version)  # fmt: skip
            gen = r.generate(0, {"labels": generate, "hints": {k: " " + v for k, v in hints.items()}},
                             n=want * len(generate), tag={"version": version}, key=f"generate:v{version}")  # fmt: skip
        for word in banned:  # examples written after the user banned a word are dropped too
            drop_where(
                store, rid, lambda x, w=word: mentions(x["input"], w), f"{USER_DROP} mentions '{word}'"
            )
        r.curate(0, key=f"curate:v{version}", later=True)
        kept = store.examples(rid, kept=True)
        per = {lab: sum(x["output"] == lab and x["source"] != "prompt" for x in kept) for lab in spec.labels}
        if min(per.values(), default=0) < 2:
            raise TaskError(f"too few examples for some labels {per}; give examples, or undo the last change")
        trained = r.train(0, r.first_students(), prefix=f"v{version}-")
        report = r.deploy(trained["best"], trained["candidates"], {"version": version})
        write_plot(store, rid, r.folder / "trajectory.png")
    except BaseException as e:
        store.set_status(
            rid, "interrupted" if isinstance(e, KeyboardInterrupt) else "failed", error=str(e)[:500]
        )
        raise
    store.set_status(rid, "complete", stage="done")
    best = trained["best"]
    per_label = {
        lab: round(float(v.get("f1", 0.0)), 4) for lab, v in best["report"].get("per_label", {}).items()
    }
    return {"version": version, "score": round(best["score"], 4), "macro_f1": round(best["macro_f1"], 4),
            "real": best.get("real"), "per_label": per_label, "n_train": trained["n_train"],
            "n_val": trained["n_teacher_val"], "model": best["name"], "generated": gen.get("usable", 0),
            "report": report.get("run")}  # fmt: skip


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else ("—" if value is None else str(value))


def compare(prev: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """A markdown table of two versions' metrics side by side (the previous one may be missing)."""
    a = f"v{prev['version']}" if prev else "before"
    b = f"v{new['version']}"
    rows = []
    real_old, real_new = (prev or {}).get("real") or {}, new.get("real") or {}
    if real_new:  # real rows first: the teacher-written ones flatter every version
        rows.append((f"accuracy, real rows ({real_new['rows']}; 90%: {real_new['low']:.2f}–{real_new['high']:.2f})",
                     real_old.get("score"), real_new["score"]))  # fmt: skip
    rows += [("accuracy, teacher-written rows", (prev or {}).get("score"), new["score"]),
             ("macro-F1, teacher-written rows", (prev or {}).get("macro_f1"), new["macro_f1"])]  # fmt: skip
    labels = list(dict.fromkeys([*((prev or {}).get("per_label") or {}), *new["per_label"]]))
    rows += [
        (f"F1 {lab}", ((prev or {}).get("per_label") or {}).get(lab), new["per_label"].get(lab))
        for lab in labels
    ]
    rows += [("training examples", (prev or {}).get("n_train"), new["n_train"]),
             ("teacher-written validation rows", (prev or {}).get("n_val"), new["n_val"])]  # fmt: skip
    lines = [f"| | {a} | {b} | change |", "|---|---|---|---|"]
    for name, x, y in rows:
        delta = f"{y - x:+.3f}" if isinstance(x, float) and isinstance(y, float) else ""
        if isinstance(x, int) and isinstance(y, int) and not isinstance(x, bool):
            delta = f"{y - x:+d}"
        lines.append(f"| {name} | {_fmt(x)} | {_fmt(y)} | {delta} |")
    return "\n".join(lines)


def history_table(versions: list[dict[str, Any]]) -> str:
    """A markdown table of every trained version: its change and its metrics."""
    lines = ["| version | change | accuracy | macro-F1 | training examples |", "|---|---|---|---|---|"]
    lines += [f"| v{v['version']} | {v['note']} | {v['score']:.3f} | {v['macro_f1']:.3f} | {v['n_train']} |"
              for v in versions]  # fmt: skip
    return "\n".join(lines)


def sample(store: RunStore, run_id: str, version: int, per_label: int = 2) -> list[tuple[str, str]]:
    """A few examples generated for `version`, `per_label` per label, as (label, text)."""
    rows = [x for x in store.examples(run_id, kept=True, source_prefix="generated:")
            if (x["quality"] or {}).get("version") == version]  # fmt: skip
    out: list[tuple[str, str]] = []
    for lab in dict.fromkeys(x["output"] for x in rows):
        out += [(lab, x["input"]) for x in rows if x["output"] == lab][:per_label]
    return out


def read_upload(path: str | Path) -> list[tuple[str, str]]:
    """(input, output) pairs from an uploaded file: JSONL {input, output}, CSV/TSV with two columns, or text
    with `Input:/Output:` pairs or `text -> label` lines.

    Raises:
        DataError: the file cannot be read or holds no pairs; the message says which format is expected.
    """
    import csv
    import io

    from p2m.tools.parse import split_demonstrations
    from p2m.tools.uploads import check_upload_size, decode_text

    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise DataError(f"{path.name} {what}; upload one .jsonl, .csv or .txt file")
    check_upload_size(path)  # the whole file is read: nothing is cut silently
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path.name} ({e.strerror or e}); upload a readable file") from e
    raw = decode_text(data, path.name)
    if not raw.strip():
        raise DataError(f"{path.name} is empty; upload a file of examples (JSONL {{input, output}}, CSV "
                        "input,output, or lines 'text -> label')")  # fmt: skip
    if "\x00" in raw:
        raise DataError(
            f"{path.name} holds NUL bytes, so it is not a text file; upload a UTF-8 .jsonl, .csv or .txt"
        )
    pairs: list[tuple[str, str]] = []
    if path.suffix.lower() in (".jsonl", ".json"):
        for n, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                pairs.append((str(row["input"]).strip(), str(row["output"]).strip()))
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise DataError(f"{path.name} line {n} is not a JSON object with input and output") from e
    elif path.suffix.lower() in (".csv", ".tsv"):
        rows = list(csv.reader(io.StringIO(raw), delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
        if rows and [c.strip().lower() for c in rows[0][:2]] in (["input", "output"], ["text", "label"]):
            rows = rows[1:]
        pairs = [(r[0].strip(), r[1].strip()) for r in rows if len(r) >= 2]
    else:
        pairs = split_demonstrations(raw)[1]
    pairs = [(x, y) for x, y in pairs if x and y]
    if not pairs:
        raise DataError(f"{path.name} holds no examples; expected JSONL {{input, output}}, CSV input,output, "
                        "or lines 'text -> label'")  # fmt: skip
    return pairs
