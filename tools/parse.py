"""Prompt → TaskSpec.

The embedded 135M teacher is unreliable at reading a task, so the spec is built from deterministic
extraction (demonstrations, the label list in the prose, task-type keywords) and the LLM's
structured answer only fills gaps, and only with words that actually occur in the prompt.
"""

from __future__ import annotations

import re
from typing import Any

from p2m.errors import TaskError
from p2m.tools.prompts import load_prompt
from p2m.tools.types import TASK_TYPES, TaskSpec, default_metric

__all__ = [
    "parse_task",
    "split_demonstrations",
    "find_label_lists",
    "detect_task_type",
    "input_kind_of",
    "check_supported",
    "code_language",
    "qa_input",
    "qa_parts",
    "record_fields",
]

_IN_KEYS = r"input|text|review|sentence|tweet|ticket|message|article|question|q|passage|context|paragraph|query|request|record|data|example|email|comment|headline|document|source|mr"
_OUT_KEYS = r"output|label|answer|a|sentiment|category|topic|class|target|intent|response|code|summary|result|description|sql"
_PAIR = re.compile(
    rf"^[ \t]*(?:[-*]\s*)?(?:{_IN_KEYS})\s*[:=]\s*(?P<inp>.+?)\s*\n[ \t]*(?:{_OUT_KEYS})\s*[:=][ \t]*(?P<out>[^\n]*)",
    re.IGNORECASE | re.MULTILINE | re.DOTALL,
)
_ARROW = re.compile(
    r"^[ \t]*(?:[-*]\s*)?\"?(?P<inp>[^\n]+?)\"?\s*(?:->|=>|→)\s*\"?(?P<out>[^\n\"]+?)\"?\s*$", re.MULTILINE
)
_STOP = set(
    "a an the this that these those it its is are be of to in on for with by as and or not no one any all "
    "each only word words your you please answer output label labels text input which what whether".split()
)
_WORD = r"[A-Za-z][\w'\-]*"
_QUOTED = r"[\"'“‘`]([^\"'”’`\n]{1,40})[\"'”’`]"
_LIST = re.compile(rf"\b({_WORD})((?:\s*,\s*{_WORD})*)\s*,?\s+(?:or|and|/)\s+({_WORD})")
_QLIST = re.compile(rf"{_QUOTED}((?:\s*,\s*{_QUOTED})*)\s*,?\s+(?:or|and)\s+{_QUOTED}")
_TRIGGER = re.compile(
    r"(?:\bas|\binto|\bis|:|\beither|\bbetween|\bof|\blabels?|\bclasses|\bcategories|\bwhether)\s*$", re.I
)
_KIND = re.compile(
    r"\b(?:this|each|the|a|an|every|given|these|customer|user|classify|categori[sz]e|label|tag|sort)\s+((?:[a-z][\w\-]*\s+){0,3}?"
    r"(?:review sentence|reviews?|articles?|sentences?|tickets?|tweets?|messages?|e-?mails?|comments?|posts?|"
    r"headlines?|documents?|queries|query|passages?|records?|requests?|questions?|texts?|utterances?|"
    r"descriptions?|titles?|snippets?|paragraphs?|statements?|claims?|meaning representations?))\b",
    re.I,
)
_TYPE_CUES: list[tuple[str, re.Pattern]] = [
    ("extractive_qa", re.compile(r"\b(passage|context|paragraph)\b.*\bquestions?\b|\bquestions?\b.*\b(passage|context|paragraph)\b", re.I | re.S)),
    ("text_to_code", re.compile(r"\b(python|code|snippet|sql|bash|javascript|function|program|regex)\b", re.I)),
    ("data_to_text", re.compile(r"\b(meaning representation|record|table|attributes?|fields?|structured data|key[- ]value)\b", re.I)),
    ("classification", re.compile(r"\b(classify|categori[sz]e|label|tag|detect|decide whether|is it|sentiment|topic|intent|spam)\b", re.I)),
]  # fmt: skip
_TASK_VERBS = re.compile(
    r"\b(classify|categori[sz]e|label|tag|detect|decide|determine|identify|answer|write|generate|summari[sz]e|"
    r"translate|extract|convert|turn|rewrite|describe|predict|sort|rate|tell|explain|produce|create|map|paraphrase)\b",
    re.I,
)


