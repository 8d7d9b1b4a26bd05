"""A run's options, and opening one: recorded in the store before any work, or reopened to resume.

`recorded(store, run_id)` wraps a run's work: complete at the end, interrupted on Ctrl-C, failed on
an error (a full disk is a StorageError that says how to resume). Nothing here trains or generates:
that is agent/run.py.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2m.errors import ConfigError, LLMError, storage_error
from p2m.memory import RunStore, home_dir, runs_dir
from p2m.memory.home import ensure_writable
from p2m.tools.evaluate import load_jsonl_pairs
from p2m.tools.generate import GenConfig
from p2m.tools.llm import LLMConfig
from p2m.tools.parse import parse_task
from p2m.tools.train import TrainConfig
from p2m.tools.types import TaskSpec

__all__ = ["RunOptions", "RunResult", "open_store", "new_run_id", "open_run", "recorded"]


@dataclass
class RunOptions:
    """Everything a run needs besides the prompt; stored with the run so `resume` reuses it."""

    llm: LLMConfig = field(default_factory=LLMConfig)
    gen: GenConfig = field(default_factory=GenConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    finetune: bool = True
    # the students the first round trains (None: the task kind's default); the planner may switch
    students: list[str] | None = None
    # the deployed student's bound (ms per example, batched on validation inputs): the planner switches to a
    # faster student when it is missed
    max_latency_ms: float | None = None
    eval_file: str | None = None
    out: str | None = None
    retrieve: bool = True  # search the index for labelled data that fits, and train on it too
    retrieve_max: int = 1000  # at most this many retrieved rows, balanced over labels
    retrieve_candidates: int = 3  # how many top search results to try loading
    chroma_url: str | None = None

    def __post_init__(self) -> None:
        if self.max_latency_ms is not None and self.max_latency_ms <= 0:
            raise ConfigError(f"--max-latency-ms must be > 0, not {self.max_latency_ms}")
        if self.retrieve_max < 0 or self.retrieve_candidates < 0:
            raise ConfigError(f"--retrieve-max must be ≥ 0, not {self.retrieve_max}" if self.retrieve_max < 0
                              else f"retrieve_candidates must be ≥ 0, not {self.retrieve_candidates}")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        llm = {k: v for k, v in vars(self.llm).items() if k != "api_key"}  # never store keys
        return {"llm": llm, "gen": self.gen.to_dict(), "train": self.train.to_dict(), "finetune": self.finetune,
                "students": self.students, "max_latency_ms": self.max_latency_ms, "eval_file": self.eval_file, "out": self.out,
                "retrieve": self.retrieve, "retrieve_max": self.retrieve_max,
                "retrieve_candidates": self.retrieve_candidates, "chroma_url": self.chroma_url}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any], api_key: str | None = None) -> RunOptions:
        return cls(
            llm=LLMConfig(**{**d["llm"], "api_key": api_key}),
            gen=GenConfig(**d["gen"]),
            train=TrainConfig(**d["train"]),
            finetune=d["finetune"],
            students=d.get("students"),
            max_latency_ms=d.get("max_latency_ms"),
            eval_file=d.get("eval_file"),
            out=d.get("out"),
            retrieve=d.get("retrieve", False),
            retrieve_max=d.get("retrieve_max", 1000),
            retrieve_candidates=d.get("retrieve_candidates", 3),
            chroma_url=d.get("chroma_url"),
        )


@dataclass
class RunResult:
    run_id: str
    folder: Path
    spec: TaskSpec
    report: dict[str, Any]


def open_store() -> RunStore:
    return RunStore(home_dir() / "p2m.sqlite")


def new_run_id(prompt: str) -> str:
    slug = "-".join(re.findall(r"[a-z0-9]+", prompt.lower())[:4])[:32] or "run"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}"


@contextlib.contextmanager
def recorded(store: RunStore, run_id: str) -> Any:
    """The run's status follows the body: complete, interrupted on Ctrl-C (resumable), failed on an error."""
    try:
        yield
        store.set_status(run_id, "complete", stage="done")
    except KeyboardInterrupt:
        store.set_status(run_id, "interrupted", error="interrupted by the user")
        from p2m.errors import RunInterrupted

        raise RunInterrupted(f"interrupted; what was done is kept: `p2m resume {run_id}` continues") from None
    except BaseException as e:
        full = storage_error(e, "running", then=f"`p2m resume {run_id}` continues the run")
        try:
            store.set_status(run_id, "failed", error=str(full or e)[:500])
        except Exception:  # the store's disk is full too: the run stays 'running', which resumes as well
            if full is None:
                raise
        if full is not None:
            raise full from e
        if isinstance(e, LLMError):
            raise LLMError(f"{e}; what was done is kept: `p2m resume {run_id}` continues") from e
        raise


def open_run(
    store: RunStore,
    prompt: str | None,
    options: RunOptions | None,
    resume: str | None,
    extra: dict[str, Any] | None = None,
) -> tuple[str, Path, str, RunOptions, dict[str, Any]]:
    """Record a new run (after checking the prompt and the eval file), or reopen one to resume.

    Returns (run id, folder, prompt, options, stored config); `extra` is stored with the options.
    """
    if resume:
        run = store.get_run(resume)
        if run is None:
            raise ConfigError(f"no run {resume!r}; `p2m runs` lists them")
        if run["status"] == "complete":
            raise ConfigError(f"run {resume} is already complete; its model is in {run['folder']}/model")
        options = RunOptions.from_dict(run["config"], api_key=os.environ.get("OPENAI_API_KEY"))
        store.set_status(resume, "running")
        return resume, Path(run["folder"]), run["prompt"], options, run["config"]
    options = options or RunOptions()
    if not (prompt or "").strip():
        parse_task(prompt or "")  # raises the empty-prompt TaskError
    if options.eval_file:
        load_jsonl_pairs(options.eval_file)  # a bad file fails before a run is recorded
    run_id = new_run_id(prompt)
    n = 1
    while store.get_run(run_id):  # two runs started within the same second
        n += 1
        run_id = f"{new_run_id(prompt)}-{n}"
    folder = Path(options.out).expanduser() if options.out else runs_dir() / run_id
    ensure_writable(folder)
    config = {**options.to_dict(), **(extra or {})}
    store.create_run(run_id, prompt, config, str(folder.resolve()))
    return run_id, folder, prompt, options, config
