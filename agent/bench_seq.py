"""`p2m bench` for QA, code, data-to-text and text-generation tasks (see agent/bench.py for the contract).

Scored on every reference of each test row (outputs may be lists). The teacher zero-shot gets the task's
prompt as given, the input appended, temperature 0, and its first line of answer is taken, one request at
a time with no cache; the student predicts in batches (its per-example time is the batched time, and the
result says so).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from p2m.tools.evaluate import seq_report
from p2m.tools.llm import EMBEDDED_MODEL
from p2m.tools.llm_open import open_llm
from p2m.tools.prompts import load_prompt
from p2m.tools.seq_checks import first_answer

__all__ = ["first_answer", "teacher_zero_shot_seq", "student_seq"]

_MAX_TOKENS = {"extractive_qa": 32, "text_to_code": 96, "data_to_text": 96, "text_generation": 128}


def teacher_zero_shot_seq(task: dict[str, Any], rows: list[tuple[str, list[str]]], options: Any,
                          progress: bool) -> dict[str, Any]:  # fmt: skip
    """The teacher LLM on the test rows: the task's prompt, then "Input: … / Output:", greedy, first line."""
    from tqdm.auto import tqdm

    template = load_prompt("teacher_zero_shot")
    max_tokens = _MAX_TOKENS.get(task["task_type"], 96)
    preds = []
    with open_llm(dataclasses.replace(options.llm, concurrency=1)) as llm:
        llm.complete([("user", template.format(prompt=task["prompt"], input=rows[0][0]))], max_tokens=4,
                     purpose="warm-up")  # fmt: skip
        start = time.perf_counter()
        for x, _ in tqdm(rows, desc="teacher zero-shot", disable=not progress, leave=False):
            msg = template.format(prompt=task["prompt"], input=x)
            text = llm.complete([("user", msg)], temperature=0.0, max_tokens=max_tokens, purpose="zero_shot")
            preds.append(first_answer(text))
        seconds = time.perf_counter() - start
        model = llm.model_name
    rep = seq_report(task["metric"], preds, [y for _, y in rows], [x for x, _ in rows])
    return {
        "score": rep.score,
        "scores": rep.scores,
        "ms_per_example": round(1000 * seconds / len(rows), 2),
        "model": model if options.llm.base_url else EMBEDDED_MODEL,
        "prompt_template": template,
        "errors": rep.errors[:10],
    }


def _cut(student: Any) -> str:
    kept = student.meta.get("layers_kept") or []
    return f", cut to {len(kept)} layers" if student.meta.get("config", {}).get("layers") else ""


def student_seq(
    task: dict[str, Any], rows: list[tuple[str, list[str]]], model_dir: Path, base: str
) -> dict[str, Any]:
    """The deployed sequence student on the test rows, timed batched after an untimed warm-up."""
    from p2m.tools.train_seq import load_seq_student

    student = load_seq_student(model_dir)
    student.predict([x for x, _ in rows[:8]])  # warm-up, not timed (the teacher gets one too)
    t0 = time.perf_counter()
    preds = student.predict([x for x, _ in rows])
    ms = 1000 * (time.perf_counter() - t0) / len(rows)
    rep = seq_report(task["metric"], preds, [y for _, y in rows], [x for x, _ in rows])
    return {
        "score": rep.score,
        "scores": rep.scores,
        "ms_per_example": round(ms, 3),
        "batched": True,
        "model": f"{base}{_cut(student)} ({student.kind})",
        "errors": rep.errors[:10],
    }
