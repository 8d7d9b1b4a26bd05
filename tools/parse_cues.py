"""What a prompt's words and demonstrations say about its task type, as weighted, explained evidence.

Each task type collects evidence: 4 = its demonstrations show it (outputs repeating within a label set,
passage + question inputs, record inputs, code outputs); 3 = an unambiguous cue ("Labels: a, b", "Python",
"write a haiku", "span of the passage"); 2 = a usual cue ("classify … as a or b", "summarize"); 1 = a weak
keyword ("question", "code", "write"). Within a type, word cues take their best match and demonstrations
add to it. The reading is *unsure* when the best type has only a weak cue or none, or when a second type is
within 1 of it; then the teacher is asked (see parse.py).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

__all__ = [
    "PASSAGE_WORDS",
    "Evidence",
    "class_cue",
    "code_language",
    "decide",
    "looks_like_code",
    "qa_input",
    "qa_parts",
    "record_fields",
    "type_evidence",
]

# Priority on ties: the more specific reading first.
_ORDER = ("classification", "extractive_qa", "text_to_code", "data_to_text", "text_generation")
_I = re.I
_CLASS_NOUN = (
    r"sentiment|topic|category|language|intent|emotion|tone|type|kind|label|class|level|priority|mood|stance|"
    r"polarity|genre|department|team|queue|urgency|severity|tense|rating|score|verdict"
)
_CLASS_VERB = re.compile(
    r"\b(?:classif(?:y|ies|ied|ication)|categori[sz]e|triage|"
    # verbs that are also nouns ("a museum label") count with an object after them
    r"(?:label|tag|sort|assign|detect|flag|mark|rate|grade|route|bucket)(?:s|d|ed|ged|ging|ing)?\s+(?:each|every|the|this|these|those|all|it|"
    r"them|a|an|its|their|how|whether|if|incoming|user|customer|\w+s)\b|(?:put|place|file|group)\b[^.\n]{0,40}\binto\b|(?:decide|determine|identify|predict|tell(?: me)?|judge|check|say|indicate)\s+(?:whether|if)|"
    rf"which\s+(?:one|of|{_CLASS_NOUN})\b|what\s+(?:is|are)\s+the\s+(?:\w+\s+)?(?:{_CLASS_NOUN})|what\s+(?:{_CLASS_NOUN})|"
    rf"(?:identify|detect|predict|determine|give|output|return|name|find|pick|choose)\s+(?:the|its|their)\s+(?:\w+\s+)?"
    rf"(?:{_CLASS_NOUN})\b|(?:pick|choose|select)\s+(?:one|from|between|among)|"
    r"clasific\w*|categoriz\w*|class(?:e|ez|er)\b|classifie[rz]?|cat[ée]goris\w*|klassifizier\w*|kategorisier\w*|"
    r"ordne\b|einordnen|zuordnen|d[ée]cide[rz]?\s+si|determina\s+si|indique[rz]?\s+si|indica\s+si|entscheide\w*\s+ob|"
    r"[ée]tiquet\w*|etiquet\w*)",
    _I,
)
_YES_NO_QUESTION = re.compile(
    r"(?:^|[.!?\n]\s*)(?:is|are|does|do|did|was|were|can|could|will|would|should|has|have)\s+"
    r"(?:it|this|that|the|each|every|a|an|these|there|they)\b[^?\n]{0,120}\?",
    _I,
)
_PASSAGE = (
    r"passages?|context|paragraphs?|texts?|articles?|documents?|excerpts?|snippets?|contracts?|pages?|manuals?|"
    r"polic(?:y|ies)|e-?mails?|stor(?:y|ies)|biograph(?:y|ies)|reports?|transcripts?|entr(?:y|ies)|faqs?|chapters?|"
    r"sections?|abstracts?|knowledge base|wiki(?:pedia)?"
)
PASSAGE_WORDS = re.compile(rf"\b(?:{_PASSAGE})\b", _I)
_QA_PAIR = re.compile(
    rf"\b(?:{_PASSAGE})\b.*\b(?:questions?|quer(?:y|ies))\b|\b(?:questions?|quer(?:y|ies))\b.*\b(?:{_PASSAGE})\b",
    _I | re.S,
)
_QA_SPAN = re.compile(
    r"\bspans?\b|word for word|verbatim|\bquot(?:e|ing)\b|\bhighlight|\bexact (?:phrase|words?|wording|text)|"
    r"\bpart of the (?:passage|text|article|document|paragraph|context)",
    _I,
)
_QA_NAMED = re.compile(r"\bextractive (?:qa|question answering)\b|\breading comprehension\b|\bsquad\b", _I)
_CLOSED_QA = re.compile(r"\banswer\b.{0,40}\bquestions?\b|\bquestions?\b.{0,40}\banswers?\b", _I | re.S)
_PYTHON = re.compile(r"\b(?:python|pandas|numpy|list comprehension|docstring|def line)\b", _I)
_OTHER_LANGS = re.compile(
    r"\b(sql|bash|shell script|powershell|javascript|typescript|java|c\+\+|c#|golang|rust|ruby|php|kotlin|swift|"
    r"scala|perl|haskell|matlab|html|css|regex(?:es)?|regular expressions?|go(?=\s+(?:programs?|code|functions?|scripts?)))"
    r"(?![\w+#])",
    _I,
)
_CODE_NOUN = re.compile(
    r"\b(?:code|snippets?|functions?|scripts?|programs?|one-liners?|expressions?|implementation|algorithm|regex|"
    r"sql|bash|javascript|typescript|java|c\+\+|golang|rust|ruby|php)\b",
    _I,
)
_MAKE = (
    r"write|generate|produce|implement|convert|translate|turn|complete|create|give|compose|output|return|make"
)
_CODE_VERB = re.compile(rf"\b(?:{_MAKE})\b", _I)
_D2T_NOUN = re.compile(
    r"\b(?:meaning representations?|records?|tables?|structured data|key[- ]value|json|box score|spreadsheet|stats|"
    r"statistics|triples?|slots?|specs|specifications|metadata|infobox)\b|table-to-text|data-to-text",
    _I,
)
_D2T_WEAK = re.compile(
    r"\b(?:data|rows?|columns?|attributes?|fields?|properties)\b", _I
)  # words of any prompt
_D2T_OUT = re.compile(
    r"\b(?:sentences?|descriptions?|describ\w+|text|blurb|biography|summary|paragraph|report|listing|invite|"
    r"prose|verbali[sz]e\w*|fluent|natural[- ]language|says)\b",
    _I,
)
_D2T_VERB = re.compile(rf"\b(?:{_MAKE}|describe|verbali[sz]e|summari[sz]e|say|says)\b", _I)
# a verb and its object, with no preposition between them ("write a haiku", not "write code for each description")
_OBJ = r"\s+(?:(?!(?:for|from|of|about|in|on|based|using|given|to|that|which|with|into)\b)[\w'-]+,?\s+){0,6}?"
_CREATIVE = re.compile(
    rf"\b(?:write|compose|generate|create|draft|produce|craft|come up with|make up){_OBJ}"
    r"(?:poems?|haikus?|limericks?|stor(?:y|ies)|songs?|lyrics|jokes?|essays?|slogans?|taglines?|tweets?|captions?|"
    r"riddles?|toasts?)\b",
    _I,
)
_GENRE = re.compile(
    rf"\b(?:write|compose|generate|create|draft|produce|craft|give|suggest|propose|come up with){_OBJ}"
    r"(?:repl(?:y|ies)|responses?|e-?mails?|letters?|headlines?|titles?|messages?|posts?|bios?|outlines?|recipes?|"
    r"names?|announcements?|translations?|notes?|cards?|invitations?|speech(?:es)?|cover letters?)\b|"
    r"\b(?:turn|convert|rewrite|make)\b[^.\n]{0,60}\binto\s+(?:an?\s+)?(?:[\w-]+\s+){0,2}?"
    r"(?:e-?mails?|letters?|tweets?|posts?|poems?|stor(?:y|ies)|summar(?:y|ies)|messages?|notes?)\b",
    _I,
)
_GENERIC = re.compile(
    rf"\b(?:write|compose|generate|create|draft|produce|give){_OBJ}(?:summar(?:y|ies)|descriptions?|paragraphs?)\b",
    _I,
)
_QGEN = re.compile(
    r"\b(?:write|generate|create|compose|draft|come up with|suggest|propose|ask)\s+(?:(?:a|an|one|two|three|four|"
    r"five|\d+|some|several|the|new|follow-up|quiz|trivia|exam|test|multiple-choice|short|good|clarifying|interview|"
    r"open-ended|possible)[\s-]+){0,3}questions?\b",
    _I,
)
_TRANSFORM = re.compile(
    r"\b(?:summari[sz]e|translate|paraphrase|rewrite|reword|rephrase|simplify|correct|proofread|continue|shorten|"
    r"condense|expand|explain|draft|compose|make (?:the|it|this)\b[^.\n]{0,30}\b(?:shorter|simpler|longer|formal|"
    r"polite|friendlier|clearer)|fix the (?:grammar|spelling)|resume|traduce|traduis|übersetze|fasse)\b",
    _I,
)
_GEN_VERB = re.compile(r"\b(?:write|generate|create|produce|compose|draft)\b", _I)
_QA_SPLIT = re.compile(
    r"^\s*(?:passage|context|paragraph|text|article)?\s*[:=]?\s*(?P<p>.+?)\s*\n\s*(?:question|q)\s*[:=]\s*(?P<q>.+?)\s*$",
    _I | re.S,
)
_RECORD_BRACKET = re.compile(r"([A-Za-z][\w ]{0,30}?)\s*\[([^\]]*)\]")
_RECORD_COLON = re.compile(r"(?:^|[,;|\n])\s*([A-Za-z][\w ]{0,30}?)\s*[:=]\s*([^,;|\n]+)")
_CODE_SHAPE = re.compile(
    r"[()\[\]{}=%]|^\s*(?:import|from|def|class|return|print|lambda)\b|&&|\|\s*\w|^\s*\$", _I
)
_OTHER_CODE = re.compile(
    r"\bSELECT\b.+\bFROM\b|\bINSERT INTO\b|&&|\|\s*(?:grep|sort|wc|awk|sed)\b|;\s*$|^\s*\$ "
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


def parses_as_python(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def looks_like_code(text: str) -> bool:
    """Whether a demonstration's output is code (Python or another language), not prose or a label."""
    text = text.strip()
    if not _CODE_SHAPE.search(text) and not _OTHER_CODE.search(text):
        return False
    return parses_as_python(text) or bool(_OTHER_CODE.search(text))


