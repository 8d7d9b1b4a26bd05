"""Data-to-text records: sampling new records from the demonstrations' fields and values, and widening
name fields with recombined and invented names so a student learns to copy names rather than recall a few.

Used by the data-to-text generator (tools/generate_seq.py) and by distillation (tools/kinds/sequence.py).
"""

from __future__ import annotations

import random
import re
from functools import cache

from p2m.errors import ConfigError
from p2m.tools.parse import record_fields
from p2m.tools.seq_checks import norm

__all__ = ["adapt_demonstration", "format_record", "sample_record", "name_like", "name_words", "invent_names", "record_pools",
           "widen_pools", "new_records", "widen_names", "like_values", "VALUE_SIMILARITY"]  # fmt: skip


def format_record(record: list[tuple[str, str]], style: str = "bracket") -> str:
    """A record as the demonstrations write it: `name[X], area[Y]` (bracket) or `name: X, area: Y` (colon)."""
    if style == "bracket":
        return ", ".join(f"{k}[{v}]" for k, v in record)
    return ", ".join(f"{k}: {v}" for k, v in record)


def sample_record(fields: list[str], pools: dict[str, list[str]], presence: dict[str, float],
                  rng: random.Random) -> list[tuple[str, str]]:  # fmt: skip
    """A record with the fields in demonstration order, each present as often as in the demonstrations."""
    record = [
        (f, rng.choice(pools[f])) for f in fields if pools.get(f) and rng.random() < presence.get(f, 0.5)
    ]
    if len(record) < 2:
        record = [(f, rng.choice(pools[f])) for f in fields[:2] if pools.get(f)]
    return record


_GLUE = {"the", "of", "and", "&", "at", "on", "in", "de", "la", "le", "du", "del"}
_NOT_NAMES = {"rape", "raped", "sexy", "porn", "nazi", "nazis", "slave", "slaves", "suicide", "murder", "kill",
              "killed", "drugs", "abuse", "penis", "vagina", "fuck", "shit", "cancer", "dead", "death"}  # fmt: skip


def name_like(values: list[str]) -> bool:
    """Whether a field holds proper names: every word capitalised (or a joining word such as "of"), no
    digits, and at least one value of two or more words ("Crowne Plaza Hotel", "The Punter")."""

    def one(v: str) -> bool:
        words = v.split()
        return (
            bool(words)
            and words[0][:1].isupper()
            and all(w[:1].isupper() and not any(c.isdigit() for c in w) or w.lower() in _GLUE for w in words)
        )

    return bool(values) and all(one(v) for v in values) and any(len(v.split()) >= 2 for v in values)


@cache
def name_words() -> tuple[str, ...]:
    """Plain English words to invent names from: the embedder's own WordPiece vocabulary (shipped with
    p2m, roughly frequency-ordered), common words only, no plurals, verb forms or adverbs."""
    from p2m.tools.embed import default_student_path

    try:
        vocab = (default_student_path() / "vocab.txt").read_text(encoding="utf-8").split("\n")
    except (OSError, ConfigError):  # no vocabulary: recombination only
        return ()
    return tuple(
        w for w in vocab[2500:14000]
        if re.fullmatch(r"[a-z]{4,9}", w) and not re.search(r"(?:ed|ing|ly|s)$", w) and w not in _NOT_NAMES
    )  # fmt: skip


def invent_names(values: list[str], n: int, rng: random.Random, avoid: set[str] = frozenset()) -> list[str]:
    """`n` new names shaped like `values` ("The Golden Palace" → "The Harbour Castle"): each capitalised
    word replaced by a random common English word (the last one kept half the time when there are
    two or more); joining words kept; no word of `avoid` (other
    fields' values, so a name never reads as one of them)."""
    words = [w for w in name_words() if w not in avoid]
    out: list[str] = []
    seen = {norm(v) for v in values}
    for _ in range(n * 10):
        if len(out) >= n or not words:
            break
        shape = rng.choice(values).split()
        new = [w if w.lower() in _GLUE else rng.choice(words).capitalize() for w in shape]
        if sum(w.lower() not in _GLUE for w in shape) >= 2 and rng.random() < 0.5:
            new[-1] = shape[-1]  # often a kind of place: "… Hotel", "… House"
        name = " ".join(new)
        if norm(name) not in seen:
            seen.add(norm(name))
            out.append(name)
    return out


