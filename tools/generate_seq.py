"""Synthetic data for extractive QA, text-to-code, data-to-text and free text generation.

The embedded teacher is a 135M model, so each type asks it for the part it can do and checks the
rest (tools/seq_checks.py) instead of trusting it:
- extractive QA: the teacher writes a passage; the answers are picked from the passage first (dates,
  numbers, names, so they are verified spans by construction); the teacher writes the question for a
  few of them, which must not contain the answer and must share words with the answer's sentence; the
  others, and those whose teacher question fails, get a question written from the answer's sentence by
  rule (tools/qa_templates.py), under the same checks.
- text to code: the teacher writes a request like the demonstrations' inputs, then the snippet;
  the snippet must parse (ast), stay on one line for one-liner tasks, and run when that is cheap and safe.
- data to text: records are sampled from the fields and values of the demonstrations (the teacher
  proposes more values per field, kept when they resemble the given ones; name fields also get
  invented names, so a student learns to copy names); the teacher sees the demonstrations rewritten
  with the request's values (it copies its examples) and writes the text, which must mention every
  value and no value the record does not hold. A text that misses values or mentions others is kept
  with the record it does describe (`repair_record`), when that record still has its subject field.
- text generation: the teacher writes an input like the demonstrations' inputs, then the output.
Every request has a fixed seed (reproducible, cached); every dropped row keeps its reason;
`curate_seq` (tools/curate_seq.py) removes near-duplicates by embedding and reports a diversity figure.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from p2m.errors import RequestFailed, TaskError
from p2m.tools.curate_seq import curate_seq, dedup_key
from p2m.tools.generate import GenConfig
from p2m.tools.parse import qa_input, record_fields
from p2m.tools.prompts import load_prompt
from p2m.tools.qa_templates import template_question
from p2m.tools.records import (
    adapt_demonstration,
    format_record,
    like_values,
    record_pools,
    sample_record,
    widen_pools,
)
from p2m.tools.seq_checks import (
    answer_candidates,
    check_code,
    check_mentions,
    check_output,
    check_passage,
    check_question,
    clean_code,
    clean_generated,
    first_answer,
    norm,
    pick_code_line,
    prose_only,
    repair_record,
)
from p2m.tools.types import TaskSpec

__all__ = [
    "SEQ_TYPES",
    "STRIDE",
    "QA_STRIDE",
    "generate_seq",
    "curate_seq",
    "dedup_key",
    "salvage",
]

SEQ_TYPES = ("extractive_qa", "text_to_code", "data_to_text", "text_generation")
STRIDE = 4  # request indexes per unit: unit u owns u*STRIDE … u*STRIDE+3 (one row each)
INVENTED_NAMES = 32  # new names per name field (data-to-text): the student must copy names, not recall them
QA_SPANS = 10  # answer spans (rows) per QA passage
QA_STRIDE = QA_SPANS + 1  # a QA unit's indexes: the passage's seed, then one per span; its last one if none
# Spans whose question the teacher is asked first (the rest are templated). 0: the embedded 135M teacher's
# questions passed `check_question` 7 times in 71 (bench qa_passages probe), and those 7 were mostly
# off the point, so each one cost a call for little; a stronger teacher (--llm) may earn a few.
QA_TEACHER_QUESTIONS = 0
# Generic subjects that rotate through requests: diversity without naming the task's domain.
_TOPICS = (
    "a small town", "a scientist", "an invention", "a river", "a football club", "a company", "a festival",
    "a mountain", "an animal", "a museum", "a musician", "a ship", "a school", "a bridge", "a novel", "a disease",
    "a city park", "a king or queen", "a space mission", "a sport", "an island", "a painter", "a railway", "a dish",
)  # fmt: skip
_CODE_TOPICS = (
    "strings", "lists", "dictionaries", "numbers", "sorting", "sets", "dates", "text formatting", "counting",
    "filtering a list", "math", "tuples", "files and paths as strings", "random numbers", "splitting text",
)  # fmt: skip
_HINTS = ("", " Keep it short.", " Mention one specific detail.", "", " Make it a little longer.")


def _system(spec: TaskSpec, inputs_only: bool = False, demos: list[tuple[str, str]] | None = None) -> str:
    demos = (spec.demonstrations if demos is None else demos)[:4]
    if inputs_only:
        examples = "Example inputs:\n" + "\n".join(f"- {i}" for i, _ in demos) if demos else ""
    else:
        examples = "\n\n".join(f"Input: {i}\nOutput: {o}" for i, o in demos)
    return load_prompt("seq_system").format(instruction=spec.instruction, examples=examples).strip()


def _ask(llm: Any, system: str, user: str, key: str, cfg: GenConfig, seed: int, max_tokens: int,
         lo: int = 1, hi: int = 600) -> Any:  # fmt: skip
    """The string the teacher writes for `key`; a reply cut off by `max_tokens` keeps its complete sentences."""
    schema = {
        "type": "object",
        "properties": {key: {"type": "string", "minLength": lo, "maxLength": hi}},
        "required": [key],
    }
    text = llm.complete([("system", system), ("user", user)], schema=schema, temperature=cfg.temperature,
                        seed=seed, max_tokens=max_tokens, purpose="generate")  # fmt: skip
    text = re.sub(r"^```(?:json)?\s*|\s*```$", "", (text or "").strip())  # some endpoints fence JSON
    try:
        data = json.loads(text, strict=False)  # a small model puts raw newlines in strings
    except json.JSONDecodeError:
        return salvage(text, key)
    return data.get(key) if isinstance(data, dict) else None


def salvage(text: str, key: str) -> str | None:
    """From JSON cut off inside the string of `key`: the string up to its last sentence end, else None."""
    m = re.search(rf'"{re.escape(key)}"\s*:\s*"((?:[^"\\]|\\.)*)', text or "")
    if not m:
        return None
    fragment = re.sub(r"\\+$", "", m.group(1))
    try:
        value = json.loads(f'"{fragment}"', strict=False)
    except json.JSONDecodeError:
        return None
    end = max(value.rfind(". "), value.rfind("? "), value.rfind("! "), value.rfind("."))
    return value[: end + 1].strip() if end > 0 else None


def _row(inp: str, out: str, index: int, reason: str | None, quality: dict | None = None) -> dict[str, Any]:
    return {"input": inp, "output": out, "split": "train", "kept": reason is None, "drop_reason": reason,
            "request_index": index, "quality": quality or {}}  # fmt: skip


# one unit per type: a few dependent requests → rows --------------------------------------------------


def _teacher_question(
    llm: Any, system: str, passage: str, span: str, cfg: GenConfig, seed: int
) -> str | None:
    """The teacher's question for `span`, cut after its question mark (what a small model writes next is noise)."""
    user = load_prompt("seq_question_user").format(passage=passage, answer=span)
    q = clean_generated(_ask(llm, system, user, "question", cfg, seed, 60, 8, 200))
    if q and "?" in q:
        return q[: q.index("?") + 1].strip(" {}")
    if q and "\n" not in q and re.match(r"(?i)(who|what|when|where|which|why|how|did|does|is|are|was)\b", q):
        return q.rstrip(" .") + "?"  # a question without its mark
    return q


