"""Classification: per-label generation, curation with cross-validated label checks, encoder students.

Students: `quick-trial` (frozen MiniLM embeddings + logistic regression + the label-name prior,
seconds), `finetune` (MiniLM fine-tuned as a sequence classifier, distilled from the quick
trial's probabilities: teacher labels corrected by the prior), and `finetune@<model id>`: any
encoder from the model catalogue (tools/models.py: the HF cache, the model index, the Hub when
online) fine-tuned the same way — what the planner's switch_model picks from.
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
    # measured on 300 sst2 train.jsonl rows, 500 other rows held out (tools/students/smollm_cls.py): 0.862 vs
    # 0.830 for the MiniLM fine-tune, at about 54 vs 2.9 ms/example and twice the training time
    StudentInfo("smollm-cls", "SmolLM2-135M-Instruct (the teacher's GGUF weights) + LoRA, sequence classifier", 134.5,
                needs=("quick-trial",), note="bigger and about 20x slower per example; learns more from few rows"),
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

    def catalogue(self, spec: TaskSpec, index: Any = None) -> list[dict[str, Any]]:
        """Encoders from the model catalogue this kind can fine-tune (`finetune@<id>`), with fits/why_not."""
        from p2m.tools.models import MINILM, candidates

        out = []
        for c in candidates(spec, index=index):
            if c.student != "encoder-ft" or c.id == MINILM:
                continue
            out.append({"id": f"finetune@{c.id}", "base": c.id, "params_m": round((c.params or 0) / 1e6, 1),
                        "fits": c.fits, "why_not": c.why_not, "source": c.source, "licence": c.licence,
                        "note": c.note or ""})  # fmt: skip
        return out

    def default_students(self, spec: TaskSpec) -> list[str]:
        return ["quick-trial", "finetune"]

    def train(self, name: str, train: list[tuple[str, str]], val: list[tuple[str, str]], spec: TaskSpec,
              settings: TrainSettings, *, progress: bool, earlier: dict[str, Any]) -> tuple[Any, dict[str, Any]]:  # fmt: skip
        from p2m.tools.train import TrainConfig, finetune, label_prototypes, train_quick

        if name == "quick-trial":
            student, _, params = train_quick(train, val, spec.labels,
                                             prior=label_prototypes(spec.labels, spec.input_kind))  # fmt: skip
            return student, params
        if name == "finetune" or name.startswith("finetune@"):
            cfg = TrainConfig(**{**settings.extra, "epochs": settings.epochs, "seed": settings.seed,
                                 **({"lr": settings.lr} if settings.lr else {})})  # fmt: skip
            quick = earlier.get("quick-trial")
            if not hasattr(quick, "probabilities"):  # not trained in this round (or loaded): seconds to redo
                quick, _ = self.train(
                    "quick-trial", train, val, spec, settings, progress=progress, earlier={}
                )
            soft = quick.probabilities([x for x, _ in train])
            base = _base_path(name.split("@", 1)[1]) if "@" in name else None
            student, _, params = finetune(
                train, val, spec.labels, cfg, base=base, progress=progress, soft=soft
            )
            return student, {**params, **({"base": name.split("@", 1)[1]} if base else {})}
        if name == "smollm-cls":
            from p2m.tools.train import finetune_smollm_classifier

            quick = earlier.get("quick-trial")
            if not hasattr(quick, "probabilities"):
                quick, _ = self.train(
                    "quick-trial", train, val, spec, settings, progress=progress, earlier={}
                )
            cfg = TrainConfig(**{**settings.extra, "epochs": settings.epochs, "seed": settings.seed})
            student, _, params = finetune_smollm_classifier(
                train, val, spec.labels, cfg, progress=progress, max_minutes=settings.max_minutes or 8.0,
                soft=quick.probabilities([x for x, _ in train]))  # fmt: skip
            return student, params
        raise TaskError(f"no student {name!r} for classification; one of {[s.name for s in _STUDENTS]}")

    def info(self, name: str) -> StudentInfo | None:
        """What a student name means (`finetune@<id>` for a catalogue encoder)."""
        known = {s.name: s for s in _STUDENTS}
        if name in known:
            return known[name]
        if name.startswith("finetune@"):
            return StudentInfo(name, f"{name.split('@', 1)[1]} fine-tuned", 0.0, needs=("quick-trial",))
        return None

    def score(self, spec: TaskSpec, preds: list[str], refs: list[list[str]], inputs: list[str]) -> EvalReport:
        return classification_report([r[0] for r in refs], preds, spec.labels, inputs)

    def load(self, path: Any, fast: bool = True) -> Any:
        from p2m.tools.train import load_student

        return load_student(path, fast=fast)


def _base_path(model_id: str) -> str:
    """A catalogue encoder's local folder: in the HF cache, or fetched from the Hub (when online)."""
    from p2m.tools.models import candidates, fetch_model

    local = next((c for c in candidates("classification", online=False) if c.id == model_id and c.path), None)
    return str(local.path) if local else str(fetch_model(model_id))
