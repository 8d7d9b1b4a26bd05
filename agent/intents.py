"""What a chat message asks for: a deterministic parser for command-like messages, the LLM for free text.

The embedded 135M teacher cannot be trusted to read intent, so the common refinements are plain
patterns ("add a label refund", "drop examples that mention prices", "write them in Spanish", …);
a capable endpoint (`llm.capable`) reads everything else by structured output. Both return an
`Intent`, and the chat session (agent/chat.py) carries it out the same way whoever read it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from p2m.tools.parse import find_label_lists, split_demonstrations
from p2m.tools.prompts import load_prompt
from p2m.tools.types import TaskSpec

__all__ = [
    "HELP",
    "SEQ_HELP",
    "Intent",
    "KINDS",
    "LANGUAGES",
    "parse_intent",
    "llm_intent",
    "parse_labels",
    "looks_foreign",
]

KINDS = (
    "task", "add_label", "remove_label", "set_labels", "input_kind", "length", "examples", "drop_word",
    "language", "style", "bigger_model", "deploy", "why", "retrain", "go", "history", "help", "chat", "unknown",
)  # fmt: skip

LANGUAGES = {
    "english": "en", "spanish": "es", "french": "fr", "german": "de", "italian": "it", "portuguese": "pt",
    "dutch": "nl", "chinese": "zh", "japanese": "ja", "russian": "ru", "arabic": "ar", "hindi": "hi",
    "korean": "ko", "polish": "pl", "turkish": "tr", "swedish": "sv", "greek": "el", "czech": "cs",
}  # fmt: skip

HELP = """I build a small classifier from your description, then refine it with you. You can say:
- "add a label refund" / "remove the label other" / "labels: billing, bug, other"
- "the billing examples are too short" (or too long)
- paste real examples as `Input: …` / `Output: …` pairs or `text -> label` lines (or upload a file)
- "drop examples that mention prices"
- "write them in Spanish"
- "use a bigger model" / "retrain"
- "why did you do that?" / "history"
- "stop and deploy\""""

SEQ_HELP = """I build a small model that writes the output for each input (extractive QA, data-to-text, code or
text), then refine it with you. You can say:
- "make the answers shorter" (or longer) / "use a formal tone" / "style: one friendly sentence"
- paste real examples as `Input: …` / `Output: …` pairs (QA: `Passage: …` / `Question: …` / `Answer: …`) or
  upload a file; from three on, I keep every third one to check the model on
- "drop examples that mention prices"
- "write in Spanish"
- "train longer" / "retrain"
- "why did you do that?" / "history"
- "stop and deploy\""""


@dataclass
class Intent:
    """One thing the user asked for, with its arguments and who read it (parser or llm)."""

    kind: str
    args: dict[str, Any] = field(default_factory=dict)
    by: str = "parser"


_LABEL = r"[\"'“‘`]?(?P<label>[^\s\"'”’`.,!?;:]{1,40})[\"'”’`]?"
_WHY = re.compile(r"^\s*why\b|\bwhy did you\b|\bexplain (?:that|this|your)\b", re.I)
_DEPLOY = re.compile(
    r"\b(?:stop and deploy|deploy(?: it| the model)?|ship it|we'?re done|that'?s all)\b", re.I
)
_ADD = re.compile(rf"\badd (?:a |an |the |another |one more |new )*(?:label|class|category|intent)s?\s+(?:called |named )?{_LABEL}", re.I)  # fmt: skip
_REMOVE = re.compile(rf"\b(?:remove|delete|drop) (?:the )?(?:label|class|category|intent)\s+{_LABEL}", re.I)
_OUTPUTS = r"(?:examples?|answers?|outputs?|texts?|sentences?|descriptions?|replies|reply|responses?|snippets?|summar(?:y|ies))"
_LENGTH = re.compile(rf"(?:(?:the\s+)?(?P<label>[^\s\"'.,!?]+)\s+)?{_OUTPUTS}\s+(?:are|is|look|looks|seem|seems)\s+"
                     r"(?:a bit |way |much |far )?too\s+(?P<dir>short|long)", re.I)  # fmt: skip
# "make the answers shorter", "shorter answers please", "keep them more concise": what is wrong is the opposite
_COMPARE = re.compile(rf"\b(?:make|keep|write|want|need|give me|should be)\b[^.?!\n]{{0,30}}?\b(?P<cmp>shorter|briefer|"
                      rf"more concise|longer|more detailed)\b|\b(?P<cmp2>shorter|longer)\s+{_OUTPUTS}", re.I)  # fmt: skip
_STYLE = re.compile(r"^\s*(?:style|tone)\s*[:=]\s*(?P<hint>\S.{0,200})$|\b(?:in|with|use)\s+an?\s+(?P<tone>[a-z][\w\-]*"
                    r"(?:,?\s+[a-z][\w\-]*){0,3}?)\s+(?:tone|style|voice|register)\b|\b(?:make|write|keep)\b[^.?!\n]{0,30}?"
                    r"\b(?:sound\s+)?more\s+(?P<adj>[a-z][\w\-]{2,20})\b", re.I | re.S)  # fmt: skip