def _qa_unit(spec: TaskSpec, llm: Any, cfg: GenConfig, u: int, ctx: dict) -> list[dict[str, Any]]:
    """One passage from the teacher, then one row per answer span (up to QA_SPANS): the teacher's question
    for the first QA_TEACHER_QUESTIONS spans when it passes `check_question`, else a question written from
    the answer's sentence (tools/qa_templates.py), marked `quality.question_by = "template"`."""
    seed = cfg.seed + u * QA_STRIDE
    topic = _TOPICS[u % len(_TOPICS)]
    raw = _ask(llm, ctx["system"], load_prompt("seq_passage_user").format(topic=topic), "passage", cfg, seed,
               260, 120, 900)  # fmt: skip
    passage = prose_only(clean_generated(raw))
    reason = check_passage(passage, language=spec.language)
    spans = answer_candidates(passage, QA_SPANS) if reason is None else []
    if reason is None and not spans:
        reason = "no_answer_span"
    if reason is not None:
        return [_row(str(raw or "")[:500], "", u * QA_STRIDE + QA_STRIDE - 1, reason)]
    rows = []
    for k, span in enumerate(spans):
        q, answer, quality = None, span, {"question_by": "teacher"}
        if k < QA_TEACHER_QUESTIONS:
            q = _teacher_question(llm, ctx["system"], passage, span, cfg, seed + k + 1)
            reason = check_question(q, span, passage)
        else:
            reason = "not_asked"
        if reason is not None:
            templated = template_question(passage, span)
            t_reason = check_question(templated[0], templated[1], passage) if templated else "no_template"
            if t_reason is None:
                quality = {"question_by": "template", "teacher_question": q, "teacher_drop": reason}
                q, answer, reason = templated[0], templated[1], None
            elif reason == "not_asked":
                reason = t_reason
        quality["answer_start"] = passage.find(answer)
        rows.append(_row(qa_input(passage, q or ""), answer, u * QA_STRIDE + k, reason, quality))
    return rows