def split_demonstrations(prompt: str) -> tuple[str, list[tuple[str, str]]]:
    """Split a prompt into its instruction and its (input, output) demonstrations."""
    pairs = [(m.start(), m.end(), m["inp"].strip(), m["out"].strip()) for m in _PAIR.finditer(prompt)]
    if not pairs:
        pairs = [(m.start(), m.end(), m["inp"].strip(), m["out"].strip()) for m in _ARROW.finditer(prompt)]
    demos = [(i, o) for _, _, i, o in pairs if i and o]
    instruction = prompt[: pairs[0][0]] if pairs else prompt
    # Drop a trailing "Examples:" header the demonstrations hung from.
    instruction = re.sub(
        r"(?:\n|^)\s*(?:examples?|for example|e\.g\.)\s*:?\s*$", "", instruction.strip(), flags=re.I
    )
    if pairs:  # prose after the last demonstration belongs to the instruction too
        instruction = (instruction.strip() + "\n" + prompt[pairs[-1][1] :].strip()).strip()
    return instruction.strip(), demos


def find_label_lists(text: str) -> list[list[str]]:
    """Candidate label lists written in prose ("as billing, bug or other"), best first.

    Quoted lists come first, then lists that follow a trigger word ("as", "into", ":", "whether … is").
    """
    found: list[tuple[int, list[str]]] = []
    for m in _QLIST.finditer(text):
        items = [m.group(1)] + re.findall(_QUOTED, m.group(2) or "") + [m.group(m.lastindex)]
        found.append((0, [i.strip() for i in items]))
    for m in _LIST.finditer(text):
        items = [m.group(1)] + re.findall(_WORD, m.group(2) or "") + [m.group(3)]
        if any(i.lower() in _STOP for i in items):
            continue
        rank = 1 if _TRIGGER.search(text[max(0, m.start() - 40) : m.start()]) else 2
        found.append((rank, items))
    out: list[list[str]] = []
    for _, items in sorted(found, key=lambda f: (f[0], -len(f[1]))):
        dedup = list(dict.fromkeys(items))
        if len(dedup) >= 2 and dedup not in out:
            out.append(dedup)
    return out


def detect_task_type(instruction: str, demos: list[tuple[str, str]], labels: list[str]) -> str:
    """The task type from the label set, the demonstrations and keyword cues."""
    lowered = {label.lower() for label in labels}
    outs = [o.lower() for _, o in demos]
    if len(labels) >= 2 and all(o in lowered for o in outs):
        return "classification"
    if demos and all(qa_parts(i) for i, _ in demos):  # the demonstrations show passage + question
        return "extractive_qa"
    code = _TYPE_CUES[1][1].search(instruction)
    if not code and demos and all(len(record_fields(i)) >= 2 for i, _ in demos):  # key[value] records
        return "data_to_text"
    for task_type, cue in _TYPE_CUES:
        if cue.search(instruction):
            if task_type == "classification" and len(labels) < 2:
                continue
            return task_type
    if _CLOSED_QA.search(instruction):  # answering questions: extractive QA, which needs passages
        return "extractive_qa"
    return "text_generation"