_DROP = re.compile(r"\b(?:drop|remove|delete|exclude|filter out)\s+(?:all\s+|the\s+|any\s+)?(?:examples?|rows?|data)\s+"
                   r"(?:that\s+|which\s+)?(?:mention|mentions|mentioning|contain|contains|containing|with|about|saying)\s+"
                   r"[\"'“‘`]?(?P<word>[^\"'”’`.!?\n]{1,40})", re.I)  # fmt: skip
_LANG = re.compile(r"\b(?:write|generate|make|do|put|translate)\b[^.?!\n]{0,30}?\bin\s+(?P<lang>[A-Za-z]+)\b|"
                   r"^\s*(?:in\s+)?(?P<lang2>[A-Za-z]+)\s+(?:please|only)\s*[.!]?\s*$", re.I)  # fmt: skip
_BIGGER = re.compile(r"\b(?:bigger|larger|stronger|better|more powerful)\s+(?:student\s+)?model\b|"
                     r"\btrain(?: it| the model)? (?:for )?longer\b|\bmore epochs\b", re.I)  # fmt: skip
_RETRAIN = re.compile(r"^\s*(?:retrain|re-?train it|train (?:it )?again|re-?run)\b", re.I)
_GO = re.compile(
    r"^\s*(?:go|go ahead|yes|y|ok|okay|run|run it|start|sure|looks good|do it)\s*[.!]*\s*$", re.I
)
_HISTORY = re.compile(
    r"^\s*(?:history|versions|show (?:the )?(?:history|versions)|status)\s*[.?!]*\s*$", re.I
)
_HELP = re.compile(r"^\s*(?:help|\?|what can (?:you|i) (?:do|say)\??)\s*$", re.I)
_LABELS_ANSWER = re.compile(
    r"^\s*(?:the\s+)?(?:labels?|classes|categories)\s*(?:are|:|=)\s*(?P<rest>.+)$", re.I | re.S
)
_KIND_ANSWER = re.compile(r"^\s*(?:each |one )?(?:input|inputs)\s*(?:is|are|:|=)\s*(?:an?\s+|the\s+)?(?P<kind>[\w\- ]{2,40}?)\s*[.!]?\s*$", re.I)  # fmt: skip
_NOT_LABEL = {
    "the",
    "these",
    "those",
    "all",
    "my",
    "our",
    "your",
    "some",
    "many",
    "generated",
    "new",
    "training",
}


def parse_labels(text: str) -> list[str]:
    """Labels written as a list ("billing, bug or other", "billing, bug, other")."""
    lists = find_label_lists(text)
    if lists:
        return lists[0]
    parts = [p.strip(" .\"'") for p in re.split(r"[,;/\n]|\s+or\s+|\s+and\s+", text) if p.strip(" .\"'")]
    return list(dict.fromkeys(p for p in parts if len(p.split()) <= 3))


def _is_command(text: str) -> bool:
    """Whether a short message is a command ('help', 'remove the label x'), not an answer to a question."""
    # "write them in X" always; "X only" when X is a language ("tweets only" answers the question)
    lang = _LANG.search(text)
    if lang and (lang["lang"] or (lang["lang2"] or "").lower() in LANGUAGES):
        return True
    return bool(_HELP.match(text) or _HISTORY.match(text) or _RETRAIN.match(text)) or any(
        r.search(text) for r in (_WHY, _DEPLOY, _ADD, _REMOVE, _LENGTH, _COMPARE, _DROP, _BIGGER, _STYLE)
    )


