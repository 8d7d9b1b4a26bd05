"""Prompt → TaskSpec.

The reading is deterministic first: demonstrations (`Input:/Output:`, `Passage:/Question:/Answer:`,
`text -> label`), label lists in any common shape (tools/parse_labels.py) and weighted task-type cues
(tools/parse_cues.py). When that reading is unsure (a weak or no cue, two types close, labels the
demonstrations contradict, a classification cue without labels, QA without passages), the teacher's
structured reading is one more signal: its labels count only when they occur in the prompt, its task type
only where the prompt gives that type some evidence. A refusal is the last resort and says what was read.
"""

from __future__ import annotations

import collections
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from p2m.errors import TaskError
from p2m.tools.parse_cues import (
    PASSAGE_WORDS,
    class_cue,
    code_language,
    decide,
    parses_as_python,
    qa_input,
    qa_parts,
    record_fields,
    type_evidence,
)
from p2m.tools.parse_labels import demo_label_set, describe, find_label_lists, label_lists
from p2m.tools.prompts import load_prompt
from p2m.tools.types import TASK_TYPES, TaskSpec, default_metric

__all__ = [
    "Reading",
    "NoTask",
    "read_task",
    "read_task_asking",
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

_IN_KEYS = (
    r"input|text|review|sentence|tweet|ticket|message|article|question|q|passage|context|paragraph|query|request|"
    r"record|data|example|email|comment|headline|document|source|mr|claim|statement|post|title|description|"
    r"instruction|snippet|texto|entrada|texte|entrée|eingabe|frase|satz|phrase"
)
_OUT_KEYS = (
    r"output|label|answer|a|sentiment|category|topic|class|target|intent|response|code|summary|result|description|"
    r"sql|python|emotion|mood|tone|priority|verdict|tag|reply|translation|salida|etiqueta|sortie|étiquette|"
    r"ausgabe|kategorie|categoría|catégorie|respuesta|réponse|antwort"
)
_PAIR = re.compile(
    rf"^[ \t]*(?:[-*]\s*)?(?:{_IN_KEYS})\s*[:=]\s*(?P<inp>.+?)\s*\n[ \t]*(?:{_OUT_KEYS})\s*[:=][ \t]*(?P<out>[^\n]*)",
    re.IGNORECASE | re.MULTILINE | re.DOTALL,
)
_ARROW = re.compile(
    r"^[ \t]*(?:[-*]\s*)?\"?(?P<inp>[^\n]+?)\"?\s*(?:->|=>|→)\s*\"?(?P<out>[^\n\"]+?)\"?\s*$", re.MULTILINE
)
_KIND = re.compile(
    r"\b(?:this|each|the|a|an|every|given|these|customer|user|classify|categori[sz]e|label|tag|sort)\s+((?:[a-z][\w\-]*\s+){0,3}?"
    r"(?:review sentence|reviews?|articles?|sentences?|tickets?|tweets?|messages?|e-?mails?|comments?|posts?|"
    r"headlines?|documents?|queries|query|passages?|records?|requests?|questions?|texts?|utterances?|"
    r"descriptions?|titles?|snippets?|paragraphs?|statements?|claims?|meaning representations?))\b",
    re.I,
)
_TASK_VERBS = re.compile(
    r"\b(classify|categori[sz]e|label|tag|detect|decide|determine|identify|answer|write|generate|summari[sz]e|"
    r"translate|extract|convert|turn|rewrite|describe|predict|sort|rate|tell|explain|produce|create|map|paraphrase|"
    r"pick|choose|select|flag|mark|assign|route|continue|simplify|draft|compose|implement|complete|correct|fix|"
    r"shorten|give|find|highlight|copy|return|output|reply|verbali[sz]e|make|clasifica|classez|ordne|d[ée]cide[rz]?|"
    r"determina|indique[rz]?|indica|entscheide\w*|[ée]tiquet\w*|etiquet\w*|traduce|traduis|übersetze|r[ée]sum\w*)\b",
    re.I,
)


_KEYED = re.compile(r"^[ \t]*([A-Za-z][\w ]{0,20}?)[ \t]*:[ \t]*(\S.*?)[ \t]*$")


def _keyed_pairs(prompt: str) -> list[tuple[int, int, str, str]]:
    """Demonstrations under any two keys that alternate at least twice ("sentence: …" / "language: …")."""
    lines = prompt.split("\n")
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)
    found = []
    for i in range(len(lines) - 1):
        a, b = _KEYED.match(lines[i]), _KEYED.match(lines[i + 1])
        if a and b and a[1].lower() != b[1].lower():
            found.append((i, (a[1].lower(), b[1].lower()), a[2], b[2]))
    keys = collections.Counter(k for _, k, _, _ in found).most_common(1)
    if not keys or keys[0][1] < 2:
        return []
    return [(starts[i], starts[i + 1] + len(lines[i + 1]), x, y) for i, k, x, y in found if k == keys[0][0]]


