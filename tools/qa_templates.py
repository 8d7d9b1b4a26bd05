"""Questions written from the answer's own sentence, without an LLM ("cloze → question").

The classic rewrite used for unsupervised extractive-QA data (Lewis et al. 2019, "Unsupervised
Question Answering by Cloze Translation"): take the sentence that holds the answer span, pick a
wh-word from the span's type (a year → "In what year", a date → "When", a count → "How many
<noun>", a measure → "How many <unit>", a person-like name → "Who", a place after "in"/"at" →
"Where", other names → "What"), remove the span and move the auxiliary or add "did"/"does" where
that is cheap ("X was opened in 1926 by Y." → "In what year was X opened by Y?"). When the
sentence does not fit, the fallback is "<Wh> <the sentence without the span>?": clumsy, but it
still teaches a reader to match the question's words to the passage and copy the gap.

`template_question(passage, answer)` returns (question, answer) — the answer may shrink to its
number ("120 stalls" asked as "How many stalls …" is answered "120") and stays a verbatim span.
"""

from __future__ import annotations

import re

__all__ = ["template_question", "object_spans", "wh_word", "lemma"]

_MONTH = r"(?:January|February|March|April|May|June|July|August|September|October|November|December)"
_YEAR = re.compile(r"^(?:1[0-9]{3}|20[0-9]{2})$")
_NUMBER = re.compile(r"^(\d[\d,.]*)(?:\s+(.+))?$")
_MEASURE = {
    "%": "What percentage", "percent": "What percentage", "euros": "How much", "dollars": "How much",
    "pounds": "How much", "million": "How many", "billion": "How many",
}  # fmt: skip
# units a measure keeps in its answer ("310 metres"); a count is answered by its number ("120 stalls" → "120")
_MEASURE_UNITS = {"km", "kilometres", "kilometers", "metres", "meters", "miles", "kg", "tons", "tonnes", "feet",
                  "years", "days", "hours", "minutes", "seconds", "weeks", "months", "degrees"}  # fmt: skip
_HOW_ADJ = ("long", "high", "tall", "deep", "wide", "old", "far", "heavy", "large")
_NUMBER_MODIFIERS = re.compile(
    r"(?:\b(?:more|fewer|less) than|\b(?:about|over|around|nearly|almost|some|approximately|roughly|"
    r"under|at least|up to|only|just))\s*$",
    re.I,
)
_TIME_PREP = re.compile(r"\b(?:in|on|at|during|since|until|by|from|before|after|around)\s*$", re.I)
_PLACE_PREP = re.compile(r"\b(?:in|at|near|from|to|into|across|outside|inside)\s*$", re.I)
_TITLES = {"King", "Queen", "Saint", "St", "Sir", "Dr", "Mr", "Mrs", "Ms", "Lady", "Lord", "President",
           "Prince", "Princess", "Captain", "General", "Professor", "Emperor", "Pope"}  # fmt: skip
_THING_WORDS = {
    "Bridge", "River", "Museum", "Park", "Street", "Road", "Club", "Company", "University", "School", "College",
    "Island", "Islands", "Mountain", "Mountains", "Mount", "Lake", "City", "Town", "Village", "Hall", "Church",
    "Cathedral", "Castle", "Tower", "Station", "Railway", "Line", "Festival", "Prize", "Award", "Cup", "League",
    "Party", "Society", "Institute", "Library", "Hospital", "Airport", "Harbour", "Harbor", "Bay", "Sea",
    "Ocean", "Valley", "Forest", "Garden", "Gardens", "Square", "Palace", "Theatre", "Theater", "Centre",
    "Center", "Hotel", "Market", "Stadium", "Gallery", "Orchestra", "Band", "Group", "Team", "Inc", "Ltd",
    "Ministry", "Council", "Empire", "Kingdom", "Republic", "Act", "War", "Treaty", "Mission", "Project",
    "Desert", "Canal", "Falls", "Peak", "Province", "County", "State", "Region", "Coast",
}  # fmt: skip
_AUX = {"is", "are", "was", "were", "can", "could", "will", "would", "may", "might", "must", "should",
        "shall", "does", "do", "did"}  # fmt: skip
