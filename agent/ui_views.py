"""The web app's pure conversions: store records → what the widgets show, and the checks of what a page sends.

Tested without a browser (tests/test_ui.py); agent/ui.py re-exports them. Every score shown says which
rows it is on: real rows first, then teacher-written rows, each with its rows and 90% interval.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from p2m.agent.versions import estimate_text, estimates_of, scores_line
from p2m.errors import ConfigError, DataError
from p2m.memory import RunStore

__all__ = ["chat_view", "status_view", "data_rows", "parse_ids", "history_rows", "upload_path", "plot_path",
           "DATA_COLUMNS", "HISTORY_COLUMNS"]  # fmt: skip

DATA_COLUMNS = ["id", "output (label)", "input", "kept", "drop reason", "split", "source"]
HISTORY_COLUMNS = ["session", "status", "stage", "versions", "latest, real rows", "latest, teacher-written rows",
                   "task", "started"]  # fmt: skip
_STAGES = ["generate", "curate", "train", "deploy", "done"]


def chat_view(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Chatbot messages from stored turns; every `<` is escaped, so markup shows as text and never runs.

    Only `<` is escaped: no tag can start without it, and `&`/`>` left alone keep `a -> b` readable
    inside markdown code spans (where entities are not decoded).
    """
    return [{"role": "user" if m["role"] == "user" else "assistant", "content": m["content"].replace("<", "&lt;")}
            for m in messages]  # fmt: skip


def status_view(run: dict[str, Any] | None, ledger: dict[str, Any], versions: list[dict[str, Any]],
                busy: bool, working_on: str = "", generated: tuple[int, int] | None = None) -> tuple[str, float]:  # fmt: skip
    """The status line (markdown) and the progress fraction of the current work.

    `generated` is (examples written so far, examples wanted) for the version being made.
    """
    if run is None:
        return "No task yet: describe one in the chat.", 0.0
    stage = run["stage"] if busy or run["status"] == "running" else "done"
    part = 0.5
    if stage == "generate" and generated and generated[1]:
        part = min(1.0, generated[0] / generated[1])
    frac = (_STAGES.index(stage) + (stage != "done") * part) / (len(_STAGES) - 1) if stage in _STAGES else 0.0
    state = f"working on {html.escape(working_on)}" if busy else run["status"]
    last = versions[-1] if versions else None
    metric = f"v{last['version']} — {scores_line(last, bold=True)}" if last else "—"
    cost = (f"{ledger['calls']} LLM calls ({ledger['cached']} cached), "
            f"{ledger['prompt_tokens'] + ledger['completion_tokens']} tokens, {ledger['seconds']:.0f} s")  # fmt: skip
    bar = "█" * round(frac * 20) + "░" * (20 - round(frac * 20))
    count = f" ({generated[0]}/{generated[1]} examples)" if stage == "generate" and generated else ""
    text = (f"**Session** `{run['id']}` · **{state}** · stage **{stage}**{count} `{bar}` {frac:.0%}\n\n"
            f"**Latest** {metric}\n\n**Cost so far**: {cost}")  # fmt: skip
    if run["status"] == "failed" and run.get("error") and not busy:
        text += f"\n\n**Last error**: {html.escape(run['error'])}"
    return text, frac


def data_rows(rows: list[dict[str, Any]], limit: int = 1000) -> list[list[Any]]:
    """The data table: newest first, with provenance and why a row was dropped."""
    out = [[r["id"], r["output"], r["input"], "yes" if r["kept"] else "no", r["drop_reason"] or "", r["split"],
            r["source"]] for r in reversed(rows)]  # fmt: skip
    return out[:limit]


def parse_ids(text: str) -> list[int]:
    """Example ids typed as '12, 15 20'.

    Raises:
        ConfigError: something in it is not a number.
    """
    parts = [p for p in text.replace(",", " ").split() if p]
    bad = [p for p in parts if not p.isdigit()]
    if bad or not parts:
        raise ConfigError(f"type example ids (numbers from the id column), not {' '.join(bad) or 'nothing'}")
    return [int(p) for p in parts]


def upload_path(file: Any) -> str:
    """The path of a file gradio received, checked before the session reads it.

    Raises:
        DataError: no file, not a file, or larger than the upload limit (tools/uploads.py).
    """
    from p2m.tools.uploads import check_upload_size

    path = file if isinstance(file, str) else getattr(file, "name", None)
    if not path:
        raise DataError("no file arrived; upload a .jsonl, .csv or .txt file of examples")
    if not Path(path).is_file():
        raise DataError(f"{Path(path).name} is not a file; upload a .jsonl, .csv or .txt file of examples")
    check_upload_size(path)
    return path


def history_rows(store: RunStore, ids: list[str]) -> list[list[Any]]:
    """The run history table (HISTORY_COLUMNS): one row per chat session, newest first, with its latest
    version's scores on real rows and on teacher-written rows."""
    import time

    out = []
    for sid in reversed(ids):
        run = store.get_run(sid)
        versions = (run["config"].get("chat") or {}).get("versions") or []
        real, teacher = estimates_of(versions[-1]) if versions else (None, None)
        found = store.task_version(sid)
        task = (found[1].get("task_type") or "classification").replace("_", " ") if found else "—"
        out.append([sid, run["status"], run["stage"], len(versions),
                    estimate_text(real, "real") if versions else "—",
                    estimate_text(teacher, "teacher") if versions else "—", task,
                    time.strftime("%Y-%m-%d %H:%M", time.localtime(run["created"]))])  # fmt: skip
    return out


def plot_path(folder: Path | None) -> Path | None:
    """The picture of a session's scores: per version (real rows with their interval, then teacher-written
    rows), else per experiment; None before anything is trained."""
    if folder is None:
        return None
    return next((p for p in (folder / "versions.png", folder / "trajectory.png") if p.is_file()), None)