def _json_pairs(prompt: str) -> list[tuple[int, int, str, str]]:
    """Demonstrations as JSON lines: {"text": …, "label": …} (the output is an output-like key, else the last)."""
    found = []
    for m in re.finditer(r"^[ \t]*(\{.*\})[ \t]*$", prompt, re.M):
        try:
            row = json.loads(m.group(1))
        except json.JSONDecodeError:
            continue
        keys = (
            [k for k, v in row.items() if isinstance(v, str | int | float)] if isinstance(row, dict) else []
        )
        if len(keys) < 2:
            continue
        out = next((k for k in keys if re.fullmatch(_OUT_KEYS, k, re.I)), keys[-1])
        inp = next(
            (k for k in keys if k != out and re.fullmatch(_IN_KEYS, k, re.I)),
            next(k for k in keys if k != out),
        )
        found.append((m.start(), m.end(), str(row[inp]), str(row[out])))
    return found


def split_demonstrations(prompt: str) -> tuple[str, list[tuple[str, str]]]:
    """Split a prompt into its instruction and its (input, output) demonstrations."""
    prompt = prompt.replace("\r\n", "\n").replace("\r", "\n")
    pairs = [(m.start(), m.end(), m["inp"].strip(), m["out"].strip()) for m in _PAIR.finditer(prompt)]
    if not pairs:
        pairs = [(m.start(), m.end(), m["inp"].strip(), m["out"].strip()) for m in _ARROW.finditer(prompt)]
    if not pairs:
        pairs = _json_pairs(prompt) or _keyed_pairs(prompt)
    demos = [(i, o) for _, _, i, o in pairs if i and o]
    instruction = prompt[: pairs[0][0]] if pairs else prompt
    # Drop a trailing "Examples:" header the demonstrations hung from.
    instruction = re.sub(
        r"(?:\n|^)\s*(?:examples?|for example|e\.g\.)\s*:?\s*$", "", instruction.strip(), flags=re.I
    )
    if pairs:  # prose after the last demonstration belongs to the instruction too
        instruction = (instruction.strip() + "\n" + prompt[pairs[-1][1] :].strip()).strip()
    instruction = "\n".join(" ".join(line.split()) for line in instruction.split("\n"))
    return instruction.strip(), demos


@dataclass
class _Labels:
    labels: list[str] = field(default_factory=list)
    weight: int = 0  # how strongly they point to classification (see parse_cues)
    why: str = ""
    unsure: list[str] = field(default_factory=list)


def _find_labels(instruction: str, demos: list[tuple[str, str]]) -> _Labels:
    """The label set: a prose list that covers the demonstrations, the demonstrations' own repeating
    outputs, or the best list in the prose (an explicit one, or any list when a classification cue asks)."""
    lists = label_lists(instruction)
    # labels glossed in parentheses, "billing (payments, refunds or invoices), bug (…) or other": the list is
    # read without the glosses, and a list inside a gloss is then not a label list
    glossed = re.sub(r"\s*\([^()]*\)", "", instruction)
    if glossed != instruction:
        inner = " ".join(re.findall(r"\(([^()]*)\)", instruction)).lower()
        outer = [c for c in label_lists(glossed) if c.items not in {d.items for d in lists}]
        if outer:  # "stance toward the policy (favor, against, none)": there the parentheses hold the labels
            lists = outer + [c for c in lists if not all(i.lower() in inner and i.lower() not in glossed.lower()
                                                         for i in c.items)]  # fmt: skip
    outs = [o for _, o in demos]
    distinct = {o.lower() for o in outs}
    cue = class_cue(instruction)
    for cand in lists:
        if demos and distinct <= {c.lower() for c in cand.items}:
            return _Labels(list(cand.items), 4, f"{describe(cand)}, covering the demonstrations' outputs")
    from_demos = demo_label_set(outs, cued=bool(cue))
    best = next((c for c in lists if c.explicit), None) or (lists[0] if lists and cue else None)
    if from_demos and best and len(from_demos) < len(outs):  # both: the list plus what the demos add
        extra = [o for o in from_demos if o.lower() not in {c.lower() for c in best.items}]
        note = f"the demonstrations use labels not in the {describe(best)}: {', '.join(extra)}"
        return _Labels(list(best.items) + extra, 3, "the listed labels and the demonstrations'", [note])
    if from_demos and len(from_demos) < len(outs):
        return _Labels(from_demos, 4, "the demonstrations' outputs repeat within a small set")
    if best is not None:
        unsure = []
        if demos and not distinct <= {c.lower() for c in best.items}:
            unsure.append(f"the demonstrations' outputs are not all in the {describe(best)}")
        weight = 3 if best.explicit else 2
        return _Labels(list(best.items), weight, describe(best), unsure)
    if from_demos:
        return _Labels(
            from_demos, 2, "the short demonstrated outputs", ["labels only from distinct demonstrations"]
        )
    return _Labels()


