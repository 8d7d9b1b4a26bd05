"""One version of a chat-refined task, for every task kind: generate what it changed, curate, train, deploy.

A refinement redoes only what it affects: for classification, new or regenerated labels get new
examples (the others keep theirs); for the other kinds (extractive QA, text-to-code, data-to-text,
text generation), as many new examples as the change set aside, written with the user's hint. Dropped
examples stay in the store with their reason, and every version trains its own candidates
(`v<N>-<student>`), scored on real rows and on teacher-written rows, so each version's scores are on record.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from p2m.agent.run import USER_DROP, Run
from p2m.agent.versions import compare, history_table
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
    "row_mentions",
    "words_outside",
    "read_upload",
    "USER_DROP",
]


def mentions(text: str, word: str) -> bool:
    """Whether `text` mentions `word` (case-insensitive, a plural or singular form counts)."""
    stem = re.escape(word.lower().rstrip("s")) if len(word) > 3 else re.escape(word.lower())
    return re.search(rf"\b{stem}(?:s|es)?\b", text.lower()) is not None


def row_mentions(row: dict[str, Any], word: str, task_type: str) -> bool:
    """Whether an example mentions `word`: its input, and for kinds that write text its output too (a
    classification output is a label, which must not drop a whole label)."""
    return mentions(row["input"], word) or (task_type != "classification" and mentions(row["output"], word))


def words_outside(row: dict[str, Any], bounds: dict[str, int] | None) -> bool:
    """Whether an example's output is outside the user's length bounds {max_words?, min_words?}."""
    if not bounds:
        return False
    n = len(row["output"].split())
    return n > bounds.get("max_words", n) or n < bounds.get("min_words", n)


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


def train_version(r: Run, spec: TaskSpec, version: int, generate: list[str] | int,
                  hints: dict[str, str] | None = None, banned: list[str] | tuple[str, ...] = (), *,
                  hint: str = "", bounds: dict[str, int] | None = None) -> dict[str, Any]:  # fmt: skip
    """Generate what the version needs, curate, train and deploy it; returns its record.

    Args:
        r: the session's run engine.
        spec: the version's TaskSpec (already stored as the run's latest task version).
        version: its number.
        generate: classification: the labels to write new examples for; other kinds: how many new
            examples to write (0: none).
        hints: classification: a sentence per label added to its requests ("Keep it to one short sentence.").
        banned: words whose examples are dropped, new ones included.
        hint: other kinds: the user's wish for the outputs, passed to the teacher (`focus["hint"]`).
        bounds: other kinds: {max_words?, min_words?} for outputs; generated rows outside are dropped.

    The version's stages are recorded in the run store (`generate:v<N>`, `curate:v<N>`, `train:v<N>-`),
    so a session cut off mid-version continues where it stopped.

    Raises:
        P2MError: a readable failure; the run is marked failed and the session can go on.
    """
    from p2m.agent.report import write_plot

    store, rid, seq = r.store, r.run_id, spec.task_type != "classification"
    store.set_status(rid, "running", stage="generate")
    try:
        gen = _generate(r, spec, version, generate, hints or {}, hint)
        for word in banned:  # examples written after the user banned a word are dropped too
            drop_where(store, rid, lambda x, w=word: row_mentions(x, w, spec.task_type),
                       f"{USER_DROP} mentions '{word}'")  # fmt: skip
        if bounds:
            drop_where(store, rid, lambda x: words_outside(x, bounds), f"{USER_DROP} {_bounds_text(bounds)}",
                       generated_only=True)  # fmt: skip
        r.curate(0, key=f"curate:v{version}", later=True)
        kept = [x for x in store.examples(rid, kept=True) if x["source"] != "prompt"]
        if seq:
            n_train = sum(x["split"] == "train" for x in kept)
            if n_train < 2:
                raise TaskError(f"only {n_train} examples are left to train on; paste or upload examples, or "
                                "undo the last change")  # fmt: skip
        else:
            per = {lab: sum(x["output"] == lab for x in kept) for lab in spec.labels}
            if min(per.values(), default=0) < 2:
                raise TaskError(
                    f"too few examples for some labels {per}; give examples, or undo the last change"
                )
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
    return {"version": version, "task_type": spec.task_type, "metric": best["metric"],
            "score": round(best["score"], 4), "macro_f1": None if seq else round(best["macro_f1"], 4),
            "real": best.get("real"), "teacher": best.get("teacher"), "per_label": {} if seq else per_label,
            "n_train": trained["n_train"], "n_val": trained["n_teacher_val"], "n_real": trained["n_real"],
            "model": best["name"], "generated": gen.get("usable", 0), "report": report.get("run")}  # fmt: skip


def _generate(r: Run, spec: TaskSpec, version: int, generate: list[str] | int, hints: dict[str, str],
              hint: str) -> dict[str, Any]:  # fmt: skip
    """The version's new examples from the teacher (none when `generate` is empty or 0)."""
    if not generate:
        return {}
    if spec.task_type != "classification":
        n = int(generate)
        asked = f", asking: {hint}" if hint else ""
        r.decide("generate_more", f"version {version}: {n} new examples from the teacher{asked}", n=n,
                 version=version)  # fmt: skip
        return r.generate(0, {"hint": hint} if hint else {}, n=n, tag={"version": version},
                          key=f"generate:v{version}")  # fmt: skip
    labels = list(generate)
    want = math.ceil(r.opts.gen.examples / max(1, len(spec.labels)))
    r.decide("generate_more", f"version {version}: examples for {', '.join(labels)} only; the other labels "
             "keep theirs", labels=labels, n=want * len(labels), version=version)  # fmt: skip
    return r.generate(0, {"labels": labels, "hints": {k: " " + v for k, v in hints.items()}},
                      n=want * len(labels), tag={"version": version}, key=f"generate:v{version}")  # fmt: skip


