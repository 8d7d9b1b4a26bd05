"""`p2m parse` and `p2m bench-parse`: how p2m reads a prompt, and how often it reads a corpus of them right."""

from __future__ import annotations

import collections
import contextlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from p2m.errors import DataError, TaskError
from p2m.tools.types import TASK_TYPES

__all__ = ["register", "score_readings", "load_corpus"]


@contextlib.contextmanager
def _teacher(llm_url: str | None, llm_model: str | None, llm_timeout: float) -> Any:
    """The teacher as `p2m run` opens it (embedded llama.cpp unless --llm), with the response cache."""
    from p2m.memory import ResponseCache, home_dir
    from p2m.tools.llm import LLMConfig
    from p2m.tools.llm_open import open_llm

    click.echo("starting the teacher LLM …", err=True)
    cfg = LLMConfig.from_env(llm_url, llm_model, timeout=llm_timeout, concurrency=1)
    with open_llm(cfg, cache=ResponseCache(home_dir() / "llm_cache.sqlite")) as llm:
        yield llm


def _read_prompt(prompt: str | None, prompt_file: str | None) -> str:
    if prompt and prompt_file:
        raise click.UsageError("give the task as PROMPT or with --prompt-file, not both")
    source = prompt_file or (prompt if prompt == "-" else None)
    if source is None:
        return prompt or ""
    try:
        return sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read the prompt file {source} ({getattr(e, 'strerror', None) or e})") from e


def _show(reading: Any, asked: bool, no_llm: bool) -> None:
    spec = reading.spec
    click.echo(f"task type      {spec.task_type}")
    click.echo(f"labels         {', '.join(spec.labels) if spec.labels else '—'}")
    click.echo(f"input kind     {spec.input_kind}")
    click.echo(f"metric         {spec.metric}")
    click.echo(f"instruction    {spec.instruction.replace(chr(10), ' / ') or '—'}")
    click.echo(f"demonstrations {len(spec.demonstrations)}")
    for inp, out in spec.demonstrations:
        short = " / ".join(inp.split("\n"))
        click.echo(f"  {short[:70] + ('…' if len(short) > 70 else '')}  →  {out[:60]}")
    click.echo(f"why            {reading.why}")
    if not reading.unsure:
        click.echo("read by        the deterministic reading (sure; the teacher was not asked)")
        return
    doubts = "; ".join(reading.unsure)
    if no_llm or not asked:
        click.echo(f"read by        the deterministic reading only (--no-llm), unsure: {doubts}")
        return
    said = json.dumps(reading.teacher, ensure_ascii=False) if reading.teacher else "nothing usable"
    used = ", ".join(reading.teacher_used) or "nothing"
    click.echo(f"read by        the deterministic reading + the teacher (unsure: {doubts}); the teacher said {said};"
               f" taken from it: {used}")  # fmt: skip


@click.command("parse")
@click.argument("prompt", required=False)
@click.option(
    "-f", "--prompt-file", type=click.Path(dir_okay=False), help="Read the prompt from a file ('-' = stdin)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the TaskSpec as one JSON object.")
@click.option("--no-llm", is_flag=True, help="The deterministic reading only; never start the teacher.")
def parse(prompt: str | None, prompt_file: str | None, as_json: bool, no_llm: bool, llm_url: str | None,
          llm_model: str | None, llm_timeout: float) -> None:  # fmt: skip
    """Print how p2m reads a task description: task type, labels, input kind, demonstrations, metric.

    The deterministic reading comes first; the teacher is started and asked only when that reading is unsure
    (and never with --no-llm). PROMPT '-' reads stdin.

    \b
    Example:
      p2m parse "Pick one of: urgent, normal, low for every support message." --no-llm
      p2m parse -f examples/support_tickets.txt --json
    """
    from p2m.tools.parse import read_task, read_task_asking

    text = _read_prompt(prompt, prompt_file)
    with contextlib.ExitStack() as stack:
        started: list[Any] = []

        def teacher() -> Any:  # started only when the reading is unsure, as in `p2m run`
            started.append(stack.enter_context(_teacher(llm_url, llm_model, llm_timeout)))
            return started[-1]

        reading = read_task(text) if no_llm else read_task_asking(text, teacher)
        asked = bool(started)
    if as_json:
        click.echo(json.dumps(reading.spec.to_dict(), ensure_ascii=False))
    else:
        _show(reading, asked, no_llm)


