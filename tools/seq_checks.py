"""The checks that make generated non-classification data trustworthy; pure functions, one per type.

Each check returns None for a row it keeps, else the reason it drops it (stored with the row):
QA answers must be verbatim spans of their passage and questions must not give the answer away;
code must parse (ast), stay on one line where the task asks for one-liners, pass the sandbox's policy
and run cleanly in it (tools/sandbox.py) when it is closed; data-to-text must mention every value of its record and no other record's.
"""

from __future__ import annotations

import ast
import re

from p2m.tools.qa_templates import object_spans
from p2m.tools.sandbox import SAFE_BUILTINS, SAFE_MODULES, policy_refusal, run_untrusted

__all__ = [
    "norm",
    "clean_generated",
    "first_answer",
    "answer_candidates",
    "check_question",
    "check_passage",
    "prose_only",
    "find_span",
    "clean_code",
    "pick_code_line",
    "check_code",
    "run_snippet",
    "mentions",
    "check_mentions",
    "repair_record",
    "check_output",
]

_STOP = set(
    "a an the of to in on at for with by as and or is are was were be been it its this that these those from "
    "what which who whom whose when where why how did does do many much there their they he she his her".split()
)
_META = re.compile(
    r"\b(input|output|passage|question|answer|snippet|record)\s*:|\bas an ai\b|\bhere is\b", re.I
)


def norm(text: str) -> str:
    """Lower case, alphanumerics only, single spaces: the form dedup and mention checks compare."""
    return re.sub(r"[^a-z0-9£$€]+", " ", (text or "").lower()).strip()


def _content_words(text: str) -> set[str]:
    return {w for w in norm(text).split() if w not in _STOP and len(w) > 2}


def clean_generated(text: object) -> str | None:
    """A generated string with fences, quotes and runs of spaces removed; None when it is not a string."""
    if not isinstance(text, str):
        return None
    text = re.sub(r"^```\w*|```$", "", text.strip()).strip()
    return re.sub(r"[ \t]+", " ", text).strip().strip('"').strip()


def first_answer(text: str) -> str:
    """The answer in a raw completion: its first non-empty line, without a code fence or an "Output:" tag."""
    lines = [line.strip() for line in (text or "").strip().splitlines()]
    lines = [line for line in lines if line and not line.startswith("```")]
    if not lines:
        return ""
    return re.sub(r"^(?:output|answer|code|text|input|request)\s*:\s*", "", lines[0], flags=re.I).strip()


# extractive QA -------------------------------------------------------------------------------------

_MONTHS = r"(?:January|February|March|April|May|June|July|August|September|October|November|December)"
_SPAN_PATTERNS = (
    rf"\b{_MONTHS}(?:\s+\d{{1,2}})?(?:,?\s+\d{{4}})?\b",
    r"\b\d[\d,.]*(?:\s+(?:%|percent|km|kilometres|kilometers|metres|meters|miles|years|people|tons|kg|days|hours|"
    r"minutes|million|billion|species|students|members|books|rooms|seats|euros|dollars|pounds))?\b",
    r"\b[A-Z][a-z]+(?:\s+(?:of|de|the|and|von|van)\s+[A-Z][a-z]+|\s+[A-Z][a-z]+)*\b",
    # the agent of a passive verb ("founded by a local farmer"): a person or group asked with "Who"
    r"(?<=\bby )(?:the|a|an)\s+[a-z]+(?:\s+(?!(?:in|on|at|of|for|with|and|or|to|from|after|before|during|"
    r"who|which|that|was|were|is|are)\b)[a-z]+)?\b",
)


_ENGLISH = set(
    "the of and in to is was a an it its for on with by as at from that this are were has had be".split()
)


_MARKUP = re.compile(r"[{}|<>]|://|\bwww\.")


def prose_only(passage: str | None) -> str | None:
    """`passage` without its sentences that hold markup, table bars or links (a small teacher mixes them in)."""
    if not passage:
        return passage
    sentences = re.split(r"(?<=[.!?])\s+", passage.strip())
    return " ".join(s for s in sentences if not _MARKUP.search(s)).strip()


def check_passage(passage: str | None, min_words: int = 25, language: str = "en") -> str | None:
    """None for a usable passage: two or more sentences, `min_words` words or more, not about the task,
    no markup, table bars or links, and for English tasks English (a small teacher drifts into others)."""
    if not passage:
        return "invalid_json"
    if len(passage.split()) < min_words or len(re.findall(r"[.!?](?:\s|$)", passage)) < 2:
        return "too_short"
    if _META.search(passage):
        return "talks_about_task"
    if _MARKUP.search(passage):
        return "not_prose"  # markup, tables or links, not a passage a question is asked about
    words = norm(passage).split()
    if language == "en" and sum(w in _ENGLISH for w in words) < 0.15 * len(words):
        return "not_english"  # English prose has about a third of these words
    return None