def class_cue(instruction: str) -> str | None:
    """The words that ask for a classification ("classify", "decide whether", "Is this …?"), or None."""
    m = _CLASS_VERB.search(instruction) or _YES_NO_QUESTION.search(instruction)
    words = m.group(0).split() if m else []
    return (" ".join(words[:6]) + (" …" if len(words) > 6 else "")).strip(" .!?") if m else None


@dataclass
class Evidence:
    """Per task type: a score and the reasons behind it (see the module docstring for the weights)."""

    scores: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_ORDER, 0))
    reasons: dict[str, list[str]] = field(default_factory=lambda: {t: [] for t in _ORDER})

    def add(self, task_type: str, weight: int, reason: str) -> None:
        self.scores[task_type] += weight
        self.reasons[task_type].append(reason)


def _best(ev: Evidence, task_type: str, cues: list[tuple[int, str, re.Match | None]]) -> None:
    """Add the strongest of a type's word cues (they overlap, so only the best counts)."""
    hits = [(w, why.format(" ".join(m.group(0).split())[:40].lower())) for w, why, m in cues if m]
    if hits:
        ev.add(task_type, *max(hits, key=lambda h: h[0]))


def type_evidence(
    instruction: str, demos: list[tuple[str, str]], labels: list[str], label_weight: int, label_why: str
) -> Evidence:
    """The evidence for each task type in an instruction, its demonstrations and a label set.

    Args:
        label_weight: how strongly the label set points to classification (0 when there is none).
        label_why: where the labels came from, for the reasons.
    """
    ev = Evidence()
    text = instruction
    cue = class_cue(text)
    if len(labels) >= 2 and label_weight:
        ev.add("classification", label_weight, label_why)
    if cue:
        ev.add("classification", 1, f"a classification cue ('{cue}')")
    ins, outs = [i for i, _ in demos], [o for _, o in demos]
    qa_demos = bool(demos) and all(qa_parts(i) for i in ins)
    if qa_demos:
        ev.add("extractive_qa", 4, "the demonstrations show a passage and a question")
    elif demos and all(len(record_fields(i)) >= 2 for i in ins):
        ev.add("data_to_text", 4, "the demonstrations' inputs are records")
    if demos and all(looks_like_code(o) for o in outs):
        ev.add("text_to_code", 4, "the demonstrations' outputs are code")
    elif demos and not qa_demos and label_weight < 4 and not any(len(record_fields(i)) >= 2 for i in ins):
        if not all(i.rstrip().endswith("?") for i in ins):  # answers to questions are not free text
            ev.add("text_generation", 1, "the demonstrations' outputs are free text")
    _best(ev, "extractive_qa", [
        (3, "'{}'", _QA_NAMED.search(text)),
        (2, "a passage and a question ('{}')", _QA_PAIR.search(text) and PASSAGE_WORDS.search(text)),
        (1, "the words '{}'", _CLOSED_QA.search(text)),
    ])  # fmt: skip
    if _QA_PAIR.search(text) and _QA_SPAN.search(text):
        ev.add("extractive_qa", 1, f"an extractive answer ('{_QA_SPAN.search(text).group(0).lower()}')")
    other = _OTHER_LANGS.search(text) if not _PYTHON.search(text) else None
    make = _CODE_VERB.search(text)
    _best(ev, "text_to_code", [
        (4 if make else 3, "the word '{}'", _PYTHON.search(text)),
        (3, "a language named ('{}') with a verb", make and other),
        (2, "'{}' with a verb", make and _CODE_NOUN.search(text)),
        (1, "the word '{}'", _CODE_NOUN.search(text)),
    ])  # fmt: skip
    d2t_out, d2t_verb = _D2T_OUT.search(text), _D2T_VERB.search(text)
    _best(ev, "data_to_text", [
        (4 if d2t_out and d2t_verb else 3, "structured input ('{}') to text", (d2t_out or d2t_verb) and _D2T_NOUN.search(text)),
        (2, "'{}' to text", (d2t_out or d2t_verb) and _D2T_WEAK.search(text)),
        (1, "the word '{}'", _D2T_NOUN.search(text) or _D2T_WEAK.search(text)),
    ])  # fmt: skip
    _best(ev, "text_generation", [
        (4, "'{}'", _CREATIVE.search(text) or _QGEN.search(text)),
        (3, "'{}'", _GENRE.search(text)),
        (2, "'{}'", _GENERIC.search(text)),
        (2, "the verb '{}'", _TRANSFORM.search(text)),
        (1, "the verb '{}'", _GEN_VERB.search(text)),
    ])  # fmt: skip
    return ev


def decide(ev: Evidence, has_labels: bool) -> tuple[str, list[str]]:
    """The task type with the most evidence, and why that choice is unsure (empty: sure).

    Classification needs a label set; with no evidence at all the reading falls back to text generation.
    """
    ranked = sorted(
        (t for t in _ORDER if t != "classification" or has_labels),
        key=lambda t: (-ev.scores[t], _ORDER.index(t)),
    )
    best, second = ranked[0], ranked[1]
    top, runner = ev.scores[best], ev.scores[second]
    unsure = []
    if top == 0:
        best = "text_generation"
        unsure.append("no cue for any task type: text generation is the fallback")
    elif top == 1:
        unsure.append(f"{best.replace('_', ' ')} only from a weak cue ({'; '.join(ev.reasons[best])})")
    elif runner >= top - 1 and runner >= 2:
        unsure.append(
            f"{best.replace('_', ' ')} ({top}) and {second.replace('_', ' ')} ({runner}) are close"
            f" ({'; '.join(ev.reasons[second])})"
        )
    if not has_labels and ev.scores["classification"]:
        unsure.append(f"{ev.reasons['classification'][0]} but no label set")
    return best, unsure
