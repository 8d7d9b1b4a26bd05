"""Classification: per-label generation, curation with cross-validated label checks, MiniLM students.

Students: `quick-trial` (frozen MiniLM embeddings + logistic regression + the label-name prior,
seconds) and `finetune` (MiniLM fine-tuned as a sequence classifier, distilled from the quick
trial's probabilities: teacher labels corrected by the prior).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from p2m.errors import TaskError
from p2m.tools.evaluate import classification_report
from p2m.tools.kinds import StudentInfo, TrainSettings
from p2m.tools.types import EvalReport, TaskSpec

__all__ = ["Classification"]

_STUDENTS = (
    StudentInfo("quick-trial", "sentence-transformers/all-MiniLM-L6-v2 (frozen) + logistic regression", 22.7,
                note="embeddings + a linear head with the label-name prior; seconds to train"),
    StudentInfo("finetune", "sentence-transformers/all-MiniLM-L6-v2 fine-tuned", 22.7, needs=("quick-trial",),
                note="every weight trained, distilled from the quick trial's probabilities"),
)  # fmt: skip


class Classification:
    task_type = "classification"
    select_tolerance = 0.0  # the best score wins; ties go to the later (fine-tuned) student

    def generate(self, spec: TaskSpec, llm: Any, cfg: Any, *, existing: list[dict[str, Any]], start_index: int,
                 on_rows: Any, run_id: str, progress: Any, focus: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
        """Examples for `focus["labels"]` (default: all), with hints that separate confused label pairs."""
        from p2m.tools.generate import generate_examples

        labels = [lab for lab in focus.get("labels") or spec.labels if lab in spec.labels] or spec.labels
        counts = {lab: sum(r["output"] == lab for r in existing) for lab in labels}
        hints = dict(focus.get("hints") or {})
        for true, pred in (
            focus.get("pairs") or []
        ):  # "confusable": examples that separate the confused labels
            for a, b in ((true, pred), (pred, true)):
                if a in labels and a not in hints:
                    hints[a] = f" It must be clearly {a}, not {b}."
        return generate_examples(dataclasses.replace(spec, labels=labels), llm, cfg, start_index=start_index,
                                 counts=counts, on_rows=on_rows, run_id=run_id, progress=progress,
                                 extra_hints=hints)  # fmt: skip

    def curate(self, rows: list[dict[str, Any]], spec: TaskSpec, *, seed: int, later: bool
               ) -> tuple[list[dict[str, Any]], dict[str, Any]]:  # fmt: skip
        from p2m.tools.generate import curate

        rows = [r for r in rows if r["output"] in spec.labels]
        # targeted rounds add to some labels on purpose: a looser balance cap keeps what they added
        updates, report = curate(rows, spec, seed=seed, balance=3.0 if later else 1.25)
        if min(report["per_label"].values(), default=0) < 2:
            raise TaskError(f"too few usable examples for some labels {report['per_label']}; raise --examples or "
                            "--gen-minutes, or describe each label more clearly")  # fmt: skip
        return updates, report

    def students(self, spec: TaskSpec) -> list[StudentInfo]:
        return list(_STUDENTS)

    def default_students(self, spec: TaskSpec) -> list[str]:
        return ["quick-trial", "finetune"]

    def train(self, name: str, train: list[tuple[str, str]], val: list[tuple[str, str]], spec: TaskSpec,
              settings: TrainSettings, *, progress: bool, earlier: dict[str, Any]) -> tuple[Any, dict[str, Any]]:  # fmt: skip
        from p2m.tools.train import TrainConfig, finetune, label_prototypes, train_quick

        if name == "quick-trial":
            student, _, params = train_quick(train, val, spec.labels,
                                             prior=label_prototypes(spec.labels, spec.input_kind))  # fmt: skip
            return student, params
        if name == "finetune":
            cfg = TrainConfig(**{**settings.extra, "epochs": settings.epochs, "seed": settings.seed,
                                 **({"lr": settings.lr} if settings.lr else {})})  # fmt: skip
            quick = earlier.get("quick-trial")
            soft = quick.probabilities([x for x, _ in train]) if quick is not None else None
            student, _, params = finetune(train, val, spec.labels, cfg, progress=progress, soft=soft)
            return student, params
        raise TaskError(f"no student {name!r} for classification; one of {[s.name for s in _STUDENTS]}")

    def score(self, spec: TaskSpec, preds: list[str], refs: list[list[str]], inputs: list[str]) -> EvalReport:
        return classification_report([r[0] for r in refs], preds, spec.labels, inputs)

    def load(self, path: Any, fast: bool = True) -> Any:
        from p2m.tools.train import load_student

        return load_student(path, fast=fast)
