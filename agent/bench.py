"""`p2m bench`: the bench contract of ARCHITECTURE.md.

The pipeline sees only the task's `prompt`. Then, on the first `limit` rows of test.jsonl, we score
the deployed student, the teacher zero-shot (the prompt as given, the input appended, temperature 0,
the answer constrained to the label set, no cache so its time is real), and, where train.jsonl
exists, the same student trained on that real data (the ceiling).
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from pathlib import Path
from typing import Any

from p2m.agent.options import RunOptions
from p2m.agent.planner import PlanOptions, run_planner
from p2m.errors import ConfigError, DataError
from p2m.tools.evaluate import classification_report, load_jsonl_pairs, load_jsonl_refs
from p2m.tools.llm import EMBEDDED_MODEL
from p2m.tools.llm_open import open_llm
from p2m.tools.parse import parse_task
from p2m.tools.prompts import load_prompt
from p2m.tools.train import load_student
from p2m.tools.types import TASK_TYPES

__all__ = ["run_bench", "format_result", "load_task", "CEILING_MAX_ROWS"]

CEILING_MAX_ROWS = 2000  # a random sample of train.jsonl keeps the ceiling's fine-tune within minutes


def load_task(task_dir: str | Path) -> dict[str, Any]:
    """task.json of a bench folder, checked."""
    task_dir = Path(task_dir)
    path = task_dir / "task.json"
    if not path.is_file():
        raise ConfigError(f"{task_dir}: not a bench task folder (no task.json)")
    try:
        task = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from e
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from e
    if not isinstance(task, dict):
        raise DataError(
            f'{path}: must be a JSON object {{"name", "task_type", "metric", "prompt", "labels"?}}'
        )
    missing = [k for k in ("name", "task_type", "metric", "prompt") if k not in task]
    if missing:
        raise DataError(
            f"{path}: missing {', '.join(missing)}; a bench task.json needs name, task_type, metric, prompt"
        )
    if task["task_type"] not in TASK_TYPES:
        raise ConfigError(
            f"{task['name']}: unknown task_type {task['task_type']!r}; one of {', '.join(TASK_TYPES)}"
        )
    labels = task.get("labels")
    if task["task_type"] == "classification" and not (
        isinstance(labels, list) and len(set(labels)) >= 2 and all(isinstance(x, str) and x for x in labels)
    ):
        raise DataError(f'{path}: a classification task needs "labels": a list of two or more label names')
    if not (task_dir / "test.jsonl").is_file():
        raise ConfigError(
            f'{task_dir}: no test.jsonl; add the test rows as JSONL {{"input", "output"}} lines'
        )
    return task


def _teacher_zero_shot(
    task: dict[str, Any], rows: list[tuple[str, str]], options: RunOptions, progress: bool
) -> dict:
    from tqdm.auto import tqdm

    labels = task["labels"]
    template = load_prompt("teacher_zero_shot")
    preds = []
    # One server with every core, no cache: the teacher as a user would run it, its time per example real.
    with open_llm(dataclasses.replace(options.llm, concurrency=1)) as llm:
        llm.choose(
            [("user", template.format(prompt=task["prompt"], input=rows[0][0]))], labels, purpose="warm-up"
        )
        start = time.perf_counter()
        for x, _ in tqdm(rows, desc="teacher zero-shot", disable=not progress, leave=False):
            msg = template.format(prompt=task["prompt"], input=x)
            preds.append(llm.choose([("user", msg)], labels, temperature=0.0, purpose="zero_shot") or "")
        seconds = time.perf_counter() - start
        model = llm.model_name
    rep = classification_report([y for _, y in rows], preds, labels)
    return {
        "score": rep.score,
        "ms_per_example": round(1000 * seconds / len(rows), 2),
        "model": model if options.llm.base_url else EMBEDDED_MODEL,
        "prompt_template": template,
        "macro_f1": rep.scores["macro_f1"],
    }


def _ceiling(
    task_dir: Path, task: dict, rows: list[tuple[str, str]], options: RunOptions, progress: bool
) -> dict | None:
    path = task_dir / "train.jsonl"
    if not path.is_file():
        return None
    labels = task["labels"]
    data = load_jsonl_pairs(path, labels)
    random.Random(0).shuffle(data)  # train.jsonl is ordered by source; sample it randomly
    data = data[:CEILING_MAX_ROWS]
    n_val = max(len(labels), len(data) // 7)
    train, val = data[n_val:], data[:n_val]
    # The same students as a run's first round (the task kind's), on real rows; the better on validation.
    from p2m.tools.kinds import TrainSettings, kind_for

    kind = kind_for("classification")
    spec = parse_task(task["prompt"])
    spec.labels = labels
    settings = TrainSettings(
        epochs=options.train.epochs, seed=options.train.seed, extra=options.train.to_dict()
    )
    names = kind.default_students(spec) if options.finetune else kind.default_students(spec)[:1]
    earlier: dict[str, Any] = {}
    best = None
    for name in names:
        student, _ = kind.train(name, train, val, spec, settings, progress=progress, earlier=earlier)
        earlier[name] = student
        vrep = classification_report([y for _, y in val], student.predict([x for x, _ in val]), labels)
        if best is None or vrep.score >= best[1].score:
            best, name_kept = (student, vrep), name
    name = name_kept
    preds = best[0].predict([x for x, _ in rows])
    rep = classification_report([y for _, y in rows], preds, labels)
    return {"score": rep.score, "macro_f1": rep.scores["macro_f1"], "n_train": len(train), "selected": name}


def run_bench(
    task_dir: str | Path,
    out_file: str | Path,
    options: RunOptions,
    *,
    limit: int = 300,
    target: float | None = None,
    ceiling: bool = True,
    teacher: bool = True,
    progress: bool = True,
    plan: Any = None,
) -> dict[str, Any]:
    """Run one bench task through the planner (`plan`, default PlanOptions()) and write its result JSON.

    `teacher=False` skips the teacher's zero-shot baseline (for repeated runs of a task whose baseline
    is already measured); the result then has `teacher: null` and no speed-up.
    """
    task_dir = Path(task_dir)
    task = load_task(task_dir)
    seq = task["task_type"] != "classification"
    if limit < 1:
        raise ConfigError(f"--limit must be at least 1 (test rows to score), not {limit}")
    # every reference of a row for the generative types; the first one (the label) for classification;
    # every row is checked (labels too) before the pipeline runs, not after
    test = task_dir / "test.jsonl"
    rows: list[Any] = (load_jsonl_refs(test) if seq else load_jsonl_pairs(test, task["labels"]))[:limit]
    out_file = Path(out_file)
    try:  # the result must be writable before minutes of work, not after
        if out_file.is_dir():
            raise IsADirectoryError(21, "is a folder")
        out_file.parent.mkdir(parents=True, exist_ok=True)
        existed = out_file.exists()
        with open(out_file, "a", encoding="utf-8"):
            pass
        if not existed:
            out_file.unlink()
    except OSError as e:
        why = (
            "a folder on its path is a file"
            if isinstance(e, FileExistsError | NotADirectoryError)
            else e.strerror
        )
        raise ConfigError(f"cannot write {out_file} ({why or e}); choose another --out") from e
    start = time.perf_counter()
    res = run_planner(task["prompt"], options, plan or PlanOptions(target=target), progress=progress)
    pipeline_seconds = time.perf_counter() - start
    if seq:
        from p2m.agent.bench_seq import student_seq, teacher_zero_shot_seq

        stud = student_seq(task, rows, res.folder / "model", res.report["student"]["base"])
        stud["params"] = _count_params(res.folder / "model")
        zero_shot = teacher_zero_shot_seq(task, rows, options, progress) if teacher else None
        result = _result(
            task, rows, res, stud, zero_shot, None, pipeline_seconds, target, stud["ms_per_example"]
        )
        out_file.write_text(json.dumps(result, indent=2))
        return result
    student = load_student(res.folder / "model")
    student.predict([x for x, _ in rows[:8]])  # warm-up, not timed (the teacher gets one too)
    t0 = time.perf_counter()
    preds = student.predict([x for x, _ in rows])
    student_ms = 1000 * (time.perf_counter() - t0) / len(rows)
    srep = classification_report([y for _, y in rows], preds, task["labels"])
    report = res.report
    params = _count_params(res.folder / "model")
    zero_shot = _teacher_zero_shot(task, rows, options, progress) if teacher else None
    ceil = _ceiling(task_dir, task, rows, options, progress) if ceiling else None
    stud = {
        "score": srep.score,
        "ms_per_example": round(student_ms, 3),
        "model": f"{report['student']['base']} ({report['student']['kind']})",
        "params": params,
        "macro_f1": srep.scores["macro_f1"],
    }
    result = _result(task, rows, res, stud, zero_shot, ceil, pipeline_seconds, target, student_ms)
    out_file.write_text(json.dumps(result, indent=2))
    return result


def _result(task: dict, rows: list, res: Any, stud: dict, zero_shot: dict | None, ceil: dict | None, pipeline_seconds: float,
            target: float | None, student_ms: float) -> dict[str, Any]:  # fmt: skip
    report = res.report
    gen, cur = report["data"]["generation"], report["data"]["curation"]
    est = report.get("estimates") or {}
    teacher_est, real_est = est.get("teacher") or {}, est.get("real")
    stud = {**stud, "validation": {
        "teacher": {"score": teacher_est.get("score"), "rows": teacher_est.get("rows", 0)},
        "real": {k: real_est[k] for k in ("score", "rows", "low", "high")} if real_est else
        {"score": None, "rows": 0, "low": None, "high": None}}}  # fmt: skip
    # how well each estimate predicted the test score (test − estimate; does the real interval hold it?)
    test = stud["score"]
    stud["validation"]["error"] = {
        "teacher": round(test - teacher_est["score"], 4) if teacher_est.get("score") is not None else None,
        "real": round(test - real_est["score"], 4) if real_est else None,
        "real_interval_holds_test": (real_est["low"] <= test <= real_est["high"]) if real_est else None}  # fmt: skip
    return {
        "task": task["name"],
        "metric": task["metric"],
        "n_test": len(rows),
        "student": stud,
        "teacher": zero_shot,
        "ceiling": ceil,
        "pipeline": {
            "seconds": round(pipeline_seconds, 1),
            "examples_generated": gen.get("usable", 0),
            "examples_kept": cur["kept"],
            "examples_retrieved": report["data"].get("retrieval", {}).get("rows", 0),
            "llm_calls": report["cost"]["calls"],
            "llm_tokens": report["cost"]["prompt_tokens"] + report["cost"]["completion_tokens"],
            "llm_failures": report["cost"].get("failures", {}),
            "kept_per_second": gen.get("kept_per_second"),
            "validation_score": report["validation"]["score"],
            "decisions": [
                {"action": d["action"], "by": d["by"], "reason": d["reason"]} for d in report["decisions"]
            ],
            "models_tried": report.get("models_tried", []),
            "planner": report.get("planner"),
        },
        "run": res.run_id,
        "target": target,
        "speedup": round(zero_shot["ms_per_example"] / max(student_ms, 1e-9), 1) if zero_shot else None,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def _count_params(model_dir: Path) -> int:
    from safetensors import safe_open

    total = 0
    for f in model_dir.glob("*.safetensors"):
        with safe_open(str(f), "pt") as st:
            for k in st.keys():  # noqa: SIM118 (safe_open has no __iter__)
                total += _prod(st.get_slice(k).get_shape())
    return total


def _prod(shape: list[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def format_result(r: dict[str, Any]) -> str:
    """A short table of one bench result."""
    ceil = f"{r['ceiling']['score']:.3f}" if r.get("ceiling") else "—"
    p, t = r["pipeline"], r.get("teacher")
    teacher = (
        f"  teacher  {t['score']:.3f}   {t['ms_per_example']:.2f} ms/ex   zero-shot, {t['model']}\n"
        f"  ceiling  {ceil}   (same student on train.jsonl)\n"
        f"  student is {r['speedup']}x faster per example than the teacher\n"
        if t
        else f"  teacher  —   (skipped: --no-teacher)\n  ceiling  {ceil}   (same student on train.jsonl)\n"
    )
    v = r["student"].get("validation") or {}
    real, tw = v.get("real") or {}, v.get("teacher") or {}
    val = (
        f"  validation: real rows {real['score']:.3f} on {real['rows']} (90%: {real['low']:.2f}–{real['high']:.2f}),"
        if real.get("rows")
        else "  validation: no real rows,"
    )
    val += (
        f" teacher-written rows {tw['score']:.3f} on {tw['rows']}\n"
        if tw.get("rows")
        else " no teacher-written rows\n"
    )
    err = v.get("error") or {}
    if err.get("teacher") is not None:
        real_err = err.get("real")
        holds = "yes" if err.get("real_interval_holds_test") else "no"
        val += f"  test − estimate: teacher-written {err['teacher']:+.3f}"
        val += (
            f", real {real_err:+.3f} (its interval holds the test score: {holds})\n"
            if real_err is not None
            else "\n"
        )
    return (
        f"\n{r['task']} ({r['metric']}, {r['n_test']} test rows)\n"
        f"  student  {r['student']['score']:.3f}   {r['student']['ms_per_example']:.2f} ms/ex"
        f"{' (batched)' if r['student'].get('batched') else ''}   {r['student']['model']}\n"
        + val
        + teacher
        + f"  pipeline {p['seconds']:.0f}s, {p['examples_generated']} generated, {p['examples_kept']} kept,"
        f" {p['llm_calls']} LLM calls, {p['llm_tokens']} tokens"
        + (
            f"; failed attempts: {failed}"
            if (failed := ", ".join(f"{n} {k}" for k, n in sorted(p.get("llm_failures", {}).items())))
            else ""
        )
    )
