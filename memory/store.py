"""SQLite run store: runs, task versions, examples with provenance, experiments, decisions, LLM ledger, chat.

Every stage writes its results here as it goes, so a run killed at any point can be resumed:
`stage_done` marks a finished stage, generated examples carry the index of the request that made
them, and the LLM ledger records every call (cached or not) for cost reports.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from p2m import faults
from p2m.errors import ConfigError, storage_error

__all__ = ["RunStore", "RUN_STATUSES"]

RUN_STATUSES = ("running", "interrupted", "failed", "complete")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  id TEXT PRIMARY KEY, created REAL, updated REAL, status TEXT, stage TEXT,
  prompt TEXT, config TEXT, folder TEXT, error TEXT
);
CREATE TABLE IF NOT EXISTS task_versions (
  run_id TEXT, version INTEGER, spec TEXT, note TEXT, created REAL,
  PRIMARY KEY (run_id, version)
);
CREATE TABLE IF NOT EXISTS examples (
  id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, input TEXT, output TEXT, source TEXT,
  split TEXT, quality TEXT, kept INTEGER DEFAULT 1, drop_reason TEXT, request_index INTEGER,
  created REAL
);
CREATE INDEX IF NOT EXISTS examples_run ON examples (run_id, split, kept);
CREATE TABLE IF NOT EXISTS stages (
  run_id TEXT, stage TEXT, info TEXT, finished REAL, PRIMARY KEY (run_id, stage)
);
CREATE TABLE IF NOT EXISTS experiments (
  id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, name TEXT, student TEXT, params TEXT,
  n_train INTEGER, report TEXT, model_path TEXT, seconds REAL, created REAL
);
CREATE TABLE IF NOT EXISTS decisions (
  id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, action TEXT, reason TEXT, by TEXT,
  args TEXT, created REAL
);
CREATE TABLE IF NOT EXISTS llm_calls (
  id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, purpose TEXT, cached INTEGER,
  prompt_tokens INTEGER, completion_tokens INTEGER, seconds REAL, created REAL
);
CREATE INDEX IF NOT EXISTS llm_calls_run ON llm_calls (run_id);
CREATE TABLE IF NOT EXISTS llm_failures (
  id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, purpose TEXT, kind TEXT, created REAL
);
CREATE INDEX IF NOT EXISTS llm_failures_run ON llm_failures (run_id);
CREATE TABLE IF NOT EXISTS chat_messages (
  id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, role TEXT, content TEXT, created REAL
);
CREATE INDEX IF NOT EXISTS chat_messages_run ON chat_messages (run_id);
"""


