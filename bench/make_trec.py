"""Build a third classification bench task: TREC question types (Li & Roth 2002, 6 coarse classes).

Source: the TREC files of harvardnlp/sent-conv-torch (data/TREC.train.all, data/TREC.test.all; one
"<class> <tokenised question>" per line, classes 0 DESC 1 ENTY 2 ABBR 3 HUM 4 LOC 5 NUM). The folder
follows the bench contract (ARCHITECTURE.md): test.jsonl is all 500 rows of the official test file;
the prompt's three demonstrations and train.jsonl (a stratified sample, for the ceiling only) come from
the train file, never from test. Questions are detokenised ("Australia 's" -> "Australia's").

    git -C <mirror of harvardnlp/sent-conv-torch> show HEAD:data/TREC.train.all > /tmp/TREC.train.all
    git -C <mirror> show HEAD:data/TREC.test.all > /tmp/TREC.test.all
    python bench/make_trec.py /tmp/TREC.train.all /tmp/TREC.test.all /tmp/bench-trec
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

LABELS = ["description", "entity", "abbreviation", "person", "location", "number"]
PROMPT = (
    "Classify each question by the kind of answer it asks for: description (a definition, reason or "
    "manner), entity (a thing such as an animal, colour, food, product or event), abbreviation (what a "
    "short form stands for), person (a person or group of people), location (a place), or number (a "
    "count, date, size, amount or other quantity). Answer with the one word only."
)
TRAIN_ROWS = 1000


def detok(text: str) -> str:
    text = text.replace("``", '"').replace("''", '"').replace("` ", "'")
    text = re.sub(r" (\?|\.|,|!|;|:|'s|'re|n't|'ll|'ve|'d|'m|')(?=[\s?.,!]|$)", r"\1", text)
    text = re.sub(r'" (.*?) "', r'"\1"', text)
    return re.sub(r"\s+", " ", text).strip()


def read(path: str) -> list[dict]:
    rows = []
    for line in Path(path).read_text(encoding="latin-1").splitlines():
        if line.strip():
            cls, text = line.split(" ", 1)
            rows.append({"input": detok(text), "output": LABELS[int(cls)]})
    return rows


def main(train_path: str, test_path: str, out_dir: str) -> None:
    train, test = read(train_path), read(test_path)
    test_inputs = {r["input"].lower() for r in test}
    train = [r for r in train if r["input"].lower() not in test_inputs]
    rng = random.Random(0)
    rng.shuffle(train)
    demos = []
    for label in ("number", "person", "description"):  # three demonstrations, as the other tasks have
        demos.append(next(r for r in train if r["output"] == label and r not in demos))
    rest = [r for r in train if r not in demos]
    by_label = {lab: [r for r in rest if r["output"] == lab] for lab in LABELS}
    sample = []
    for lab, rows in by_label.items():  # stratified: the train file's label shares
        sample += rows[: round(TRAIN_ROWS * len(rows) / len(rest))]
    rng.shuffle(sample)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shots = "".join(f"\n\nInput: {r['input']}\nOutput: {r['output']}" for r in demos)
    task = {"name": "trec", "task_type": "classification", "labels": LABELS, "metric": "accuracy",
            "prompt": PROMPT + shots}  # fmt: skip
    (out / "task.json").write_text(json.dumps(task, indent=2) + "\n")
    for name, rows in (("test.jsonl", test), ("train.jsonl", sample)):
        (out / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {len(test)} test rows, {len(sample)} train rows, 3 demonstrations to {out}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