def load_corpus(path: str | Path) -> list[dict[str, Any]]:
    """Rows {"prompt", "task_type", "labels", "note", "refuse"?} of a prompt-reading corpus (JSONL).

    Raises:
        DataError: the file is unreadable or a row is malformed (the message names the line).
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path} ({getattr(e, 'strerror', None) or e})") from e
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            ok = isinstance(row.get("prompt"), str) and isinstance(row.get("labels", []), list)
            ok = ok and (row.get("refuse") or row.get("task_type") in TASK_TYPES)
        except (json.JSONDecodeError, AttributeError):
            ok = False
        if not ok:
            raise DataError(
                f'{path}:{n}: not a corpus row; want {{"prompt": str, "task_type": one of {", ".join(TASK_TYPES)},'
                ' "labels": [str], "note": str} (or "refuse": true)'
            )
        rows.append(row)
    if not rows:
        raise DataError(f"{path} has no rows")
    return rows


def _attempt(prompt: str, llm: Any) -> dict[str, Any]:
    from p2m.tools.parse import read_task

    calls = llm.ledger.calls if llm is not None else 0
    try:
        r = read_task(prompt, llm)
        got = {
            "task_type": r.spec.task_type,
            "labels": r.spec.labels,
            "unsure": r.unsure,
            "teacher": r.teacher,
        }
    except TaskError as e:
        got = {"task_type": None, "labels": [], "refused": str(e)}
    got["asked_teacher"] = llm is not None and llm.ledger.calls > calls
    return got


def _judge(row: dict[str, Any], got: dict[str, Any]) -> dict[str, bool]:
    if row.get("refuse"):
        ok = "refused" in got
        return {"type": ok, "labels": ok, "both": ok}
    type_ok = "refused" not in got and got["task_type"] == row["task_type"]
    labels_ok = "refused" not in got and {x.lower() for x in got["labels"]} == {
        x.lower() for x in row.get("labels", [])
    }
    return {"type": type_ok, "labels": labels_ok, "both": type_ok and labels_ok}


def score_readings(rows: list[dict[str, Any]], llm: Any | None = None) -> dict[str, Any]:
    """Read every corpus prompt deterministically and, with `llm`, fully (the teacher asked where unsure).

    Returns:
        {"n", "deterministic": {type, labels, both, teacher_asked}, "full": same | None, "per_type": {…}, "rows"}.
    """
    readings = ["deterministic"] + (["full"] if llm is not None else [])
    out_rows, totals = [], {k: collections.Counter() for k in readings}
    per_type: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for row in rows:
        kind = "refused" if row.get("refuse") else row["task_type"]
        per_type[kind]["n"] += 1
        rec: dict[str, Any] = {"prompt": row["prompt"], "expected": kind, "labels": row.get("labels", [])}
        for name in readings:
            got = _attempt(row["prompt"], llm if name == "full" else None)
            verdict = _judge(row, got)
            totals[name].update({k: int(v) for k, v in verdict.items()})
            totals[name]["teacher_asked"] += int(got["asked_teacher"])
            per_type[kind][name] += int(verdict["both"])
            rec[name] = {**got, "right": verdict}
        out_rows.append(rec)
    summary = {k: {m: totals[k][m] for m in ("type", "labels", "both", "teacher_asked")} for k in readings}
    return {"n": len(rows), "deterministic": summary["deterministic"], "full": summary.get("full"),
            "per_type": {k: dict(v) for k, v in sorted(per_type.items())}, "rows": out_rows}  # fmt: skip


@click.command("bench-parse")
@click.argument("corpus", type=click.Path(dir_okay=False))
@click.option("--no-llm", is_flag=True, help="Score the deterministic reading only; never start the teacher.")
@click.option(
    "--out", "out_file", type=click.Path(dir_okay=False), help="Write every row's readings here (JSON)."
)
def bench_parse(corpus: str, no_llm: bool, out_file: str | None, llm_url: str | None, llm_model: str | None,
                llm_timeout: float) -> None:  # fmt: skip
    """Score prompt reading on a corpus: task type, label set and both, deterministic and with the teacher.

    CORPUS is JSONL, one {"prompt", "task_type", "labels", "note"} per line ("refuse": true for prompts that
    must be refused); labels compare as sets, case-insensitively.

    \b
    Example:
      p2m bench-parse tests/data/parse_corpus.jsonl --out bench/out/parse.json
    """
    rows = load_corpus(corpus)
    if no_llm:
        res = score_readings(rows)
    else:
        with _teacher(llm_url, llm_model, llm_timeout) as llm:
            res = score_readings(rows, llm)
            res["teacher"] = llm.model_name
    n = res["n"]
    for name in ("deterministic", "full"):
        s = res[name]
        if s is None:
            continue
        label = "deterministic" if name == "deterministic" else f"+ teacher ({s['teacher_asked']} asked)"
        click.echo(f"{label:<24} task type {s['type']}/{n} ({s['type'] / n:.3f})  labels {s['labels']}/{n}"
                   f" ({s['labels'] / n:.3f})  both {s['both']}/{n} ({s['both'] / n:.3f})")  # fmt: skip
    parts = [f"{k} {v['deterministic']}" + (f"/{v['full']}" if "full" in res["rows"][0] else "") + f" of {v['n']}"
             for k, v in res["per_type"].items()]  # fmt: skip
    click.echo(
        "per type (both right" + (", deterministic/full" if res["full"] else "") + "): " + ", ".join(parts)
    )
    if out_file:
        try:
            Path(out_file).parent.mkdir(parents=True, exist_ok=True)
            Path(out_file).write_text(
                json.dumps({"corpus": str(corpus), **res}, indent=1, ensure_ascii=False)
            )
        except OSError as e:
            raise DataError(f"cannot write {out_file} ({e.strerror or e})") from e
        click.echo(f"rows: {out_file}")


def register(cli: click.Group, llm_options: Callable[[Any], Any]) -> None:
    """Add `parse` and `bench-parse` to the CLI, with the teacher options of agent/cli.py."""
    cli.add_command(llm_options(parse))
    cli.add_command(llm_options(bench_parse))
