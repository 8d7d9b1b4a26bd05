"""Extractive QA, text-to-code, data-to-text and text generation: checked generation, sequence students.

Students: `qa-reader` (MiniLM + an extractive span head) for extractive QA; `lora` (SmolLM2-135M,
the teacher's own weights from its GGUF, + merged LoRA) and `lora-16L` (the same cut to 16 of its
30 layers, every kept weight trained; for data-to-text also taught by `lora` on new records) for
the generative types.
"""

from __future__ import annotations

import random
from typing import Any

from p2m.errors import TaskError
from p2m.tools.evaluate import seq_report
from p2m.tools.kinds import StudentInfo, TrainSettings
from p2m.tools.types import EvalReport, TaskSpec

__all__ = ["Sequence", "FAST_LAYERS", "DISTIL_RECORDS"]

# A layer costs about the same at every token: on e2e_nlg the 12-layer student answered 14.7x as fast as
# the teacher and the full one 5-6x (bench/RESULTS.md), so 16 layers still leaves 10x with room, and keeps
# a third more of the base model (the 12-layer one lost most on records unlike the demonstrations).
FAST_LAYERS = 16  # of SmolLM2-135M's 30 (see tools/train_seq.keep_layers)
FAST_EPOCHS = 3
DISTIL_RECORDS = 480  # data-to-text: new records the full student describes for the cut one to learn from
FULL_MINUTES, FAST_MINUTES = 3.0, 3.5  # training budgets (minutes) when both are trained in one round
_CUT = f"lora-{FAST_LAYERS}L"