def _line(llm: Any, user: str, cfg: GenConfig, seed: int, max_tokens: int) -> str:
    """The first line of a plain completion: a small model follows "Input: … / Output:" examples better than
    it writes code or prose inside a JSON string."""
    text = llm.complete([("user", user)], temperature=cfg.temperature, seed=seed, max_tokens=max_tokens,
                        purpose="generate")  # fmt: skip
    return first_answer(text)


# Request verbs: the demonstrations' first words plus common ones; the grammar keeps requests plain English.
_VERBS = ("get", "make", "sort", "count", "find", "remove", "check", "convert", "split", "join", "print", "add",
          "reverse", "create", "compute", "replace", "turn", "filter", "merge", "keep", "read", "write", "build")  # fmt: skip


def _code_unit(spec: TaskSpec, llm: Any, cfg: GenConfig, u: int, ctx: dict) -> list[dict[str, Any]]:
    seed = cfg.seed + u * STRIDE
    topic = _CODE_TOPICS[u % len(_CODE_TOPICS)]
    user = load_prompt("seq_request_user").format(topic=topic)
    schema = {"type": "object", "required": ["request"], "properties": {"request": {
        "type": "string", "pattern": f"^({'|'.join(ctx['verbs'])}) [a-z][a-z0-9 ,'_]{{8,80}}$"}}}  # fmt: skip
    data = llm.json([("system", ctx["inputs_system"]), ("user", user)], schema, temperature=cfg.temperature,
                    seed=seed, max_tokens=48, purpose="generate")  # fmt: skip
    request = clean_generated(data.get("request") if isinstance(data, dict) else None)
    if not request or not 3 <= len(request.split()) <= 40:
        return [_row(request or "", "", u * STRIDE, "invalid_request")]
    user = ctx["system"] + "\n\n" + load_prompt("seq_output_user").format(input=request, hint=ctx["hint"])
    raw = llm.complete([("user", user)], temperature=cfg.temperature, seed=seed + 1, max_tokens=96,
                       purpose="generate")  # fmt: skip
    code = pick_code_line(raw) if ctx["one_line"] else clean_code(raw)
    reason, ran = check_code(code, request, one_line=ctx["one_line"])
    return [_row(request, code or clean_code(raw) or "", u * STRIDE, reason, {"ran": ran})]