_HAVE = {"has", "have", "had"}
_IRREGULAR = {
    "began": "begin", "became": "become", "built": "build", "won": "win", "wrote": "write", "made": "make",
    "took": "take", "gave": "give", "left": "leave", "led": "lead", "grew": "grow", "ran": "run",
    "sold": "sell", "held": "hold", "came": "come", "went": "go", "bought": "buy", "brought": "bring",
    "taught": "teach", "met": "meet", "saw": "see", "flew": "fly", "fell": "fall", "rose": "rise",
    "drew": "draw", "sang": "sing", "spent": "spend", "lost": "lose", "kept": "keep", "told": "tell",
    "said": "say", "got": "get", "knew": "know", "found": "find", "set": "set", "put": "put", "cost": "cost",
    "lay": "lie", "stood": "stand", "fought": "fight", "thought": "think", "wore": "wear", "chose": "choose",
    "drove": "drive", "ate": "eat", "spoke": "speak", "broke": "break", "struck": "strike", "sent": "send",
    "swam": "swim", "shot": "shoot", "sat": "sit", "paid": "pay", "laid": "lay", "meant": "mean",
    "heard": "hear", "felt": "feel", "dug": "dig", "hung": "hang", "threw": "throw", "shook": "shake",
}  # fmt: skip
_PARTICIPLE_PAST = {
    "written": "wrote", "drawn": "drew", "given": "gave", "taken": "took", "sung": "sang", "begun": "began",
    "known": "knew", "shown": "showed", "grown": "grew", "done": "did", "seen": "saw", "chosen": "chose",
    "driven": "drove", "eaten": "ate", "flown": "flew", "stolen": "stole", "spoken": "spoke", "ridden": "rode",
    "broken": "broke", "worn": "wore", "thrown": "threw", "beaten": "beat", "sunk": "sank", "swum": "swam",
}  # fmt: skip
_PARTICIPLES = set(_PARTICIPLE_PAST) | set("been built made won held led sold found kept".split())
_PRESENT = {
    "has": "have", "lives": "live", "carries": "carry", "contains": "contain", "includes": "include",
    "runs": "run", "flows": "flow", "holds": "hold", "covers": "cover", "measures": "measure",
    "serves": "serve", "attracts": "attract", "hosts": "host", "features": "feature", "offers": "offer",
    "stands": "stand", "lies": "lie", "makes": "make", "takes": "take", "uses": "use", "shows": "show",
    "produces": "produce", "employs": "employ", "weighs": "weigh", "costs": "cost", "reaches": "reach",
    "connects": "connect", "crosses": "cross", "houses": "house", "owns": "own", "plays": "play",
    "sells": "sell", "grows": "grow", "eats": "eat", "feeds": "feed", "visits": "visit", "opens": "open",
}  # fmt: skip
_NOT_VERBS = {"hundred", "red", "bed", "seed", "speed", "need", "feed", "shed", "sacred", "naked", "wicked",
              "beloved", "aged", "skilled", "famed", "noted", "united", "wooded", "gifted", "talented"}  # fmt: skip
_LOWER_FIRST = {"The", "A", "An", "It", "Its", "This", "That", "These", "Those", "They", "He", "She", "His",
                "Her", "Their", "Most", "Many", "Some", "Each", "Every", "All", "There", "We", "Our"}  # fmt: skip
# regular past forms whose base ends in "e" (created → create, moved → move, decided → decide)
_E_ENDINGS = ("ated", "ized", "ised", "used", "osed", "ced", "ved", "ged", "ured", "ored", "ired", "ared",
              "bled", "tled", "dled", "pled", "kled", "gled", "uted", "oted", "ided", "uded", "aded",
              "ined", "iled", "uled")  # fmt: skip
_NO_E = ("ained", "oined", "eined", "ailed", "oiled", "eared", "aired", "eered", "ooled", "oaded")


def lemma(verb: str) -> str:
    """The base form of a past or third-person verb, by rule ("opened" → "open", "moved" → "move")."""
    v = verb.lower()
    if v in _IRREGULAR:
        return _IRREGULAR[v]
    if v in _PRESENT:
        return _PRESENT[v]
    if v.endswith("ied"):
        return v[:-3] + "y"
    if v.endswith("ed"):
        stem = v[:-2]
        if len(stem) > 2 and stem[-1] == stem[-2] and stem[-1] not in "lsfz":
            return stem[:-1]  # stopped → stop
        if v.endswith(_NO_E):
            return stem  # gained, joined, appeared
        return stem + "e" if v.endswith(_E_ENDINGS) else stem
    if v.endswith("s") and not v.endswith("ss"):
        return v[:-1]
    return v


def _past(participle: str) -> str:
    return _PARTICIPLE_PAST.get(participle.lower(), participle)


def _is_past(word: str) -> bool:
    w = word.lower()
    return w in _IRREGULAR or (w.endswith("ed") and len(w) > 4 and w not in _NOT_VERBS)