class Sequence:
    # the faster student is deployed when its validation score is within 10% of the best one's: the
    # student has to beat the teacher and run on a laptop
    select_tolerance = 0.10

    def __init__(self, task_type: str) -> None:
        self.task_type = task_type

    def generate(self, spec: TaskSpec, llm: Any, cfg: Any, *, existing: list[dict[str, Any]], start_index: int,
                 on_rows: Any, run_id: str, progress: Any, focus: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
        from p2m.tools.generate_seq import generate_seq

        return generate_seq(spec, llm, cfg, start_index=start_index, have=len(existing), run_id=run_id,
                            progress=progress, on_rows=on_rows, known=existing, hint=focus.get("hint") or "")  # fmt: skip

    def curate(self, rows: list[dict[str, Any]], spec: TaskSpec, *, seed: int, later: bool
               ) -> tuple[list[dict[str, Any]], dict[str, Any]]:  # fmt: skip
        from p2m.tools.curate_seq import curate_seq

        updates, report = curate_seq(rows, spec)
        if report["kept"] < 4:
            raise TaskError(
                f"only {report['kept']} generated examples passed the checks ({report['dropped']}); raise "
                "--gen-minutes or --examples, add demonstrations to the prompt, or use a stronger --llm"
            )
        return updates, report

    def students(self, spec: TaskSpec) -> list[StudentInfo]:
        if self.task_type == "extractive_qa":
            return [
                StudentInfo("qa-reader", "sentence-transformers/all-MiniLM-L6-v2 + extractive QA head", 22.7)
            ]
        return [
            StudentInfo("lora", "SmolLM2-135M-Instruct (from the teacher's GGUF) + merged LoRA", 134.5),
            StudentInfo(_CUT, f"SmolLM2-135M-Instruct cut to {FAST_LAYERS} of its 30 layers, fully trained", 77.0,
                        needs=("lora",) if self.task_type == "data_to_text" else (),
                        note="about twice as fast" + (f"; also learns from the full student's texts for "
                             f"{DISTIL_RECORDS} new records" if self.task_type == "data_to_text" else "")),
        ]  # fmt: skip

    def info(self, name: str) -> StudentInfo | None:
        return next(
            (s for s in self.students(TaskSpec(instruction="", task_type=self.task_type)) if s.name == name),
            None,
        )

    def catalogue(self, spec: TaskSpec, index: Any = None) -> list[dict[str, Any]]:
        """No other base models yet: the generation students train from SmolLM2-135M only."""
        return []

    def default_students(self, spec: TaskSpec) -> list[str]:
        return ["qa-reader"] if self.task_type == "extractive_qa" else ["lora"]

    def train(self, name: str, train: list[tuple[str, str]], val: list[tuple[str, str]], spec: TaskSpec,
              settings: TrainSettings, *, progress: bool, earlier: dict[str, Any]) -> tuple[Any, dict[str, Any]]:  # fmt: skip
        from p2m.tools.train_seq import SeqTrainConfig, finetune_generator, finetune_qa

        lr = {"lr": settings.lr} if settings.lr else {}
        if name == "qa-reader" and self.task_type == "extractive_qa":
            cfg = SeqTrainConfig(epochs=settings.epochs, seed=settings.seed,
                                 **({"qa_lr": settings.lr} if settings.lr else {}))  # fmt: skip
            student = finetune_qa(train, val, cfg, progress=progress)
        elif name == "lora" and self.task_type != "extractive_qa":
            cfg = SeqTrainConfig(epochs=settings.epochs, seed=settings.seed, **lr,
                                 max_minutes=settings.max_minutes or SeqTrainConfig.max_minutes)  # fmt: skip
            student = finetune_generator(train, val, spec.instruction, cfg, progress=progress)
        elif name == _CUT and self.task_type != "extractive_qa":
            # every weight of the kept layers is trained (LoRA alone recovered less of the cut: e2e_nlg
            # validation chrF++ 42.5 vs 44.4 on the same data)
            cfg = SeqTrainConfig(epochs=FAST_EPOCHS, lr=settings.lr or 1e-4, seed=settings.seed, layers=FAST_LAYERS,
                                 full=True, max_minutes=settings.max_minutes or FAST_MINUTES)  # fmt: skip
            extra = []
            if self.task_type == "data_to_text" and earlier.get("lora") is not None:
                extra = distil(earlier["lora"], train, val, settings.seed)
                if settings.folder is not None:
                    from p2m.tools import deploy

                    deploy.write_data(settings.folder, "distilled", extra, source="distilled:lora")
            student = finetune_generator(train + extra, val, spec.instruction, cfg, progress=progress)
            params = {**cfg.to_dict(), "distilled_rows": len(extra)}
            return student, {**params, **_meta(student)}
        else:
            raise TaskError(
                f"no student {name!r} for {self.task_type}; one of {[s.name for s in self.students(spec)]}"
            )
        return student, {**cfg.to_dict(), **_meta(student)}

    def score(self, spec: TaskSpec, preds: list[str], refs: list[list[str]], inputs: list[str]) -> EvalReport:
        return seq_report(spec.metric, preds, refs, inputs)

    def load(self, path: Any, fast: bool = True) -> Any:
        from p2m.tools.train_seq import load_seq_student

        return load_seq_student(path, fast=fast)


def _meta(student: Any) -> dict[str, Any]:
    return {
        k: v
        for k, v in (getattr(student, "meta", None) or {}).items()
        if k in ("best_epoch", "steps", "seconds")
    }


def distil(
    student: Any, train: list[tuple[str, str]], val: list[tuple[str, str]], seed: int
) -> list[tuple[str, str]]:
    """Data-to-text: the full student describes `DISTIL_RECORDS` new records (sampled from the training
    records' fields and values, with new names); its texts that pass the teacher's own check
    (`check_mentions`: every value, no other) become extra training rows for the cut-down student
    (sequence-level distillation, Kim & Rush 2016)."""
    from p2m.tools.records import format_record, new_records
    from p2m.tools.seq_checks import check_mentions

    records, pools, style = new_records([x for x, _ in train + val], DISTIL_RECORDS, random.Random(seed))
    inputs = [format_record(rec, style) for rec in records]
    outs = student.predict(inputs) if inputs else []
    return [
        (x, y)
        for rec, x, y in zip(records, inputs, outs, strict=True)
        if check_mentions(y, rec, pools) is None
    ]