def _bounds_text(bounds: dict[str, int]) -> str:
    if "max_words" in bounds:
        return f"output over {bounds['max_words']} words"
    return f"output under {bounds['min_words']} words"


def sample(store: RunStore, run_id: str, version: int, per_label: int = 2, rows: int = 3
           ) -> list[dict[str, Any]]:  # fmt: skip
    """A few examples generated for `version`: `per_label` per label for classification, else `rows`."""
    mine = [x for x in store.examples(run_id, kept=True, source_prefix="generated:")
            if (x["quality"] or {}).get("version") == version]  # fmt: skip
    spec = store.task_version(run_id)
    if spec and spec[1].get("task_type", "classification") != "classification":
        return mine[:rows]
    out: list[dict[str, Any]] = []
    for lab in dict.fromkeys(x["output"] for x in mine):
        out += [x for x in mine if x["output"] == lab][:per_label]
    return out


def _json_pair(row: dict[str, Any]) -> tuple[str, str]:
    """(input, output) of a JSONL row: {input, output}, or a QA row {passage|context, question, answer(s)}."""
    if not isinstance(row, dict):
        raise TypeError("not an object")
    if "input" not in row and "question" in row:
        from p2m.tools.parse import qa_input

        answer = row.get("answer", row.get("answers"))
        if isinstance(answer, dict):  # SQuAD's {"text": [...], "answer_start": [...]}
            answer = answer["text"]
        answer = answer[0] if isinstance(answer, list) else answer
        return qa_input(str(row.get("passage") or row["context"]), str(row["question"])), str(answer).strip()
    return str(row["input"]).strip(), str(row["output"]).strip()


def read_upload(path: str | Path) -> list[tuple[str, str]]:
    """(input, output) pairs from an uploaded file: JSONL {input, output} (or {passage, question, answer} for
    extractive QA), CSV/TSV with two columns, or text with `Input:/Output:` pairs or `text -> label` lines.

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
                pairs.append(_json_pair(json.loads(line)))
            except (json.JSONDecodeError, KeyError, TypeError, IndexError) as e:
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