_PRONOUNS = {"it", "he", "she", "this", "that", "everyone", "nobody"}
_ADVERBS = set("last later first then also still never once soon now only again".split())


def _verb_at(tokens: list[str]) -> tuple[int, str] | None:
    """(index, kind) of the first verb of a clause: kind "aux", "past" or "present"; None when none is seen."""
    for i, tok in enumerate(tokens):
        w = tok.lower().strip(",;:")
        if i == 0 or not w.isalpha() or tok[0].isupper():
            continue
        if w in _AUX:
            return i, "aux"
        if w in _HAVE:
            nxt = tokens[i + 1].lower() if i + 1 < len(tokens) else ""
            if _is_past(nxt) or nxt in _PARTICIPLES:
                return i, "aux"
            return i, "past" if w == "had" else "present"
        if _is_past(w):
            return i, "past"
        if w in _PRESENT or (w.endswith("s") and tokens[i - 1].lower() in _PRONOUNS and i == 1):
            return i, "present"
    return None


_PART_OF_PHRASE = re.compile(
    r"\b(?:(?:in|on|at|to)\s+)?(?:the\s+)?(?:north|south|east|west|centre|center|capital|coast|edge|heart|"
    r"middle) of\s*$",
    re.I,
)
_PART_OF = re.compile(
    r"\b(?:north|south|east|west|centre|center|capital|coast|edge|heart|middle) of\s*$", re.I
)


def _name_wh(answer: str, before: str) -> str:
    words = answer.split()
    if (_PLACE_PREP.search(before) or _PART_OF.search(before)) and not re.search(r"\bby\s*$", before):
        return "Where"
    if words[0] in _TITLES or re.search(r"\b(?:by|mayor|king|queen|founder|author|painter|president),?\s*$",
                                        before, re.I):  # fmt: skip
        return "Who"
    if any(w in _THING_WORDS for w in words) or words[0] == "The" or not answer[0].isupper():
        return "What"  # a thing, or a common noun phrase ("coal", "a wooden roof")
    return "Who" if 2 <= len(words) <= 3 else "What"


def wh_word(answer: str, before: str = "", after: str = "") -> str:
    """The wh-phrase that asks for `answer` given the text just before and after it in its sentence."""
    return _plan(answer, before, after)[0]


def _plan(answer: str, before: str, after: str) -> tuple[str, str, str, str]:
    """(wh-phrase, answer, before, after): the answer may lose its unit and the context a word that
    moves into the wh-phrase ("120 stalls" → "How many stalls", answer "120")."""
    a = answer.strip()
    if _YEAR.match(a):
        return "In what year", a, _TIME_PREP.sub("", before), after
    if re.match(_MONTH, a) or re.match(rf"^\d{{1,2}}\s+{_MONTH}", a):
        return "When", a, _TIME_PREP.sub("", before), after
    m = _NUMBER.match(a)
    if m:
        number, unit = m.group(1), (m.group(2) or "")
        before = _NUMBER_MODIFIERS.sub("", before)
        if before.rstrip().endswith(("$", "£", "€")):
            return "How much", a, before.rstrip()[:-1], after
        adj = re.match(rf"\s*({'|'.join(_HOW_ADJ)})\b", after)
        if adj:
            return f"How {adj.group(1)}", a, before, after[adj.end() :]
        if unit in _MEASURE and unit not in ("million", "billion"):
            return _MEASURE[unit], a, before, after
        if unit in _MEASURE_UNITS:
            return f"How many {unit}", a, before, after
        if unit and unit not in ("million", "billion"):
            return f"How many {unit}", number, before, after
        noun = re.match(r"\s*([a-z][a-z-]+(?:\s+of\s+[a-z][a-z-]+)?)", after)
        if noun and noun.group(1).split()[0] not in _NOUNLESS:
            return f"How many {noun.group(1)}", a, before, after[noun.end() :]
        return "How many", a, before, after
    wh = _name_wh(a, before)
    if wh == "Where":
        before = _PART_OF_PHRASE.sub("", before) if _PART_OF.search(before) else _PLACE_PREP.sub("", before)
    return wh, a, before, after


_NOUNLESS = {"and", "or", "in", "on", "at", "to", "of", "for", "by", "with", "from", "is", "are", "was", "were",
             "the", "a", "an", "times", "than", "per", "each", "years", "days", "hours", "minutes"}  # fmt: skip


