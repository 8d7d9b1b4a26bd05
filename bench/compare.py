"""Tables for bench/RESULTS.md from `p2m bench` JSON files named <task>_<arm>_s<seed>.json.

Per run: the test score, the teacher calls spent, the rounds, the deployed student, the decisions; per
task and arm: the mean over seeds; then how well each validation estimate predicted the test score
(student.validation.error: test − estimate).

    python bench/compare.py bench/out/i15
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def _load(folder: Path) -> list[dict]:
    runs = []
    for p in sorted(folder.glob("*.json")):
        m = re.fullmatch(r"(.+)_(planner|fixed)_s(\d+)", p.stem)
        if m:
            runs.append({"task": m[1], "arm": m[2], "seed": int(m[3]), **json.loads(p.read_text())})
    return runs


def _unit(metric: str, x: float) -> float:
    return x / 100 if metric == "chrf" else x


def _actions(run: dict) -> str:
    acts = [d["action"] for d in run["pipeline"].get("decisions", []) if d["action"] not in ("retrieve", "select")]
    stop = next((d["reason"] for d in reversed(run["pipeline"].get("decisions", [])) if d["action"] == "stop"), "")
    return " → ".join(acts[1:]) + (f" ({stop[:100]})" if stop else "")


def main(folder: str) -> None:
    runs = _load(Path(folder))
    print("| task | seed | arm | test score | teacher calls | rounds | deployed | decisions after round 0 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in sorted(runs, key=lambda r: (r["task"], r["seed"], r["arm"] != "planner")):
        p = r["pipeline"]
        print(f"| {r['task']} | {r['seed']} | {r['arm']} | {r['student']['score']:.3f} | {p['llm_calls']} | "
              f"{(p.get('planner') or {}).get('rounds', 1)} | {r['student']['model'].split('(')[-1].rstrip(')')} | "
              f"{_actions(r)} |")  # fmt: skip
    print()
    by = defaultdict(list)
    for r in runs:
        by[(r["task"], r["arm"])].append(r)
    print("| task | metric | planner: mean score | calls | fixed: mean score | calls | planner − fixed | calls ratio |")
    print("|---|---|---|---|---|---|---|---|")
    diffs, ratios = [], []
    for task in sorted({r["task"] for r in runs}):
        pl, fx = by.get((task, "planner"), []), by.get((task, "fixed"), [])
        if not pl or not fx:
            continue
        metric = pl[0]["metric"]
        sp, sf = (statistics.mean(_unit(metric, r["student"]["score"]) for r in x) for x in (pl, fx))
        cp, cf = (statistics.mean(r["pipeline"]["llm_calls"] for r in x) for x in (pl, fx))
        diffs.append(sp - sf)
        ratios.append(cp / cf)
        print(f"| {task} | {metric} | {sp:.3f} ({len(pl)}) | {cp:.0f} | {sf:.3f} ({len(fx)}) | {cf:.0f} | "
              f"{sp - sf:+.3f} | {cp / cf:.2f} |")  # fmt: skip
    if diffs:
        print(f"\nmean over tasks (scores on a 0–1 scale): planner − fixed {statistics.mean(diffs):+.3f}, "
              f"planner calls / fixed calls {statistics.mean(ratios):.2f}")  # fmt: skip
    print("\n| estimate | runs | mean error (test − estimate) | mean absolute error | 90% interval holds the test score |")
    print("|---|---|---|---|---|")
    for which in ("teacher", "real"):
        errs = [(_unit(r["metric"], e) if e is not None else None)
                for r in runs for e in [(r["student"].get("validation") or {}).get("error", {}).get(which)]]
        errs = [e for e in errs if e is not None]  # on a 0–1 scale (chrF / 100)
        holds = [(r["student"].get("validation") or {}).get("error", {}).get("real_interval_holds_test") for r in runs]
        holds = [h for h in holds if h is not None]
        if errs:
            held = f"{sum(holds)}/{len(holds)}" if which == "real" and holds else "—"
            print(f"| {which}-written rows | {len(errs)} | {statistics.mean(errs):+.3f} | "
                  f"{statistics.mean(abs(e) for e in errs):.3f} | {held} |"
                  if which == "teacher" else
                  f"| real rows | {len(errs)} | {statistics.mean(errs):+.3f} | "
                  f"{statistics.mean(abs(e) for e in errs):.3f} | {held} |")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench/out/i15")