def _j(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


class RunStore:
    """The run store: one SQLite file under the p2m home, shared by all runs."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
            self._db.commit()
        except (OSError, sqlite3.Error) as e:
            full = storage_error(e, f"opening the run store {self.path}")
            raise full or ConfigError(f"cannot open the run store {self.path} ({e}); check P2M_HOME") from e
        self._lock = threading.RLock()

    def _exec(self, sql: str, params: tuple | list = ()) -> sqlite3.Cursor:
        with self._lock, self._db:  # commits, or rolls back on any error
            return self._db.execute(sql, params)

    def _rows(self, sql: str, params: tuple | list = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # runs -------------------------------------------------------------------------------------
    def create_run(self, run_id: str, prompt: str, config: dict[str, Any], folder: str) -> None:
        now = time.time()
        self._exec(
            "INSERT INTO runs (id, created, updated, status, stage, prompt, config, folder)"
            " VALUES (?, ?, ?, 'running', 'start', ?, ?, ?)",
            (run_id, now, now, prompt, _j(config), folder),
        )

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows:
            return None
        run = dict(rows[0])
        run["config"] = json.loads(run["config"] or "{}")
        return run

    def list_runs(self) -> list[dict[str, Any]]:
        return [
            dict(r)
            for r in self._rows("SELECT id, created, status, stage, folder FROM runs ORDER BY created")
        ]

    def set_status(
        self, run_id: str, status: str, stage: str | None = None, error: str | None = None
    ) -> None:
        assert status in RUN_STATUSES, status
        self._exec(
            "UPDATE runs SET status = ?, stage = COALESCE(?, stage), error = ?, updated = ? WHERE id = ?",
            (status, stage, error, time.time(), run_id),
        )

    def set_stage(self, run_id: str, stage: str) -> None:
        self._exec("UPDATE runs SET stage = ?, updated = ? WHERE id = ?", (stage, time.time(), run_id))
        faults.point(f"stage:{stage}")

    def update_config(self, run_id: str, config: dict[str, Any]) -> None:
        self._exec("UPDATE runs SET config = ? WHERE id = ?", (_j(config), run_id))

    # task versions ------------------------------------------------------------------------------
    def add_task_version(self, run_id: str, spec: dict[str, Any], note: str = "") -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT COALESCE(MAX(version), 0) FROM task_versions WHERE run_id = ?", (run_id,)
            ).fetchone()
            version = row[0] + 1
            self._exec(
                "INSERT INTO task_versions VALUES (?, ?, ?, ?, ?)",
                (run_id, version, _j(spec), note, time.time()),
            )
        return version

    def task_version(self, run_id: str, version: int | None = None) -> tuple[int, dict[str, Any]] | None:
        sql = "SELECT version, spec FROM task_versions WHERE run_id = ?"
        params: list[Any] = [run_id]
        if version is not None:
            sql += " AND version = ?"
            params.append(version)
        rows = self._rows(sql + " ORDER BY version DESC LIMIT 1", params)
        return (rows[0]["version"], json.loads(rows[0]["spec"])) if rows else None

    # stages -------------------------------------------------------------------------------------
    def stage_done(self, run_id: str, stage: str, info: dict[str, Any] | None = None) -> None:
        self._exec(
            "INSERT OR REPLACE INTO stages VALUES (?, ?, ?, ?)", (run_id, stage, _j(info or {}), time.time())
        )

    def stage_info(self, run_id: str, stage: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT info FROM stages WHERE run_id = ? AND stage = ?", (run_id, stage))
        return json.loads(rows[0]["info"]) if rows else None

    def stages(self, run_id: str) -> dict[str, dict[str, Any]]:
        """Every finished stage of a run and its info, in the order they finished."""
        rows = self._rows("SELECT stage, info FROM stages WHERE run_id = ? ORDER BY finished", (run_id,))
        return {r["stage"]: json.loads(r["info"]) for r in rows}

    def clear_stages(self, run_id: str, stages: list[str]) -> None:
        for stage in stages:
            self._exec("DELETE FROM stages WHERE run_id = ? AND stage = ?", (run_id, stage))

    # examples -----------------------------------------------------------------------------------
    def add_examples(self, run_id: str, rows: list[dict[str, Any]]) -> list[int]:
        """Insert example rows (keys: input, output, source, split, quality, kept, drop_reason, request_index)."""
        ids = []
        now = time.time()
        with self._lock, self._db:  # all rows or none
            for r in rows:
                cur = self._db.execute(
                    "INSERT INTO examples (run_id, input, output, source, split, quality, kept, drop_reason,"
                    " request_index, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        run_id,
                        r["input"],
                        r["output"],
                        r["source"],
                        r.get("split", "train"),
                        _j(r.get("quality", {})),
                        int(r.get("kept", True)),
                        r.get("drop_reason"),
                        r.get("request_index"),
                        now,
                    ),
                )
                ids.append(cur.lastrowid)
        faults.point("rows")
        return ids

    def examples(
        self,
        run_id: str,
        split: str | None = None,
        kept: bool | None = True,
        source_prefix: str | None = None,
    ) -> list[dict[str, Any]]:
        sql, params = "SELECT * FROM examples WHERE run_id = ?", [run_id]
        if split is not None:
            sql += " AND split = ?"
            params.append(split)
        if kept is not None:
            sql += " AND kept = ?"
            params.append(int(kept))
        if source_prefix is not None:
            sql += " AND source LIKE ?"
            params.append(source_prefix + "%")
        out = []
        for r in self._rows(sql + " ORDER BY id", params):
            d = dict(r)
            d["quality"] = json.loads(d["quality"] or "{}")
            out.append(d)
        return out

    def max_request_index(self, run_id: str) -> int:
        rows = self._rows("SELECT MAX(request_index) AS m FROM examples WHERE run_id = ?", (run_id,))
        return -1 if rows[0]["m"] is None else rows[0]["m"]

    def update_examples(self, updates: list[dict[str, Any]]) -> None:
        """Apply {id, kept?, drop_reason?, split?, quality?} updates in one transaction."""
        with self._lock, self._db:
            for u in updates:
                sets, params = [], []
                for key in ("kept", "drop_reason", "split"):
                    if key in u:
                        sets.append(f"{key} = ?")
                        params.append(int(u[key]) if key == "kept" else u[key])
                if "quality" in u:
                    sets.append("quality = ?")
                    params.append(_j(u["quality"]))
                if sets:
                    self._db.execute(
                        f"UPDATE examples SET {', '.join(sets)} WHERE id = ?", [*params, u["id"]]
                    )

    def drop_counts(self, run_id: str) -> dict[str, int]:
        rows = self._rows(
            "SELECT COALESCE(drop_reason, 'kept') AS reason, COUNT(*) AS n FROM examples"
            " WHERE run_id = ? GROUP BY reason",
            (run_id,),
        )
        return {r["reason"]: r["n"] for r in rows}

    # experiments and decisions -------------------------------------------------------------------
    def add_experiment(self, run_id: str, exp: dict[str, Any]) -> int:
        cur = self._exec(
            "INSERT INTO experiments (run_id, name, student, params, n_train, report, model_path, seconds, created)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                exp["name"],
                exp["student"],
                _j(exp["params"]),
                exp["n_train"],
                _j(exp["report"]),
                exp.get("model_path"),
                exp.get("seconds", 0.0),
                time.time(),
            ),
        )
        faults.point("experiment")
        return cur.lastrowid

    def delete_experiments(self, run_id: str, name_prefix: str) -> None:
        """Forget experiments of a round that did not finish (it is trained again on resume)."""
        self._exec("DELETE FROM experiments WHERE run_id = ? AND name LIKE ?", (run_id, name_prefix + "%"))

    def experiments(self, run_id: str) -> list[dict[str, Any]]:
        out = []
        for r in self._rows("SELECT * FROM experiments WHERE run_id = ? ORDER BY id", (run_id,)):
            d = dict(r)
            d["params"], d["report"] = json.loads(d["params"]), json.loads(d["report"])
            out.append(d)
        return out

    def add_decision(self, run_id: str, decision: dict[str, Any]) -> None:
        self._exec(
            "INSERT INTO decisions (run_id, action, reason, by, args, created) VALUES (?, ?, ?, ?, ?, ?)",
            (
                run_id,
                decision["action"],
                decision["reason"],
                decision["by"],
                _j(decision.get("args", {})),
                time.time(),
            ),
        )
        faults.point("decision")

    def decisions(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._rows(
            "SELECT action, reason, by, args FROM decisions WHERE run_id = ? ORDER BY id", (run_id,)
        )
        return [{**dict(r), "args": json.loads(r["args"])} for r in rows]

    # LLM ledger ---------------------------------------------------------------------------------
    def log_llm_call(
        self,
        run_id: str,
        purpose: str,
        cached: bool,
        prompt_tokens: int,
        completion_tokens: int,
        seconds: float,
    ) -> None:
        self._exec(
            "INSERT INTO llm_calls (run_id, purpose, cached, prompt_tokens, completion_tokens, seconds, created)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (run_id, purpose, int(cached), prompt_tokens, completion_tokens, seconds, time.time()),
        )

    def log_llm_failure(self, run_id: str, purpose: str, kind: str) -> None:
        """One failed teacher attempt (`http_500`, `timeout`, `invalid_json`, `server_died`, …)."""
        self._exec(
            "INSERT INTO llm_failures (run_id, purpose, kind, created) VALUES (?, ?, ?, ?)",
            (run_id, purpose, kind, time.time()),
        )

    def ledger(self, run_id: str) -> dict[str, Any]:
        """Calls (cached ones apart), tokens, seconds, and failed attempts by kind."""
        failures = self._rows(
            "SELECT kind, COUNT(*) AS n FROM llm_failures WHERE run_id = ? GROUP BY kind ORDER BY kind",
            (run_id,),
        )
        row = self._rows(
            "SELECT COUNT(*) AS calls, COALESCE(SUM(cached), 0) AS cached,"
            " COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens,"
            " COALESCE(SUM(completion_tokens), 0) AS completion_tokens, COALESCE(SUM(seconds), 0) AS seconds"
            " FROM llm_calls WHERE run_id = ?",
            (run_id,),
        )[0]
        return {**dict(row), "failures": {r["kind"]: r["n"] for r in failures}}

    # chat ---------------------------------------------------------------------------------------
    def add_chat_message(self, run_id: str, role: str, content: str) -> int:
        """Append one chat turn (role: user or assistant) to a run's conversation."""
        cur = self._exec(
            "INSERT INTO chat_messages (run_id, role, content, created) VALUES (?, ?, ?, ?)",
            (run_id, role, content, time.time()),
        )
        return cur.lastrowid

    def chat_messages(self, run_id: str, after: int = 0) -> list[dict[str, Any]]:
        """A run's conversation in order (only messages with id > `after`)."""
        rows = self._rows(
            "SELECT id, role, content, created FROM chat_messages WHERE run_id = ? AND id > ? ORDER BY id",
            (run_id, after),
        )
        return [dict(r) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