def _sentence(passage: str, start: int) -> tuple[str, int]:
    """The sentence of `passage` around character `start`, and where it begins."""
    begin = 0
    for m in re.finditer(r"[.!?](?=\s+[A-Z0-9\"'])", passage):
        if m.end() > start:
            return passage[begin : m.end()].strip(), begin + (
                len(passage[begin:]) - len(passage[begin:].lstrip())
            )
        begin = m.end()
    rest = passage[begin:]
    return rest.strip(), begin + (len(rest) - len(rest.lstrip()))


def _tidy(text: str) -> str:
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+([,;:])", r"\1", text)
    text = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", text)
    text = re.sub(r"[\s,;:]+$", "", text)
    text = re.sub(r"\b(?:and|or|the|a|an),?$", "", text).rstrip(" ,;:")
    return text.strip()


def _lower_first(tokens: list[str]) -> list[str]:
    if tokens and tokens[0] in _LOWER_FIRST:
        return [tokens[0].lower(), *tokens[1:]]
    return tokens


_FRONTED = re.compile(
    r"^((?:In|On|At|During|After|Before|By|Since|From|Until|Later|Today|Now|Every|Each)\b[^,]{0,40}),\s*(.+)$",
    re.S,
)
_CONJ = re.compile(r"(?:,\s*|\s+)(?:and|but|while|whereas|which|where|who|because|so|although)\s+")


def _starts_with_verb(tokens: list[str]) -> int | None:
    """Where the verb is when `tokens` start with one, after adverbs ("last erupted"); else None."""
    lead = 0
    while lead < len(tokens) and (tokens[lead].lower() in _ADVERBS or tokens[lead].lower().endswith("ly")):
        lead += 1
    if lead < len(tokens) and _verb_at(["_", tokens[lead]]) is not None:
        return lead
    return None


def _clauses(before: str, after: str) -> tuple[str, str]:
    """The answer's own clause: a fronted phrase ("In 1926, X …") moves to the end, a clause joined by
    "and" after the answer is cut, and one before it keeps the sentence's subject ("It is long and was
    designed by" → "It was designed by")."""
    if m := _FRONTED.match(before):
        before, after = m.group(2), f"{after} {m.group(1)[0].lower()}{m.group(1)[1:]}"
    for m in _CONJ.finditer(after):
        if _starts_with_verb(after[m.end() :].split()) is not None:
            after = after[: m.start()]
            break
    for m in reversed(list(_CONJ.finditer(before))):
        head, tail = before[: m.start()].split(), before[m.end() :].split()
        if not tail:
            continue
        if _starts_with_verb(tail) is not None:  # a shared subject: "… and was designed by"
            found = _verb_at(head)
            if found is not None:
                before = " ".join([*head[: found[0]], *tail]) + " "
            break
        if _verb_at(tail) is not None:  # a clause of its own: "… and it was designed by"
            before = " ".join(tail) + " "
            break
    return before, after


def _invert(wh: str, clause: str) -> str | None:
    """`wh` + the clause with its auxiliary moved ahead of the subject or a "did"/"does" added."""
    tokens = clause.split()
    found = _verb_at(tokens)
    if found is None:
        return None
    i, kind = found
    subject, verb, rest = _lower_first(tokens[:i]), tokens[i], tokens[i + 1 :]
    if kind == "aux":
        return " ".join([wh, verb.lower(), *subject, *rest])
    do = "did" if kind == "past" else ("do" if verb.lower() == "have" else "does")
    return " ".join([wh, do, *subject, lemma(verb), *rest])