def _d2t_unit(spec: TaskSpec, llm: Any, cfg: GenConfig, u: int, ctx: dict) -> list[dict[str, Any]]:
    rng = random.Random(cfg.seed * 1_000_003 + u)
    record = sample_record(ctx["fields"], ctx["pools"], ctx["presence"], rng)
    inp = format_record(record, ctx["style"])
    demos = [
        adapt_demonstration(i, o, record, ctx["pools"], rng, ctx["style"]) for i, o in spec.demonstrations[:4]
    ]
    system = _system(spec, demos=demos)  # the examples carry this request's values
    values = [v for _, v in record if norm(v) not in ("yes", "no")]
    hint = (
        f"\nWrite one fluent sentence that includes {', '.join(values[:-1])} and {values[-1]}."
        if len(values) > 1
        else ""
    )
    user = system + "\n\n" + load_prompt("seq_output_user").format(input=inp, hint=hint + ctx["hint"])
    text = clean_generated(_line(llm, user, cfg, cfg.seed + u * STRIDE, 120))
    first = re.split(r"(?<=[.!?])\s+", text or "", maxsplit=1)[0]
    reason = None
    for candidate in dict.fromkeys(
        [first, text or ""]
    ):  # one sentence if it says it all, else the whole text
        reason = check_mentions(candidate, record, ctx["pools"])
        if reason is None:
            return [_row(inp, candidate, u * STRIDE, None)]
        if reason in ("misses_a_value", "mentions_other_value"):
            # a small teacher drops values and copies others from the examples: keep the text with the
            # record it does describe, when that still has the subject field and one more
            fixed = repair_record(candidate, record, ctx["pools"], required=ctx["required"])
            if fixed is not None and check_mentions(candidate, fixed, ctx["pools"]) is None:
                quality = {"repaired": True, "asked": inp}
                return [_row(format_record(fixed, ctx["style"]), candidate, u * STRIDE, None, quality)]
    return [_row(inp, text or "", u * STRIDE, check_mentions(text, record, ctx["pools"]))]


def _textgen_unit(spec: TaskSpec, llm: Any, cfg: GenConfig, u: int, ctx: dict) -> list[dict[str, Any]]:
    seed = cfg.seed + u * STRIDE
    hint = _HINTS[u % len(_HINTS)]
    user = (
        ctx["inputs_system"]
        + "\n\n"
        + load_prompt("seq_input_user").format(input_kind=spec.input_kind, hint=hint)
    )
    inp = clean_generated(_line(llm, user, cfg, seed, cfg.max_tokens))
    if not inp or len(inp.split()) < 2:
        return [_row(inp or "", "", u * STRIDE, "invalid_input")]
    user = ctx["system"] + "\n\n" + load_prompt("seq_output_user").format(input=inp, hint=ctx["hint"])
    out = clean_generated(_line(llm, user, cfg, seed + 1, 128))
    return [_row(inp, out or "", u * STRIDE, check_output(out, inp, ctx["max_words"]))]


_UNITS: dict[str, Callable[..., list[dict[str, Any]]]] = {
    "extractive_qa": _qa_unit,
    "text_to_code": _code_unit,
    "data_to_text": _d2t_unit,
    "text_generation": _textgen_unit,
}


