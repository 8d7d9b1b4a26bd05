"""Label lists written in a prompt, in any common shape, and label sets shown by demonstrations.

Shapes read: prose lists ("as billing, bug or other", "Rechnung, Technik oder Sonstiges"), lists after a
colon or a header ("Labels: a, b, c", "one of: a, b, c", "Options: a | b | c"), quoted lists, parenthesised
lists ("(yes/no)"), slash lists ("easy / medium / hard"), "X or not X", rating ranges ("from 1 to 5"), and
block lists: bullets, numbered items, "P1 = description" lines and bare short lines under a header. Each list says whether a label cue
introduces it (`explicit`): a label noun, "one of", "answer/reply with", a question mark, or a header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["LabelList", "label_lists", "find_label_lists", "demo_label_set", "describe"]

_WORD = r"[^\W\d_][\w'\-]*"  # a word that starts with a letter, in any script
_QUOTED = r"[\"'“‘`«]([^\"'”’`»\n]{1,40})[\"'”’`»]"
_OR = r"(?:or|and|o|ou|oder|y|et|und|/)"  # "or" in English, Spanish, French and German, and "and"
_STOP = set(
    "a an the this that these those it its is are be of to in on for with by as and or not one any all "
    "each only word words your you please output label labels text input which what whether if who where when "
    "why how "
    "el la los las un una de del et le les des du ein eine der die das und oder".split()
)
_LABEL_NOUN = (
    r"labels?|categor(?:y|ies)|class(?:es)?|options?|choices?|tags?|intents?|topics?|classes|buckets?|queues?|"
    r"etiquetas?|categor[ií]as?|cat[ée]gories?|[ée]tiquettes?|kategorien?|klassen?|possible (?:values|answers|outputs)|"
    r"allowed (?:values|answers|outputs)|valid (?:values|answers|outputs)"
)
# What may introduce a label list right before it: strong cues make the list explicit.
_STRONG_CUE = re.compile(
    rf"(?:\b(?:{_LABEL_NOUN})\b[^.\n:]{{0,20}}|\bone of(?: the following)?|\b(?:choose|pick|select)\b(?: one)?"
    r"(?: (?:from|between|among))?(?: the following)?|\b(?:answer|reply|respond|output|return|say|print)\b"
    r"(?: (?:only|just))?(?: (?:with|using))?(?: (?:exactly|only|just))?(?: (?:either|one word|a single word|one label|"
    r"the word))?|\?|\beither)\s*:?\s*$",
    re.I,
)
_WEAK_CUE = re.compile(
    r"(?:\bas|\binto|\bis|\bare|\bof|\bbetween|\bwhether|\bwith|\bfrom|\bcomo|\ben|\bcomme|\bals|\bzu|:|[—–])\s*:?\s*$",
    re.I,
)
_CLAUSE_CUE = re.compile(
    rf"(?:\b(?:as|into|is|are|about|between|whether|either|como|comme|als|en|zu|one of(?: the following)?(?: {_WORD})?|"
    rf"(?:choose|pick|select) (?:one )?(?:from|between|among)|(?:answer|reply|respond|output|return|say)(?: (?:only|just))?"
    rf"(?: with)?(?: (?:exactly|only|just))?(?: (?:either|one word|a single word|one label|the word))?|(?:{_LABEL_NOUN}))"
    r"\b\s*:?|:|\?|[—–])[ \t]+",
    re.I,
)
_CLAUSE_SUBJECT = re.compile(r"^(?:(?:each one|each|it|this|that|they|these)\s+(?:is\s+|are\s+)?)", re.I)
_VERB_CUE = re.compile(r"(?:answer|reply|respond|output|return|say|print)\b", re.I)
_CUE_WORD = re.compile(r"(?:answer|reply|respond|output|return|say|choose|pick|select|use|is|are|as)\b", re.I)
_BULLET = re.compile(r"^[ \t]*(?:[-*•–·+]|\d{1,2}[.)]|\(?[a-hA-H][.)])[ \t]+(?P<item>\S.*?)\s*$")
_DEFLINE = re.compile(r"^[ \t]*(?P<item>[^\s:=][^:=\n]{0,30}?)[ \t]*(?:=|:|–|—|->|→)[ \t]+\S.*$")
_SHORTLINE = re.compile(r"^[ \t]*(?P<item>[^\W\d_][\w'\- ]{0,30}?)[ \t]*[.;,]?[ \t]*$")
_UNDERLINE = re.compile(r"\s*[-=_~*]{3,}\s*")  # "Categories\n----------"
_HEADER_CUE = re.compile(rf"\b(?:{_LABEL_NOUN})\b|\bone of|\bchoose|\bpick|\bselect|\bwhich\b|\?\s*$", re.I)
_DESC_SPLIT = re.compile(r"\s+[-–—=]\s+|:\s|\s*\(|\s+->\s+|\s+→\s+")


@dataclass(frozen=True)
class LabelList:
    """One candidate label list found in the text.

    Attributes:
        items: the labels, in the order written, without duplicates.
        shape: how it was written: quoted, paren, bullets, numbered, deflines, lines, clause, words, not, range.
        explicit: a label cue introduces it (label noun, "one of", "answer …", "?", header line).
        cue: the few words before it (for saying why).
    """

    items: tuple[str, ...]
    shape: str
    explicit: bool
    cue: str = ""


_SHAPE_WORDS = {
    "quoted": "quoted labels", "paren": "labels in parentheses", "bullets": "a bulleted list of labels",
    "deflines": "'label = description' lines", "lines": "a list of labels, one a line", "not": "'X or not X'",
    "clause": "a list of labels", "words": "a list of labels", "range": "a rating range",
    "numbered": "a numbered list of labels",
}  # fmt: skip


def describe(cand: LabelList) -> str:
    """Where a label list was found, for a reading's reasons."""
    if cand.shape == "range":
        return f"a rating range ('{cand.cue}')"
    if cand.cue and cand.shape not in ("bullets", "deflines", "lines"):
        return f"labels listed after '{cand.cue}'"
    return _SHAPE_WORDS[cand.shape] + (f" under '{cand.cue[-30:]}'" if cand.cue else "")