_QA_SPLIT = re.compile(
    r"^\s*(?:passage|context|paragraph|text|article)?\s*[:=]?\s*(?P<p>.+?)\s*\n\s*(?:question|q)\s*[:=]\s*(?P<q>.+?)\s*$",
    re.I | re.S,
)
_CLOSED_QA = re.compile(r"\banswer\b.{0,40}\bquestions?\b|\bquestions?\b.{0,40}\banswers?\b", re.I | re.S)
_PASSAGE_WORDS = re.compile(
    r"\b(passages?|context|paragraphs?|texts?|articles?|documents?|snippets?|excerpts?)\b", re.I
)
_RECORD_BRACKET = re.compile(r"([A-Za-z][\w ]{0,30}?)\s*\[([^\]]*)\]")
_RECORD_COLON = re.compile(r"(?:^|[,;|\n])\s*([A-Za-z][\w ]{0,30}?)\s*[:=]\s*([^,;|\n]+)")
# Languages other than Python that a code prompt may name; p2m writes (and checks) Python only.
_OTHER_LANGS = re.compile(
    r"\b(sql|bash|shell script|powershell|javascript|typescript|java|c\+\+|c#|golang|rust|ruby|php|kotlin|swift|"
    r"scala|perl|haskell|matlab|html|css|regex(?:es)?|regular expressions?)(?![\w+#])",
    re.I,
)


def qa_input(passage: str, question: str) -> str:
    """The input string of one extractive-QA example: `"Passage: …\nQuestion: …"`."""
    return f"Passage: {passage.strip()}\nQuestion: {question.strip()}"


def qa_parts(text: str) -> tuple[str, str] | None:
    """(passage, question) of a QA input ("Passage: …\nQuestion: …", the "Passage:" tag optional), or None."""
    m = _QA_SPLIT.match(text or "")
    if not m or len(m["p"].split()) < 3:
        return None
    return m["p"].strip(), m["q"].strip()


def record_fields(text: str) -> list[tuple[str, str]]:
    """The (field, value) pairs of a structured record: `name[Blue Spice], area[riverside]` or `name: X, area: Y`."""
    pairs = [(k.strip(), v.strip()) for k, v in _RECORD_BRACKET.findall(text or "")]
    if len(pairs) < 2:
        pairs = [(k.strip(), v.strip()) for k, v in _RECORD_COLON.findall(text or "")]
    return [(k, v) for k, v in pairs if k and v]


def code_language(text: str) -> str | None:
    """The first programming language other than Python that `text` names, or None."""
    if re.search(r"\bpython\b", text, re.I):
        return None
    m = _OTHER_LANGS.search(text)
    return m.group(1) if m else None


def _parses_as_python(code: str) -> bool:
    import ast

    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def check_supported(spec: TaskSpec, prompt: str = "") -> None:
    """Refuse, with one line that says what to change, a task p2m cannot build a model for.

    Raises:
        TaskError: a QA task without passages to answer from, or a code task in a language other than Python.
    """
    text = prompt or spec.instruction
    if spec.task_type == "extractive_qa":
        if spec.demonstrations and not all(qa_parts(i) for i, _ in spec.demonstrations):
            raise TaskError(
                "this QA prompt's examples have no passage: p2m answers questions from a given passage; write each"
                " example as 'Passage: … / Question: … / Answer: <a span of the passage>'"
            )
        if not spec.demonstrations and not _PASSAGE_WORDS.search(text):
            raise TaskError(
                "this QA prompt gives no passages: p2m builds extractive QA (the answer is a span of a passage);"
                " say 'Answer the question from the passage' and add 'Passage: … / Question: … / Answer: …' examples"
            )
    if spec.task_type == "text_to_code":
        lang = code_language(text)
        if (
            lang is None
            and spec.demonstrations
            and not any(_parses_as_python(o) for _, o in spec.demonstrations)
        ):
            lang = "a language other than Python (the examples' outputs do not parse as Python)"
        if lang:
            raise TaskError(
                f"this code prompt asks for {lang}; p2m writes and checks Python code only: ask for Python"
                " ('Write a one-line Python snippet for the request')"
            )