def detect_task_type(instruction: str, demos: list[tuple[str, str]], labels: list[str]) -> str:
    """The task type from the instruction, the demonstrations and a given label set."""
    ev = type_evidence(instruction, demos, labels, 3 if len(labels) >= 2 else 0, "the given labels")
    return decide(ev, len(labels) >= 2)[0]


def _doubts(task_type: str, demos: list[tuple[str, str]], prompt: str) -> list[str]:
    """What makes a QA or code reading unsure: cues the demonstrations do not back, or no passages."""
    if task_type == "extractive_qa":
        if demos and not all(qa_parts(i) for i, _ in demos):
            return ["read as extractive QA but the demonstrations show no passage"]
        if not demos and not PASSAGE_WORDS.search(prompt):
            return ["read as extractive QA but the prompt names no passage to answer from"]
    if task_type == "text_to_code" and demos and not all(parses_as_python(o) for _, o in demos):
        return ["read as code but the demonstrations' outputs are not Python"]
    return []


def check_supported(spec: TaskSpec, prompt: str = "", why: str = "") -> None:
    """Refuse, with one line that says what was read and what to change, a task p2m cannot build.

    Raises:
        TaskError: a QA task without passages to answer from, or a code task in a language other than Python.
    """
    text = prompt or spec.instruction
    read = f" ({why})" if why else ""
    if spec.task_type == "extractive_qa":
        if spec.demonstrations and not all(qa_parts(i) for i, _ in spec.demonstrations):
            raise TaskError(
                f"read as extractive QA{read} but its examples have no passage: p2m answers questions from a given"
                " passage; write each example as 'Passage: … / Question: … / Answer: <a span of the passage>'"
            )
        if not spec.demonstrations and not PASSAGE_WORDS.search(text):
            raise TaskError(
                f"read as extractive QA{read} but the prompt has no passages: p2m builds extractive QA (the answer"
                " is a span of a passage); say 'Answer the question from the passage' and add"
                " 'Passage: … / Question: … / Answer: …' examples"
            )
    if spec.task_type == "text_to_code":
        lang = code_language(text)
        if (
            lang is None
            and spec.demonstrations
            and not any(parses_as_python(o) for _, o in spec.demonstrations)
        ):
            lang = "a language other than Python (the examples' outputs do not parse as Python)"
        if lang:
            raise TaskError(
                f"read as text-to-code{read}, in {lang}; p2m writes and checks Python code only: ask for Python"
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


def _grounded(words: Any, prompt: str) -> list[str]:
    """The teacher's labels that occur in the prompt, spelled as the prompt spells them."""
    out: dict[str, str] = {}
    for w in words if isinstance(words, list) else []:
        w = w.strip() if isinstance(w, str) else ""
        m = re.search(rf"(?<!\w){re.escape(w)}(?!\w)", prompt, re.I) if w else None
        if m:
            out.setdefault(m.group(0).lower(), m.group(0))
    return list(out.values())


@dataclass
class Reading:
    """How p2m read a prompt.

    Attributes:
        spec: the TaskSpec.
        why: the evidence for its task type.
        unsure: why the deterministic reading was unsure (empty: it was sure; the teacher is not asked).
        teacher: the teacher's structured reply when it was asked ({} when unusable), else None.
        teacher_used: what the teacher's reply changed ("labels", "task type"), if anything.
    """

    spec: TaskSpec
    why: str
    unsure: list[str] = field(default_factory=list)
    teacher: dict[str, Any] | None = None
    teacher_used: list[str] = field(default_factory=list)


def read_task(prompt: str, llm: Any | None = None, check: bool = True) -> Reading:
    """Read a prompt into a TaskSpec, saying why and how sure; the teacher (`llm`) is asked only when unsure.

    Raises:
        TaskError: the prompt is empty or no task can be found in it, or the task is one p2m cannot build
            (`check_supported`); the message says what was read and what to add or change.
    """
    prompt = (prompt or "").replace("\r\n", "\n").replace("\r", "\n").strip()
    if not prompt:
        raise NoTask(
            "the prompt is empty; describe the task, e.g. 'Classify support tickets as billing, bug or other.'"
        )
    instruction, demos = split_demonstrations(prompt)
    found = _find_labels(instruction, demos)
    labels = found.labels
    ev = type_evidence(instruction, demos, labels, found.weight, found.why)
    no_cue = max(ev.scores.values()) == 0
    task_type, unsure = decide(ev, len(labels) >= 2)
    unsure += (found.unsure if task_type == "classification" else []) + _doubts(task_type, demos, prompt)
    hints: dict[str, Any] | None = None
    used: list[str] = []
    if llm is not None and unsure:
        hints = _llm_hints(llm, prompt)
        grounded = _grounded(hints.get("labels"), prompt)
        if len(grounded) >= 2 and (len(labels) < 2 or found.unsure) and grounded != labels:
            labels, used = grounded, ["labels"]
            ev = type_evidence(instruction, demos, labels, 2, "the teacher's labels, found in the prompt")
        hinted, top = hints.get("task_type"), max(ev.scores.values())
        if hinted in TASK_TYPES and (hinted != "classification" or len(labels) >= 2):
            # one more weak cue, and only for a type the prompt supports (any type when nothing does): the
            # embedded 135M teacher's type is little better than a guess (bench/RESULTS.md, issue 14)
            if top == 0 or ev.scores[hinted] >= 1:
                ev.add(hinted, 1, f"the teacher read it as {hinted}")
        new_type = decide(ev, len(labels) >= 2)[0]
        used += ["task type"] if new_type != task_type else []
        task_type = new_type
    if task_type != "classification":
        labels = []
    if not demos and not labels and no_cue:  # the teacher's word alone does not make a task
        if len(instruction.split()) < 3 or not _TASK_VERBS.search(instruction):
            raise NoTask(
                "could not find a task in the prompt (no task verb, label list or examples): say what the model"
                " should do and, for classification, list the labels ('Classify support tickets as billing, bug"
                " or other'), or add 'Input: … / Output: …' examples"
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
    why = "; ".join(ev.reasons[task_type]) or "no cue for any task type: text generation is the fallback"
    if check:
        check_supported(spec, prompt, why)
    return Reading(spec, why, unsure, hints, used)


class NoTask(TaskError):
    """The prompt is empty or names no task: no label list, task verb or examples."""


def read_task_asking(prompt: str, teacher: Callable[[], Any]) -> Reading:
    """The deterministic reading, and the teacher's (`teacher()` gives the LLM, started only then) when that
    reading is unsure or finds no task: a refusal is the last resort (the teacher's labels, when the prompt
    holds them, can make a task of it).

    Raises:
        NoTask: the prompt is empty or under three words (the teacher is not started), or names no task.
        TaskError: the task cannot be built even with the teacher's reading (see `read_task`).
    """
    try:
        reading = read_task(prompt, check=False)
    except NoTask:
        if len((prompt or "").split()) < 3:  # empty, or too short to hold a task the teacher could ground
            raise
        reading = None
    if reading is None or reading.unsure:
        reading = read_task(prompt, teacher(), check=False)
    check_supported(reading.spec, prompt, reading.why)
    return reading


def parse_task(prompt: str, llm: Any | None = None) -> TaskSpec:
    """Turn a plain-language prompt into a validated TaskSpec (`read_task` without the explanation).

    Args:
        prompt: instruction plus optional demonstrations ("Input: … / Output: …" or "… -> label").
        llm: an LLMClient; its structured reading is one more signal where the deterministic one is unsure.

    Raises:
        TaskError: see `read_task`.
    """
    return read_task(prompt, llm).spec