def _clean(item: str) -> str:
    item = item.strip().strip("*_`").strip()
    item = re.sub(r"^[\"'“‘«]|[\"'”’»]$", "", item).strip()
    item = re.sub(r"^(?:a|an|the|just|only|simply|either)\s+(?=\S)", "", item, flags=re.I)  # "or just praise"
    return item.rstrip(".,;:!?").strip()


def _ok_items(items: list[str], max_words: int = 3) -> list[str] | None:
    items = [_clean(i) for i in items]
    items = list(dict.fromkeys(i for i in items if i))
    if len(items) < 2 or len({i.lower() for i in items}) < len(items):
        return None
    for i in items:
        words = i.split()
        if not words or len(words) > max_words or len(i) > 40 or not re.match(r"[^\W_]", i):
            return None
        if re.search(r"[:()\[\]{}=<>@#]", i):  # a label is a word or a short phrase, not code or a clause
            return None
        if i.lower() in _STOP or words[0].lower() in ("a", "an", "the", "e.g", "i.e", "such", "like", "etc"):
            return None
    return items


def _cue_before(text: str, start: int) -> tuple[bool, bool, str]:
    """(strong cue, weak cue, the cue words) in the text just before a list."""
    before = text[max(0, start - 60) : start]
    before = re.split(r"[.!](?:\s|$)|\n\s*\n", before)[-1]
    strong = _STRONG_CUE.search(before)
    weak = _WEAK_CUE.search(before)
    noun = re.search(rf"\b(?:{_LABEL_NOUN})\b[^.!?\n]*$", before, re.I) and before.rstrip().endswith(":")
    cue = (strong or weak).group(0).strip() if (strong or weak) else ""
    return bool(strong or noun), bool(weak), cue