def answer_candidates(passage: str, k: int = 3) -> list[str]:
    """Up to `k` short answer spans of `passage` (dates, numbers, names, the agent after "by", the noun
    phrase after a main verb), spread over its sentences.

    A span that starts a sentence is skipped when it is a single word (usually not a name but "The"), and so
    is a single capitalised word the passage also writes in lower case (a common noun, not a name).
    """
    found: list[tuple[int, str]] = []
    for pattern in _SPAN_PATTERNS:
        for m in re.finditer(pattern, passage):
            span = m.group(0).strip(" ,.")
            start = m.start()
            at_sentence_start = start == 0 or re.search(r"[.!?]\s+$", passage[max(0, start - 3) : start])
            if not span or len(span.split()) > 6 or (at_sentence_start and " " not in span):
                continue
            if (
                " " not in span
                and span[0].isupper()
                and re.search(rf"\b{re.escape(span.lower())}\b", passage)
            ):
                continue  # a common word written with a capital ("the Mayor" beside "the mayor")
            if norm(span) in _STOP or any(span in s or s in span for _, s in found):
                continue
            found.append((start, span))
    for start, span in object_spans(passage):
        if norm(span) not in _STOP and not any(span in s or s in span for _, s in found):
            found.append((start, span))
    found.sort()
    if len(found) <= k:
        return [s for _, s in found]
    step = len(found) / k  # spread the picks over the passage
    return [found[int(i * step)][1] for i in range(k)]


def find_span(passage: str, answer: str) -> int:
    """Where `answer` occurs verbatim in `passage` (-1 when it does not)."""
    return passage.find(answer) if answer else -1


def check_question(question: str | None, answer: str, passage: str) -> str | None:
    """None for a usable question: a question (3–30 words), not containing its answer, tied to the answer's sentence."""
    if not question:
        return "invalid_json"
    if find_span(passage, answer) < 0:
        return "answer_not_in_passage"
    words = question.split()
    if not 3 <= len(words) <= 30 or not question.rstrip().endswith("?"):
        return "not_a_question"
    if norm(answer) in norm(question):
        return "question_gives_answer"
    if _META.search(question):
        return "talks_about_task"
    start = passage.find(answer)
    sentences = list(re.finditer(r"[^.!?]+[.!?]?", passage))
    sentence = next((m.group(0) for m in sentences if m.start() <= start < m.end()), passage)
    if not _content_words(question) & _content_words(sentence):
        return "question_not_grounded"
    return None


# text to code --------------------------------------------------------------------------------------


def clean_code(code: object) -> str | None:
    """A generated snippet without fences, an "Output:" prefix or trailing spaces; None when not a string."""
    code = clean_generated(code)
    if code is None:
        return None
    code = re.sub(r"^(?:output|code|python)\s*:\s*", "", code, flags=re.I)
    return "\n".join(line.rstrip() for line in code.strip().splitlines()).strip()


def _does_something(tree: ast.Module) -> bool:
    return bool(tree.body) and not all(
        isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant | ast.Name) for s in tree.body
    )


def _about(code: str, request: str) -> bool:
    """Whether a name or word of the code shares its first three letters with a content word of the request
    ("len" ~ "length", "sorted" ~ "sort", "words" ~ "words")."""
    code_words = {w.lower() for w in re.findall(r"[A-Za-z_]\w*", code)}
    request_words = {w for w in norm(request).split() if w not in _STOP}
    short = {w for w in request_words if len(w) < 3}  # variable names like xs, s, d
    if code_words & short:
        return True
    return any(
        len(c) >= 3 and len(w) >= 3 and (c.startswith(w[:3]) or w.startswith(c[:3]))
        for c in code_words
        for w in request_words
    )


def pick_code_line(text: str | None) -> str | None:
    """The first line of a completion that is a whole Python statement doing something; a `return X`
    line gives X. A small teacher often wraps a usable one-liner in a function, fences or comments."""
    for line in (text or "").splitlines():
        line = re.sub(r"^(?:output|code|python)\s*:\s*", "", line.strip().strip("`").strip(), flags=re.I)
        line = re.sub(r"\s+#[^'\"]*$", "", line).strip()  # a trailing comment (not one inside a string)
        if not line or line.startswith(("def ", "class ", "#", "@", "import ", "from ", "if __name__")):
            continue
        line = line.removeprefix("return ").strip()
        try:
            tree = ast.parse(line)
        except (SyntaxError, ValueError):
            continue
        if _does_something(tree):
            return line
    return None


def _free_names(tree: ast.AST) -> set[str]:
    stored, loaded = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (stored if isinstance(node.ctx, ast.Store | ast.Del) else loaded).add(node.id)
        elif isinstance(node, ast.alias):
            stored.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.arg):
            stored.add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.Lambda | ast.ClassDef) and hasattr(node, "name"):
            stored.add(node.name)
    return loaded - stored


