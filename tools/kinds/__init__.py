"""Task kinds behind one protocol, so the run engine, the planner, chat and the UI work for every task type.

A kind knows how to write examples for its task type with the teacher (`generate`), vet them
(`curate`), which students it can train (`students`) and how (`train`), and how to score and load
them (`score`, `load`). The engine (agent/run.py) does the rest — the store, rounds, experiments,
the two validation estimates, deploy — once for all kinds.

    kind = kind_for(spec.task_type)
    stats = kind.generate(spec, llm, cfg, existing=rows, start_index=…, on_rows=…)
    updates, report = kind.curate(rows, spec, seed=0, later=False)
    student, params = kind.train("finetune", train, val, spec, settings, progress=False, earlier={})
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from p2m.tools.types import EvalReport, TaskSpec

__all__ = ["Kind", "StudentInfo", "TrainSettings", "kind_for"]


@dataclass
class StudentInfo:
    """A student a kind can train: its name in experiments, base model, and what it costs."""

    name: str
    base: str
    params_m: float  # millions of parameters
    needs: tuple[str, ...] = ()  # students trained first in the same round (e.g. a teacher to distil from)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "base": self.base, "params_m": self.params_m, "needs": list(self.needs),
                "note": self.note}  # fmt: skip


@dataclass
class TrainSettings:
    """What a round's training may use: the run's hyper-parameters and any `tune` overrides."""

    epochs: int = 4
    lr: float | None = None
    seed: int = 0
    max_minutes: float | None = None  # per student; None = the kind's default
    extra: dict[str, Any] = field(default_factory=dict)
    folder: Any = None  # the run folder: a kind may write data it made there (data/<name>.jsonl)


class Kind(Protocol):
    """One task type's data and students."""

    task_type: str
    # a candidate within this fraction of the best validation score and faster is preferred (one rule)
    select_tolerance: float

    def generate(self, spec: TaskSpec, llm: Any, cfg: Any, *, existing: list[dict[str, Any]], start_index: int,
                 on_rows: Any, run_id: str, progress: Any, focus: dict[str, Any]) -> dict[str, Any]: ...  # fmt: skip

    def curate(self, rows: list[dict[str, Any]], spec: TaskSpec, *, seed: int, later: bool
               ) -> tuple[list[dict[str, Any]], dict[str, Any]]: ...  # fmt: skip

    def students(self, spec: TaskSpec) -> list[StudentInfo]: ...

    def default_students(self, spec: TaskSpec) -> list[str]: ...

    def info(self, name: str) -> StudentInfo | None: ...

    def catalogue(self, spec: TaskSpec, index: Any = None) -> list[dict[str, Any]]: ...

    def train(self, name: str, train: list[tuple[str, str]], val: list[tuple[str, str]], spec: TaskSpec,
              settings: TrainSettings, *, progress: bool, earlier: dict[str, Any]) -> tuple[Any, dict[str, Any]]: ...  # fmt: skip

    def score(
        self, spec: TaskSpec, preds: list[str], refs: list[list[str]], inputs: list[str]
    ) -> EvalReport: ...

    def load(self, path: Any, fast: bool = True) -> Any: ...


def kind_for(task_type: str) -> Kind:
    """The kind for a task type."""
    if task_type == "classification":
        from p2m.tools.kinds.classification import Classification

        return Classification()
    from p2m.tools.kinds.sequence import Sequence

    return Sequence(task_type)