def parse_intent(message: str, has_task: bool, asking: str | None = None) -> Intent:
    """The intent of a command-like message, or kind "unknown" (then the LLM may read it).

    Args:
        message: what the user wrote.
        has_task: whether the session already has a task (otherwise a description is a new task).
        asking: the clarifying question the agent is waiting on ("labels", "language", "input_kind",
            "example"), if any.
    """
    text = message.strip()
    if not has_task:
        return Intent("help") if _HELP.match(text) else Intent("task", {"prompt": text})
    _, pairs = split_demonstrations(text)
    if asking in ("labels", "example") and pairs:  # examples answer the question too
        return Intent("examples", {"pairs": [list(p) for p in pairs]})
    if asking == "labels" and (m := _LABELS_ANSWER.match(text) or re.match(r"(?P<rest>.+)", text, re.S)):
        labels = parse_labels(m["rest"])
        if len(labels) >= 2:
            return Intent("set_labels", {"labels": labels})
    if asking == "language":
        named = [w for w in re.findall(r"[A-Za-z]+", text.lower()) if w in LANGUAGES]
        if named:
            return Intent("language", {"language": named[0]})
    if asking == "input_kind" and not _GO.match(text) and not _is_command(text):
        m = _KIND_ANSWER.match(text)
        kind = m["kind"] if m else text.strip(" .!") if len(text.split()) <= 4 else None
        if kind:
            return Intent("input_kind", {"kind": re.sub(r"^(?:an?|the|one)\s+", "", kind.lower())})
    if _WHY.search(text):
        return Intent("why")
    if _HELP.match(text):
        return Intent("help")
    if _HISTORY.match(text):
        return Intent("history")
    if pairs:
        return Intent("examples", {"pairs": [list(p) for p in pairs]})
    if m := _LABELS_ANSWER.match(text):
        labels = parse_labels(m["rest"])
        if len(labels) >= 2:
            return Intent("set_labels", {"labels": labels})
    if m := _DROP.search(text):
        return Intent("drop_word", {"word": m["word"].strip().lower()})
    if m := _REMOVE.search(text):
        return Intent("remove_label", {"label": m["label"]})
    if m := _ADD.search(text):
        return Intent("add_label", {"label": m["label"]})
    if m := _LENGTH.search(text):
        label = m["label"] if m["label"] and m["label"].lower() not in _NOT_LABEL else None
        return Intent("length", {"label": label, "direction": m["dir"].lower()})
    if m := _COMPARE.search(text):
        wish = (m["cmp"] or m["cmp2"]).lower()
        return Intent("length", {"label": None, "direction": "long" if wish in ("shorter", "briefer",
                                                                            "more concise") else "short"})  # fmt: skip
    if m := _LANG.search(text):
        lang = (m["lang"] or m["lang2"] or "").lower()
        if lang in LANGUAGES:
            return Intent("language", {"language": lang})
    if _BIGGER.search(text):
        return Intent("bigger_model")
    if m := _STYLE.search(text):
        hint = m["hint"] or (f"Use a {m['tone']} tone." if m["tone"] else f"Make it more {m['adj']}.")
        return Intent("style", {"hint": hint.strip()})
    if _DEPLOY.search(text):
        return Intent("deploy")
    if _RETRAIN.match(text):
        return Intent("retrain")
    if _GO.match(text):
        return Intent("go")
    return Intent("unknown", {"text": text})


_SCHEMA = {
    "type": "object",
    "properties": {
        "intent": {"type": "string", "enum": [k for k in KINDS if k not in ("task", "unknown", "examples")]},
        "label": {"type": "string"},
        "labels": {"type": "array", "items": {"type": "string"}},
        "direction": {"type": "string", "enum": ["short", "long"]},
        "word": {"type": "string"},
        "language": {"type": "string"},
        "kind": {"type": "string"},
        "hint": {"type": "string"},
        "reply": {"type": "string"},
    },
    "required": ["intent"],
}


def llm_intent(llm: Any, message: str, context: dict[str, Any]) -> Intent | None:
    """The intent of a free-text message read by a capable LLM (structured output), or None."""
    import json

    messages = [("system", load_prompt("chat_system")),
                ("user", json.dumps({"task": context, "message": message[:4000]}, ensure_ascii=False))]  # fmt: skip
    try:
        data = llm.json(messages, _SCHEMA, max_tokens=300, purpose="chat")
    except Exception:  # an endpoint that fails to answer leaves the message to the parser's help
        return None
    if not isinstance(data, dict) or data.get("intent") not in _SCHEMA["properties"]["intent"]["enum"]:
        return None
    kind = data["intent"]
    args: dict[str, Any] = {}
    if kind in ("add_label", "remove_label", "length"):
        args["label"] = str(data.get("label") or "").strip() or None
    if kind == "length":
        args["direction"] = data.get("direction") or "short"
    if kind == "set_labels":
        args["labels"] = [str(x).strip() for x in data.get("labels") or [] if str(x).strip()]
    if kind == "drop_word":
        args["word"] = str(data.get("word") or "").strip().lower()
    if kind == "language":
        args["language"] = str(data.get("language") or "").strip().lower()
    if kind == "input_kind":
        args["kind"] = str(data.get("kind") or "").strip().lower()
    if kind == "style":
        args["hint"] = str(data.get("hint") or "").strip()
        if not args["hint"]:
            return None
    if kind == "chat":
        args["reply"] = str(data.get("reply") or "").strip()
    if kind in ("add_label", "remove_label") and not args["label"]:
        return None
    return Intent(kind, args, by="llm")


_EN = set("the a an of and to is are as for in on with this that each or it be".split())
_OTHER = set("el la los las de que y en un una por para como es del le les des et est une du der die das und ist "
             "ein eine mit il di che per sono um uma para com não ou".split())  # fmt: skip


def looks_foreign(spec: TaskSpec) -> bool:
    """Whether the description reads like another language than English (then the agent asks which)."""
    text = " ".join([spec.instruction, *(i for i, _ in spec.demonstrations)])
    letters = [c for c in text if c.isalpha()]
    if letters and sum(not c.isascii() for c in letters) / len(letters) > 0.3:
        return True
    words = re.findall(r"[^\W\d_]+", text.lower())
    return sum(w in _OTHER for w in words) > max(2, 2 * sum(w in _EN for w in words))