def _d2t_context(spec: TaskSpec, llm: Any, cfg: GenConfig) -> dict[str, Any]:
    records = [record_fields(i) for i, _ in spec.demonstrations]
    records = [r for r in records if len(r) >= 2]
    if not records:
        raise TaskError(
            "a data-to-text task needs examples of its records, e.g. 'Input: name[Blue Spice], area[riverside]"
            " / Output: Blue Spice is by the river.'"
        )
    fields, pools, presence = record_pools(records, least=0.35)
    style = "bracket" if "[" in spec.demonstrations[0][0] else "colon"
    proposed: dict[str, int] = {}
    # One request per field for new values (a weak teacher asked for every field at once answers for few
    # of them); short, new, plain values are kept, never the field's own name.
    open_fields = [f for f in fields if not {norm(v) for v in pools[f]} <= {"yes", "no"}]
    schema = {"type": "object", "required": ["values"], "properties": {"values": {
        "type": "array", "maxItems": 8, "items": {"type": "string", "minLength": 1, "maxLength": 30}}}}  # fmt: skip

    def ask(i: int, f: str) -> Any:
        field = re.sub(r"([a-z])([A-Z])", r"\1 \2", f).lower()  # eatType → eat type
        user = load_prompt("seq_values_user").format(field=field, input_kind=spec.input_kind,
                                                     example=", ".join(pools[f]))  # fmt: skip
        data = llm.json([("system", spec.instruction), ("user", user)], schema, temperature=cfg.temperature,
                        seed=cfg.seed + i, max_tokens=160, purpose="generate_values")  # fmt: skip
        return data.get("values") if isinstance(data, dict) else None

    with ThreadPoolExecutor(max_workers=max(1, getattr(llm, "parallelism", 1))) as ex:
        answers = list(ex.map(ask, range(len(open_fields)), open_fields))
    for f, values in zip(open_fields, answers, strict=True):
        new = [v.strip() for v in values if isinstance(v, str)] if isinstance(values, list) else []
        new = [v for v in new if 0 < len(v.split()) <= 5 and not re.search(r"[\[\]{}:;,_]", v)]
        new = like_values(new, pools[f])
        seen = {norm(v) for v in pools[f]}
        for v in new:
            if norm(v) and norm(v) not in seen and norm(f) not in norm(v) and norm(v) not in norm(f):
                seen.add(norm(v))
                pools[f].append(v)
                proposed[f] = proposed.get(f, 0) + 1
    required = next((f for f in fields if all(any(g == f for g, _ in r) for r in records)), None)
    widen_pools(pools, INVENTED_NAMES, random.Random(cfg.seed))
    return {"fields": fields, "pools": pools, "presence": presence, "style": style,
            "proposed_values": proposed, "required": required}  # fmt: skip


def _context(spec: TaskSpec, llm: Any, cfg: GenConfig, hint: str = "") -> dict[str, Any]:
    # the user's style or length wish, on its own line after the input of every output-writing request
    extra = {"hint": f"\n{hint.strip()}" if hint.strip() else ""}
    if spec.task_type == "data_to_text":
        return {**_d2t_context(spec, llm, cfg), **extra}
    outs = [o for _, o in spec.demonstrations]
    one_line = (all("\n" not in o for o in outs) if outs else True) or "one-line" in spec.instruction.lower()
    max_words = int(max([len(o.split()) for o in outs] or [60]) * 3) + 10
    firsts = [i.split()[0].lower() for i, _ in spec.demonstrations if i.split() and i.split()[0].isalpha()]
    verbs = list(dict.fromkeys(firsts + list(_VERBS)))
    return {"system": _system(spec), "inputs_system": _system(spec, inputs_only=True), "one_line": one_line,
            "max_words": max_words, "verbs": verbs, **extra}  # fmt: skip


