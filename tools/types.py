"""Shared types: the records every stage reads and writes. JSON-serialisable by design."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = [
    "TASK_TYPES",
    "TaskType",
    "TaskSpec",
    "Example",
    "EvalReport",
    "Experiment",
    "Decision",
    "Candidate",
    "default_metric",
]

TaskType = Literal["classification", "extractive_qa", "text_to_code", "data_to_text", "text_generation"]
TASK_TYPES: tuple[str, ...] = (
    "classification",
    "extractive_qa",
    "text_to_code",
    "data_to_text",
    "text_generation",
)
_DEFAULT_METRIC = {
    "classification": "accuracy",
    "extractive_qa": "squad_f1",
    "text_to_code": "chrf",
    "data_to_text": "chrf",
    "text_generation": "chrf",
}


def default_metric(task_type: str) -> str:
    """The metric p2m optimises for a task type."""
    return _DEFAULT_METRIC[task_type]


@dataclass
class TaskSpec:
    """What the user asked for, parsed from the prompt.

    Attributes:
        instruction: the prompt's prose, without the demonstrations.
        demonstrations: (input, output) pairs given in the prompt.
        task_type: one of TASK_TYPES.
        labels: the label set, for classification.
        metric: what is optimised and reported.
        target: the metric value at which the run may stop.
        language: ISO code of the inputs' language.
        input_kind: a short noun phrase for one input ("movie review sentence").
        label_descriptions: one line per label, used when generating data.
    """

    instruction: str
    demonstrations: list[tuple[str, str]] = field(default_factory=list)
    task_type: str = "classification"
    labels: list[str] = field(default_factory=list)
    metric: str = "accuracy"
    target: float | None = None
    language: str = "en"
    input_kind: str = "text"
    label_descriptions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskSpec:
        data = dict(data)
        data["demonstrations"] = [tuple(d) for d in data.get("demonstrations", [])]
        return cls(**data)


@dataclass
class Example:
    """One training or evaluation row with its provenance.

    `source` is `generated:<run>`, `hub:<dataset>@<rev>`, `user:<file>` or `prompt`.
    """

    input: str
    output: str
    source: str
    split: str = "train"
    quality: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EvalReport:
    """Scores of one model on one data set, with what the planner can act on."""

    metric: str
    score: float
    n: int
    scores: dict[str, float] = field(default_factory=dict)
    per_label: dict[str, dict[str, float]] = field(default_factory=dict)
    confusion: list[list[int]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    ms_per_example: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Experiment:
    """A data snapshot + a student + hyper-parameters, and how it scored."""

    name: str
    student: str
    params: dict[str, Any]
    n_train: int
    report: EvalReport
    model_path: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Decision:
    """What the pipeline or planner chose to do next, and why."""

    action: str
    reason: str
    by: Literal["llm", "rule"] = "rule"
    args: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Candidate:
    """A dataset or model found by search, with the parts of its score and the mirrors folded into it."""

    id: str
    kind: str  # "datasets", "models" or "local"
    score: float
    reasons: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    duplicates: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