def _block_lists(text: str) -> list[LabelList]:
    """Bullets, numbered items, "label = description" lines, or short lines under a header ending in ':'."""
    found: list[LabelList] = []
    lines = [line for line in text.split("\n") if not _UNDERLINE.fullmatch(line)]
    i = 0
    while i < len(lines):
        for pattern, shape in ((_BULLET, "bullets"), (_DEFLINE, "deflines"), (_SHORTLINE, "lines")):
            j, items = i, []
            while j < len(lines) and (m := pattern.match(lines[j])):
                items.append(_DESC_SPLIT.split(m["item"])[0] if shape == "bullets" else m["item"])
                j += 1
            header = next((h for h in reversed(lines[:i]) if h.strip()), "")
            noun_header = re.fullmatch(
                rf"\s*(?:the |possible |allowed )*(?:{_LABEL_NOUN})\s*:?\s*", header, re.I
            )
            if shape == "lines" and not (header.rstrip().endswith(":") or noun_header):
                continue
            good = _ok_items(items, max_words=4) if j - i >= 2 else None
            if good:
                strong = bool(_HEADER_CUE.search(header))
                found.append(LabelList(tuple(good), shape, strong or shape == "lines", header.strip()[-40:]))
                i = j - 1
                break
        i += 1
    return found


def _inline_lists(text: str) -> list[LabelList]:
    found: list[LabelList] = []

    def add(items: list[str], shape: str, start: int, explicit: bool | None = None, raw: str = "") -> None:
        good = _ok_items(items)
        if not good:
            return
        strong, _, cue = _cue_before(text, start)
        if strong and _VERB_CUE.match(cue) and raw and not re.search(rf"\s{_OR}\s|/|\|", raw):
            strong = False  # "output only Python code, no explanation": an answer verb lists labels with "or"
        found.append(LabelList(tuple(good), shape, strong if explicit is None else (explicit or strong), cue))

    sep = rf"\s*(?:,|/|\||;|\s{_OR}\s|,\s*{_OR}\s)\s*"
    for m in re.finditer(rf"{_QUOTED}(?:{sep}{_QUOTED})+", text):
        items = re.findall(_QUOTED, m.group(0))
        add(items, "quoted", m.start(), explicit=not re.search(r"\band\b", m.group(0)))
    for m in re.finditer(r"\(([^()\n]{2,100})\)", text):
        inner = m.group(1)
        parts = re.split(rf"\s*(?:,|/|\||;)\s*|\s+{_OR}\s+", inner)
        if not re.match(r"\s*(?:e\.g\.|i\.e\.|such as|like|for example)", inner, re.I):
            add(parts, "paren", m.start(), explicit=bool(re.search(r"/|\||\bor\b", inner)))
    # a rating range: "from 1 to 5", "on a scale of 1-10", "1-5 stars"
    for m in re.finditer(
        r"\b(?:from|between|of)\s+(\d{1,2})\s*(?:to|-|–|and)\s*(\d{1,2})\b|\b(\d)\s*[-–]\s*(\d{1,2})\s*stars?\b",
        text,
    ):
        lo, hi = int(m.group(1) or m.group(3)), int(m.group(2) or m.group(4))
        sentence = re.split(r"[.!?\n]", text[max(0, m.start() - 60) : m.end() + 30])
        if 2 <= hi - lo + 1 <= 11 and re.search(
            r"\b(?:ratings?|rate|stars?|scale|scores?|grades?|points?)\b", " ".join(sentence), re.I
        ):
            found.append(LabelList(tuple(str(n) for n in range(lo, hi + 1)), "range", True, m.group(0)))
    # an inline numbered list: "1) economy 2) health 3) crime", "(1) a, (2) b"
    for m in re.finditer(r"(?:(?<=\s)|^)\(?1[.)][ \t]+[^\n]+", text):
        numbers = re.findall(r"(?:(?<=\s)|^)\(?(\d{1,2})[.)][ \t]+", m.group(0))
        upto = len(numbers) if numbers == [str(n) for n in range(1, len(numbers) + 1)] else 0
        parts = re.split(r"(?:(?<=\s)|^)\(?\d{1,2}[.)][ \t]+", m.group(0))[1 : upto + 1]
        if len(parts) >= 2:
            parts[-1] = re.split(r"[.;!?](?:\s|$)", parts[-1])[0]
            add([p.strip().rstrip(",;") for p in parts], "numbered", m.start())
    # "X or not X", "X or non-X"
    for m in re.finditer(rf"\b({_WORD}(?: {_WORD})?) or (not |non-?)\1\b", text, re.I):
        add([m.group(1), m.group(2) + m.group(1)], "not", m.start())
    # the clause after a cue, up to the end of its sentence, split on commas, slashes, pipes and "or"
    for m in _CLAUSE_CUE.finditer(text):
        clause = re.split(r"[.;!?\n](?:\s|$)|[.;!?]$|\n", text[m.end() :])[0]
        # the list ends where a subordinate clause starts ("…, or account access so we can route it")
        clause = re.split(
            r"\s+(?:so|because|since|when|if|that|which|based on|depending on|according to|for (?:each|every"
            r"|the)|in order)\b",
            clause,
        )[0]
        clause = _CLAUSE_SUBJECT.sub("", clause.strip())  # "is each one a bug, a question …"
        parts = re.split(rf"\s*(?:,|/|\||;)\s*(?:{_OR}\s+)?|\s+{_OR}\s+", clause)
        if parts and _CUE_WORD.match(parts[0]):
            continue  # another cue starts the clause ("? Answer yes or no"): that cue's own clause counts
        add(parts, "clause", m.end(), raw=clause)
    # single words: "billing, bug or other", "urgent, normal, low", "easy / medium / hard"
    words_or = rf"\b({_WORD})((?:\s*,\s*{_WORD})*)\s*,?\s+{_OR}\s+({_WORD})"
    for m in re.finditer(words_or, text):
        joiner = m.group(0).split()[-2].lower()
        before = text[max(0, m.start() - 12) : m.start()]
        if joiner in ("and", "y", "et", "und") and not (
            _cue_before(text, m.start())[0] or re.search(r"\b(?:as|into|between)\s*$|:\s*$", before)
        ):
            continue  # "movie and book reviews": an "and" list is labels only after a cue
        add(
            [m.group(1), *re.findall(_WORD, m.group(2) or ""), m.group(3)], "words", m.start(), raw=m.group(0)
        )
    for m in re.finditer(rf"\b{_WORD}(?:\s*,\s*{_WORD}){{2,}}\b|\b{_WORD}(?:\s*[/|]\s*{_WORD})+\b", text):
        strong, weak, _ = _cue_before(text, m.start())
        if strong or weak or "/" in m.group(0) or "|" in m.group(0):
            add(re.split(r"\s*[,/|]\s*", m.group(0)), "words", m.start(), raw=m.group(0))
    return found