def generate_seq(
    spec: TaskSpec,
    llm: Any,
    config: GenConfig,
    *,
    start_index: int = 0,
    have: int = 0,
    on_rows: Callable[[list[dict[str, Any]]], None] | None = None,
    run_id: str = "",
    progress: Any = None,
    hint: str = "",
    known: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Generate checked examples for a non-classification task until `config.examples` or a budget is spent.

    Args:
        spec: a TaskSpec whose task_type is one of SEQ_TYPES.
        llm: an LLMClient.
        config: budgets and sampling (`block` is unused here).
        start_index: first request index (resume: one past the last stored one).
        have: usable examples already stored (resume).
        on_rows: receives each batch of rows (kept or not) to persist them at once.
        run_id: recorded in each row's source.
        progress: a tqdm-like object updated per usable example.
        known: rows already stored for this target (a resumed stage): a new row repeating one is a duplicate,
            as it would have been in an uninterrupted run.
        hint: the user's wish for the outputs ("Keep each output to one short sentence.", "Use a formal
            tone."), appended to every request that writes an output (code, data-to-text, text generation;
            extractive QA answers are spans picked from the passage, so it does not apply there).

    Returns:
        {"requests", "usable", "seconds", "stopped_by", "checks"} (+ "proposed_values" for data-to-text).
    """
    if spec.task_type not in _UNITS:
        raise TaskError(f"no generator for task type {spec.task_type!r}; one of {', '.join(SEQ_TYPES)}")
    start = time.monotonic()
    calls0 = llm.ledger.calls if hasattr(llm, "ledger") else 0
    ctx = _context(spec, llm, config, hint)
    unit_fn = _UNITS[spec.task_type]
    seen = {dedup_key({"input": i, "output": o}, spec.task_type) for i, o in spec.demonstrations}
    seen |= {dedup_key(r, spec.task_type) for r in known or [] if r.get("kept", True)}
    stride = QA_STRIDE if spec.task_type == "extractive_qa" else STRIDE
    unit = -(-start_index // stride)
    usable, stopped_by, units, dry = 0, "target", 0, 0
    checks: Counter[str] = Counter()
    batch: list[dict[str, Any]] = []
    width = max(1, getattr(llm, "parallelism", 1))
    pool = ThreadPoolExecutor(max_workers=width, thread_name_prefix="generate-seq")
    pending: deque[Future] = deque()

    def budget_left() -> bool:
        nonlocal stopped_by
        if config.minutes and time.monotonic() - start > config.minutes * 60:
            stopped_by = "minutes"
        elif config.max_calls and hasattr(llm, "ledger") and llm.ledger.calls - calls0 >= config.max_calls:
            stopped_by = "max_calls"
        elif dry >= max(50, 2 * config.examples):  # the teacher keeps failing the checks: give up
            stopped_by = "no_progress"
        else:
            return True
        return False

    try:
        while True:
            # a unit yields several rows: queue only what the target may still need
            while len(pending) < width and have + usable + len(pending) < config.examples and budget_left():
                pending.append(pool.submit(unit_fn, spec, llm, config, unit, ctx))
                unit += 1
                units += 1
            if not pending:
                break
            before = usable
            try:
                rows = pending.popleft().result()  # in request order: reproducible
            except RequestFailed:  # one request failed after its retries: counted, the others go on
                rows = []
                checks["teacher_failed"] += 1
            for row in rows:
                key = dedup_key(row, spec.task_type)
                if row["kept"] and key in seen:
                    row.update(kept=False, drop_reason="duplicate")
                row["source"] = f"generated:{run_id}"
                checks[row["drop_reason"] or "kept"] += 1
                batch.append(row)
                if row["kept"] and have + usable < config.examples:
                    seen.add(key)
                    usable += 1
                    if progress is not None:
                        progress.update(1)
                elif row["kept"]:
                    row.update(kept=False, drop_reason="over_target")
            dry = 0 if usable > before else dry + 1
            if on_rows and len(batch) >= 8:
                full, batch = batch, []
                on_rows(full)
    finally:  # rows already answered are stored even when the run is interrupted
        pool.shutdown(wait=False, cancel_futures=True)
        if on_rows and batch:
            on_rows(batch)
    calls = (llm.ledger.calls - calls0) if hasattr(llm, "ledger") else units
    out = {"requests": calls, "units": units, "usable": usable, "seconds": time.monotonic() - start,
           "stopped_by": stopped_by, "checks": dict(checks)}  # fmt: skip
    if "proposed_values" in ctx:
        out["proposed_values"] = ctx["proposed_values"]
        out["pools"] = {f: len(v) for f, v in ctx["pools"].items()}
    return out