def _runnable(tree: ast.AST) -> bool:
    """Whether the sandbox can run the snippet: it reads no name it does not define but the sandbox's
    builtins and imports only the sandbox's modules. Others (`open`, `os`, a free `xs`) are kept unrun."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if node.__dict__.get("level") or any(n not in SAFE_MODULES for n in names):
                return False
    return _free_names(tree) <= SAFE_BUILTINS


def run_snippet(code: str, timeout: float = 3.0) -> str | None:
    """Run `code` in the sandbox (tools/sandbox.py); None if it ran cleanly, else the reason's first word
    ("refused", "timeout", "memory_limit", "runtime_error", "crashed"), short enough to group rows by."""
    reason = run_untrusted(code, timeout)
    return None if reason is None else reason.split(":")[0]


def check_code(
    code: str | None, request: str = "", one_line: bool = True, run: bool = True
) -> tuple[str | None, bool]:
    """(None, ran) for a usable snippet, else (reason, False).

    The snippet must parse, be one line when `one_line`, do something (not a bare name or constant), not
    repeat the request and share a word with it (see `_about`). When `run`, it must pass the sandbox's
    compile policy ("refused": underscore names and attributes, exec/eval — run or not) and is run in the
    sandbox (see `run_snippet`) when `_runnable`.
    """
    if not code:
        return "invalid_json", False
    if one_line and len(code.splitlines()) > 1:
        return "not_one_line", False
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return "does_not_parse", False
    if not _does_something(tree):
        return "does_nothing", False
    if request and norm(code) == norm(request):
        return "repeats_request", False
    if request and not _about(code, request):
        return "code_not_about_request", False
    if run and policy_refusal(code):
        return "refused", False
    if run and _runnable(tree):
        reason = run_snippet(code)
        return reason, reason is None
    return None, False


# data to text --------------------------------------------------------------------------------------

_BOOL = {"yes", "no", "true", "false", "y", "n"}


def _field_words(field: str) -> list[str]:
    words = re.sub(r"([a-z])([A-Z])", r"\1 \2", field).replace("_", " ").lower().split()
    return [w for w in words if w not in _STOP]


def mentions(text: str, field: str, value: str) -> bool:
    """Whether `text` mentions `value` (a yes/no value: a word of the field's name, "familyFriendly" → "friendly")."""
    t, v = norm(text), norm(value)
    if v in _BOOL:
        return any(re.search(rf"\b{re.escape(w)}", t) for w in _field_words(field))
    return bool(v) and re.search(rf"(?:^|\s){re.escape(v)}", t) is not None


def check_mentions(
    text: str | None, record: list[tuple[str, str]], pools: dict[str, list[str]]
) -> str | None:
    """None when `text` mentions every value of `record` and no other value of the same fields' pools."""
    if not text:
        return "invalid_json"
    if len(text.split()) < 3:
        return "too_short"
    if _META.search(text) or re.search(r"\w+\[[^\]]*\]", text):
        return "talks_about_task"
    value_words = set(norm(" ".join(v for _, v in record)).split())
    if text.count(";") >= 2 or len([w for w in norm(text).split() if w not in value_words]) < 2:
        return "not_a_sentence"  # the values listed back, not a text about them
    if not all(mentions(text, f, v) for f, v in record):
        return "misses_a_value"
    own = {norm(v) for _, v in record}
    for field, values in pools.items():
        for other in values:
            o = norm(other)
            if (
                len(o) >= 4
                and o not in _BOOL
                and not any(o in x for x in own)
                and mentions(text, field, other)
            ):
                return "mentions_other_value"
    return None


_NEGATION = re.compile(r"\b(?:not|no|non|never|without)\b|n['’]t\b", re.I)


def _bool_agrees(text: str, value: str) -> bool:
    """A yes/no value agrees with the text's polarity: "no" needs a negation, "yes" none."""
    negated = _NEGATION.search(text) is not None
    return negated if norm(value) in ("no", "false", "n") else not negated


def repair_record(
    text: str, record: list[tuple[str, str]], pools: dict[str, list[str]], required: str | None = None
) -> list[tuple[str, str]] | None:
    """The record the text actually describes: per field (in the pools' order, the demonstrations'),
    the record's value when the text mentions it, else the longest pool value it mentions; yes/no fields
    only from the record and only when the text's polarity agrees. None when `required` (the subject
    field, e.g. the name) is missing or fewer than two fields remain.

    The pair (repaired record, text) then passes `check_mentions`: every value mentioned, no other.
    """
    own = dict(record)
    fields = list(pools) + [f for f, _ in record if f not in pools]  # the demonstrations' field order
    out = []
    for f in fields:
        values = pools.get(f, [])
        if own.get(f) is not None and norm(own[f]) in _BOOL:
            if mentions(text, f, own[f]) and _bool_agrees(text, own[f]):
                out.append((f, own[f]))
            continue
        if own.get(f) is not None and mentions(text, f, own[f]):
            out.append((f, own[f]))
            continue
        hits = [v for v in values if norm(v) not in _BOOL and len(norm(v)) >= 3 and mentions(text, f, v)]
        if hits:
            out.append((f, max(hits, key=len)))
    if (required and required not in dict(out)) or len(out) < 2:
        return None
    return out


# generic text generation ---------------------------------------------------------------------------


def check_output(output: str | None, inp: str, max_words: int) -> str | None:
    """None for a usable output: not empty, not the input again, not about the task, at most `max_words` words."""
    if not output:
        return "invalid_json"
    if norm(output) == norm(inp):
        return "repeats_input"
    if _META.search(output):
        return "talks_about_task"
    if len(output.split()) > max_words:
        return "too_long"
    return None