def template_question(passage: str, answer: str) -> tuple[str, str] | None:
    """A wh-question for `answer` written from its sentence in `passage`, and the answer it asks for.

    Args:
        passage: the passage; `answer` must occur in it verbatim (its first occurrence is used).
        answer: a short span: a year, a date, a number (with a unit) or a name.

    Returns:
        (question, answer) — the answer unchanged or shortened to its leading number, still a span of
        the passage — or None when `answer` is not in `passage` or no question with words left can be made.
    """
    start = passage.find(answer) if answer else -1
    if start < 0:
        return None
    sentence, s0 = _sentence(passage, start)
    at = start - s0
    before = sentence[:at]
    after = re.sub(r"[.!?]+$", "", sentence[at + len(answer) :].rstrip())
    wh, answer, before, after = _plan(answer, before, after)
    before, after = _clauses(before, after)
    if wh == "Who" and (m := re.match(r"^(.*\bby)\s+(?:the\s+|a\s+|an\s+)?[a-z ]{1,30},\s*$", before)):
        before = m.group(1)  # "opened by the mayor, Rosa Lind": asked as "Who opened …?"
    b_tokens = before.split()
    question = None
    # "X was opened by Y" asked for Y: "Who opened X?" (the active voice people ask in)
    passive = re.match(r"^(?P<subj>.+?)\s+(?:was|were)\s+(?P<part>[a-z]+)\b(?P<mid>.*?)\bby\s*$", before)
    if wh in ("Who", "What") and passive and (_is_past(passive["part"]) or passive["part"] in _PARTICIPLES):
        subj = " ".join(_lower_first(passive["subj"].split()))
        question = f"{wh} {_past(passive['part'])} {subj} {passive['mid']} {after}"
    elif not b_tokens or _verb_at([*b_tokens, "_"]) is None:
        # the span is in the subject or a fronted phrase ("In 1926, X was opened")
        if re.match(r"^\s*,", after):
            question = _invert(wh, after.lstrip(" ,"))
        elif b_tokens and (m := re.match(r"^(?:The|A|An)\s+([a-z]+)\s+(?:of|called|named)\s*$", before)):
            question = f"Which {m.group(1)} {after}" if wh == "What" else f"{wh} {after}"
        else:
            after_tokens = after.split()
            found = _verb_at(["_", *after_tokens])
            if found is not None:
                question = " ".join([wh, *after_tokens[found[0] - 1 :]])
    else:
        question = _invert(wh, f"{before} {after}")
    if question is None:
        question = f"{wh} {_tidy(before)} {after}"
    question = _tidy(question)
    if len(question.split()) < 3:
        return None
    return question[0].upper() + question[1:] + "?", answer


_DETERMINERS = set("the a an its their his her some many several".split())
_NP_STOP = set(
    "in on at of for with by as and or but to from into over under after before during than that which who "
    "where when while because so is are was were be been it its this these those there then also very".split()
)


def _clause_spans(passage: str, sentence: re.Match) -> list[tuple[int, re.Match]]:
    """The clauses of a sentence joined by "and"/"but" as (1 if it is a joined one, match in `passage`)."""
    out, begin = [], sentence.start()
    for m in re.finditer(r"(?:,\s*|\s+)(?:and|but)\s+", sentence.group(0)):
        out.append((0 if not out else 1, begin, sentence.start() + m.start()))
        begin = sentence.start() + m.end()
    out.append((0 if not out else 1, begin, sentence.end()))
    return [(k, re.compile(r".+", re.S).match(passage, b, e)) for k, b, e in out if e > b]


def object_spans(passage: str) -> list[tuple[int, str]]:
    """(offset, span) of the noun phrase right after each sentence's main verb ("carried coal", "stages new
    plays"): the common-noun answers that dates, numbers and names miss. An optional determiner and one to
    three lower-case words, up to a preposition, conjunction or punctuation."""
    out = []
    clauses = (c for s in re.finditer(r"[^.!?]+[.!?]?", passage) for c in _clause_spans(passage, s))
    for k, m in clauses:
        words = list(re.finditer(r"\S+", m.group(0)))
        found = _verb_at(["_"] * k + [w.group(0) for w in words])  # a joined clause has no subject
        found = (found[0] - k, found[1]) if found else None
        first = words[0].group(0) if words else ""
        if found is None and k and first.isalpha() and first.islower() and first.endswith(("s", "ed")):
            found = (0, "present" if first.endswith("s") else "past")  # "… and stages new plays"
        if found is None:
            continue
        i = found[0] + 1
        while i < len(words) and words[i].group(0).lower() in _AUX | _PARTICIPLES | _ADVERBS:
            i += 1  # "has been used", "was also built": the object comes after the verb group
        if found[1] == "aux" and i < len(words) and _is_past(words[i].group(0)):
            i += 1
        np: list[re.Match] = []
        for w in words[i : i + 5]:
            tok = w.group(0)
            core = tok.rstrip(",.;:!?")
            if not core.isalpha() or not core.islower() or core in _NP_STOP:
                break
            if not np and (core.endswith(("ed", "ing")) or core in _PARTICIPLES):
                break  # a verb form ("has been used by"), not a noun phrase
            if core in _DETERMINERS and np:
                break
            np.append(w)
            if core != tok or len(np) == 4:
                break  # punctuation ends the phrase
        while np and np[-1].group(0).rstrip(",.;:!?") in _DETERMINERS:
            np.pop()
        if not np or all(w.group(0).rstrip(",.;:!?") in _DETERMINERS for w in np):
            continue
        start, end = m.start() + np[0].start(), m.start() + np[-1].end()
        span = passage[start:end].rstrip(",.;:!?")
        out.append((start, span))
    return out