def label_lists(text: str) -> list[LabelList]:
    """Candidate label lists in `text`, best first: explicit before cued before bare, longer first."""
    text = re.sub(r"\*\*|__", "", text.replace("\r\n", "\n").replace("\r", "\n"))  # Markdown bold
    found = _block_lists(text) + _inline_lists(text)
    order = {"range": 0, "quoted": 0, "bullets": 1, "numbered": 1, "deflines": 1, "lines": 1, "paren": 2, "not": 2, "clause": 3,
             "words": 4}  # fmt: skip
    found.sort(key=lambda c: (not c.explicit, order[c.shape], -len(c.items)))
    out: list[LabelList] = []
    for cand in found:
        key = [i.lower() for i in cand.items]
        if all(key != [i.lower() for i in o.items] for o in out):
            out.append(cand)
    return out


def find_label_lists(text: str) -> list[list[str]]:
    """Candidate label lists written in prose ("as billing, bug or other"), best first."""
    return [list(c.items) for c in label_lists(text)]


def demo_label_set(outputs: list[str], cued: bool = False) -> list[str]:
    """The label set the demonstrations' outputs show, or [] when they look like free text.

    Outputs are labels when they are short (three words at most) and repeat within a small set; with a
    classification cue in the instruction (`cued`), short distinct outputs count too.
    """
    distinct = list(dict.fromkeys(o.strip() for o in outputs if o.strip()))
    if len(distinct) < 2 or not all(len(o.split()) <= 3 and len(o) <= 30 for o in distinct):
        return []
    if not all(re.match(r"[^\W_]", o) and not re.search(r"[()\[\]=]", o) for o in distinct):
        return []
    first: dict[str, str] = {}
    for o in distinct:
        first.setdefault(o.lower(), o)
    return list(first.values()) if len(first) < len(outputs) or cued else []