def record_pools(records: list[list[tuple[str, str]]], least: float = 0.0
                 ) -> tuple[list[str], dict[str, list[str]], dict[str, float]]:  # fmt: skip
    """(fields in first-seen order, each field's distinct values, how often each field is present (at
    least `least`)) of some records."""
    fields = list(dict.fromkeys(f for r in records for f, _ in r))
    pools = {f: list(dict.fromkeys(v for r in records for g, v in r if g == f)) for f in fields}
    presence = {f: max(least, sum(any(g == f for g, _ in r) for r in records) / len(records)) for f in fields}
    return fields, pools, presence


def widen_pools(pools: dict[str, list[str]], invent: int, rng: random.Random) -> None:
    """`widen_names` on every field, in place; invented names avoid the other fields' words."""
    for f in pools:
        avoid = {w for g in pools if g != f for v in pools[g] for w in norm(v).split()}
        pools[f] = widen_names(pools[f], invent=invent, rng=rng, avoid=avoid)


def new_records(inputs: list[str], n: int, rng: random.Random, invent: int = 64
                ) -> tuple[list[list[tuple[str, str]]], dict[str, list[str]], str]:  # fmt: skip
    """`n` records not among `inputs`, sampled from their fields and values (each field as often as
    there, name fields widened with `invent` invented names): inputs for a student to label itself
    (distillation, agent/pipeline_seq.py). Returns (records, pools, style); fewer when the inputs
    allow fewer distinct records."""
    records = [r for r in (record_fields(x) for x in inputs) if len(r) >= 2]
    if not records:
        return [], {}, "bracket"
    fields, pools, presence = record_pools(records)
    widen_pools(pools, invent, rng)
    style = "bracket" if any("[" in x for x in inputs) else "colon"
    seen, out = {format_record(r, style) for r in records}, []
    for _ in range(20 * n):
        if len(out) >= n:
            break
        r = sample_record(fields, pools, presence, rng)
        key = format_record(r, style)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out, pools, style


def widen_names(values: list[str], cap: int = 16, invent: int = 0, rng: random.Random | None = None,
                avoid: set[str] = frozenset()) -> list[str]:  # fmt: skip
    """More proper names from a field's names, so a student learns to copy names rather than remember a
    few: first by recombining them ("The Golden Palace" + "Browns Cambridge" → "The Golden Cambridge",
    "Browns Palace", up to `cap`), then `invent` names made of other English words (`invent_names`).

    Only for fields whose values are names (`name_like`); others are returned as they are.
    """
    if not name_like(values):
        return values
    out = list(values)
    heads = [v.rsplit(" ", 1)[0] for v in values if " " in v] + [v for v in values if " " not in v]
    tails = [v.rsplit(" ", 1)[1] for v in values if " " in v]
    for head in heads:
        for tail in tails:
            name = f"{head} {tail}"
            if len(out) >= cap:
                break
            if name not in out and norm(tail) not in norm(head):
                out.append(name)
    if invent:
        out += invent_names(values, invent, rng or random.Random(0), avoid)
    return out


VALUE_SIMILARITY = 0.4  # a proposed field value is kept when this close to one of the examples' (cosine)


def like_values(new: list[str], given: list[str]) -> list[str]:
    """The proposed values that resemble a given one (all-MiniLM-L6-v2 cosine ≥ VALUE_SIMILARITY): the
    135M teacher asked for more foods answers "health", "love", "fitness" (0.22–0.32 to "English" /
    "Chinese"; "French", "Japanese", "Italian" 0.54–0.71)."""
    if not new or not given:
        return []
    from p2m.tools.embed import embed

    sims = embed(new) @ embed(given).T
    return [v for v, row in zip(new, sims, strict=True) if float(row.max()) >= VALUE_SIMILARITY]


def adapt_demonstration(inp: str, out: str, record: list[tuple[str, str]], pools: dict[str, list[str]],
                        rng: random.Random, style: str = "bracket") -> tuple[str, str]:  # fmt: skip
    """A demonstration rewritten to hold the request's values: each value its text names is replaced, in
    the record and the text, by the request record's value of that field (else a random pool value).

    A small teacher copies its examples' names and values into every answer ("The Golden Palace" for any
    record); with the examples carrying the request's values, what it copies is what the record says.
    Yes/no values are kept (the text's wording carries them).
    """
    want = dict(record)
    fields, text = [], out
    for f, v in record_fields(inp):
        new = want.get(f) or (rng.choice(pools[f]) if pools.get(f) else v)
        hit = re.search(rf"(?<!\w){re.escape(v)}(?!\w)", text, re.I)
        if norm(v) in ("yes", "no") or hit is None or norm(new) in ("yes", "no"):
            fields.append((f, v))
            continue
        text = text[: hit.start()] + new + text[hit.end() :]
        fields.append((f, new))
    return format_record(fields, style), text