def input_kind_of(instruction: str) -> str:
    """A short noun phrase naming one input ("movie review sentence"), or "text"."""
    m = _KIND.search(instruction)
    if not m:
        return "text"
    kind = re.sub(r"^(?:this|each|the|a|an|every|given|these|those)\s+", "", m.group(1).lower().strip())
    if kind.endswith("ies"):
        kind = kind[:-3] + "y"
    elif kind.endswith("s") and not kind.endswith(("ss", "us")):
        kind = kind[:-1]
    return kind


def _llm_hints(llm: Any, prompt: str) -> dict[str, Any]:
    """The teacher's reading of the task, schema-constrained; {} when it gives nothing usable."""
    schema = {
        "type": "object",
        "properties": {
            "task_type": {"type": "string", "enum": list(TASK_TYPES)},
            "labels": {"type": "array", "items": {"type": "string", "maxLength": 30}, "maxItems": 12},
        },
        "required": ["task_type", "labels"],
    }
    system = load_prompt("parse_system")
    data = llm.json([("system", system), ("user", prompt[:3000])], schema, max_tokens=120, purpose="parse")
    return data if isinstance(data, dict) else {}


def parse_task(prompt: str, llm: Any | None = None) -> TaskSpec:
    """Turn a plain-language prompt into a validated TaskSpec.

    Args:
        prompt: instruction plus optional demonstrations ("Input: … / Output: …" or "… -> label").
        llm: an LLMClient; its structured reading fills gaps the deterministic reading leaves.

    Raises:
        TaskError: the prompt is empty or no task can be found in it, or the task is one p2m cannot build
            (`check_supported`); the message says what to add or change.
    """
    prompt = (prompt or "").strip()
    if not prompt:
        raise TaskError(
            "the prompt is empty; describe the task, e.g. 'Classify support tickets as billing, bug or other.'"
        )
    instruction, demos = split_demonstrations(prompt)
    lists = find_label_lists(instruction)
    demo_outs = list(dict.fromkeys(o for _, o in demos))
    labels: list[str] = []
    for cand in lists:  # the first prose list that covers every demonstrated output
        if all(o.lower() in {c.lower() for c in cand} for o in demo_outs):
            labels = cand
            break
    if not labels and demos and len(demo_outs) >= 2 and all(len(o.split()) <= 3 for o in demo_outs):
        if len(demo_outs) < len(demos):  # outputs repeat: a label set, not free text
            labels = demo_outs
    hints = _llm_hints(llm, prompt) if llm is not None else {}
    if len(labels) < 2 and hints.get("labels"):
        grounded = [
            x.strip()
            for x in hints["labels"]
            if x.strip() and re.search(rf"\b{re.escape(x.strip())}\b", prompt, re.I)
        ]
        if len(set(map(str.lower, grounded))) >= 2:
            labels = list(dict.fromkeys(grounded))
    task_type = detect_task_type(instruction, demos, labels)
    if (
        task_type == "text_generation"
        and hints.get("task_type") in TASK_TYPES
        and hints["task_type"] != "classification"
    ):
        task_type = hints["task_type"]
    if task_type != "classification":
        labels = []
    if not demos and not labels and (len(instruction.split()) < 3 or not _TASK_VERBS.search(instruction)):
        raise TaskError(
            "could not find a task in the prompt: say what the model should do and, for classification, list"
            " the labels ('Classify support tickets as billing, bug or other'), or add 'Input: … / Output: …' examples"
        )
    if task_type == "extractive_qa":  # demonstrations in the one QA input format
        demos = [(qa_input(*qa_parts(i)), o) if qa_parts(i) else (i, o) for i, o in demos]
    if task_type == "classification":
        # Normalise label spelling to the prose list, matching demonstrations case-insensitively.
        canon = {label.lower(): label for label in labels}
        demos = [(i, canon.get(o.lower(), o)) for i, o in demos]
    spec = TaskSpec(
        instruction=instruction,
        demonstrations=demos,
        task_type=task_type,
        labels=labels,
        metric=default_metric(task_type),
        input_kind=input_kind_of(instruction),
    )
    check_supported(spec, prompt)
    return spec
