"""Build the "related labelled data set" of the issue-4 acceptance run: a local news CSV for ag_news.

It takes the bench task's train.jsonl (never test.jsonl), and writes it the way such data usually
arrives: other column names (`article`, `section`), AG's original class names ("World", "Sports",
"Business", "Sci/Tech") instead of the task's words, and extra columns p2m must ignore. The run then
has to find it in the index, pick the right columns and map the labels by itself.

    python bench/make_related_news.py ../shared/bench-data/ag_news/train.jsonl /tmp/related-news
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

NAMES = {"world": "World", "sports": "Sports", "business": "Business", "technology": "Sci/Tech"}


def main(src: str, out_dir: str) -> None:
    rows = [json.loads(line) for line in Path(src).read_text().splitlines() if line.strip()]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "news.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "article", "section", "words"])
        for i, r in enumerate(rows):
            w.writerow([1000 + i, r["input"], NAMES[r["output"]], len(r["input"].split())])
    print(f"wrote {len(rows)} rows to {out / 'news.csv'}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
