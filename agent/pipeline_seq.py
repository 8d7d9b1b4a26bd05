"""The fixed pipeline's stages for extractive QA, text-to-code, data-to-text and text generation.

Same shape and store records as the classification stages in pipeline.py (generate → curate →
train → deploy, each recorded before the next starts, so `p2m resume` skips what is done), with
the sequence generators (tools/generate_seq.py) and students (tools/train_seq.py): a MiniLM span
reader for extractive QA, SmolLM2-135M + LoRA for the generative types.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from p2m.errors import TaskError
from p2m.tools import deploy
from p2m.tools.evaluate import seq_report
from p2m.tools.generate_seq import curate_seq, generate_seq
from p2m.tools.types import TaskSpec

__all__ = ["run_seq_stages", "student_base"]

_BASES = {
    "causal-lm": "SmolLM2-135M-Instruct (from the teacher's GGUF) + merged LoRA",
    "extractive-qa": "sentence-transformers/all-MiniLM-L6-v2 + extractive QA head",
}


def student_base(kind: str) -> str:
    """A readable name of a sequence student's base model."""
    return _BASES.get(kind, kind)


def _log(r: Any, msg: str) -> None:
    if r.progress:
        from tqdm.auto import tqdm

        tqdm.write(msg)


def _generate(r: Any, spec: TaskSpec) -> dict[str, Any]:
    done = r.store.stage_info(r.run_id, "generate")
    if done is not None:
        return done
    from tqdm.auto import tqdm

    r.store.set_stage(r.run_id, "generate")
    have = len(r.store.examples(r.run_id, kept=True, source_prefix="generated:"))
    start = r.store.max_request_index(r.run_id) + 1
    r.decide("generate_more", f"{spec.task_type} generation with checks, to the example budget",
             n=r.opts.gen.examples)  # fmt: skip
    bar = tqdm(total=r.opts.gen.examples, initial=have, desc="generate", unit="ex", disable=not r.progress)
    try:
        stats = generate_seq(spec, r.llm, r.opts.gen, start_index=start, have=have, run_id=r.run_id, progress=bar,
                             on_rows=lambda rows: r.store.add_examples(r.run_id, rows))  # fmt: skip
    finally:
        bar.close()
    stats["kept_per_second"] = round(stats["usable"] / max(stats["seconds"], 1e-9), 3)
    r.store.stage_done(r.run_id, "generate", stats)
    _log(
        r,
        f"generated {stats['usable']} checked examples in {stats['seconds']:.0f}s; checks {stats['checks']}",
    )
    return stats


def _curate(r: Any, spec: TaskSpec) -> dict[str, Any]:
    done = r.store.stage_info(r.run_id, "curate")
    if done is not None:
        return done
    r.store.set_stage(r.run_id, "curate")
    rows = r.store.examples(r.run_id, kept=None, source_prefix="generated:")
    updates, report = curate_seq(rows, spec)
    r.store.update_examples(updates)
    if report["kept"] < 4:
        raise TaskError(
            f"only {report['kept']} generated examples passed the checks ({report['dropped']}); raise --gen-minutes"
            " or --examples, add demonstrations to the prompt, or use a stronger --llm"
        )
    r.store.stage_done(r.run_id, "curate", report)
    _log(r, f"kept {report['kept']} examples, dropped {report['dropped']}, diversity {report['diversity']}")
    return report


# A cut-down generator (fewer layers) is deployed when its validation score is within this fraction of
# the full one's: the student has to beat the teacher and run on a laptop. A layer costs about the
# same at every token: on e2e_nlg the 12-layer student answered 14.7x as fast as the teacher and the
# full one 5-6x (bench/RESULTS.md), so 16 layers still leaves 10x with room, and keeps a third more of
# the base model (the 12-layer one lost most on records unlike the demonstrations).
FAST_TOLERANCE = 0.10
FAST_LAYERS = 16  # of SmolLM2-135M's 30 (see tools/train_seq.keep_layers)
FAST_EPOCHS = 3
DISTIL_RECORDS = 480  # data-to-text: new records the full student describes for the cut one to learn from
# with two students each gets a training budget (minutes), so a bench run stays within 20 minutes
FULL_MINUTES, FAST_MINUTES = 3.0, 3.5


def _distil(
    r: Any, student: Any, train: list[tuple[str, str]], val: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """Data-to-text: the full student describes `DISTIL_RECORDS` new records (sampled from the training
    records' fields and values, with new names) and its texts that pass the teacher's own check
    (`check_mentions`: every value, no other) become extra training rows for the cut-down student
    (sequence-level distillation, Kim & Rush 2016). Kept in data/distilled.jsonl."""
    import random

    from p2m.tools.generate_seq import format_record, new_records
    from p2m.tools.seq_checks import check_mentions

    records, pools, style = new_records(
        [x for x, _ in train + val], DISTIL_RECORDS, random.Random(r.opts.train.seed)
    )
    inputs = [format_record(rec, style) for rec in records]
    t0 = time.perf_counter()
    outs = student.predict(inputs) if inputs else []
    rows = [
        (x, y)
        for rec, x, y in zip(records, inputs, outs, strict=True)
        if check_mentions(y, rec, pools) is None
    ]
    deploy.write_data(r.folder, "distilled", rows, source="distilled:lora")
    _log(r, f"distilled {len(rows)} of {len(inputs)} new records in {time.perf_counter() - t0:.0f}s")
    return rows


def _score(student: Any, spec: TaskSpec, val: list[tuple[str, str]]) -> tuple[Any, float]:
    """The validation report and the student's batched milliseconds per validation example."""
    inputs = [x for x, _ in val]
    student.predict(inputs[:4])  # warm-up (the bf16 copy, first allocations), not timed
    t0 = time.perf_counter()
    preds = student.predict(inputs)
    ms = 1000 * (time.perf_counter() - t0) / max(len(inputs), 1)
    report = seq_report(spec.metric, preds, [[y] for _, y in val], inputs)
    report.ms_per_example = round(ms, 3)
    return report, ms


def _train(r: Any, spec: TaskSpec) -> dict[str, Any]:
    done = r.store.stage_info(r.run_id, "train")
    if done is not None:
        return done
    from p2m.tools.train_seq import SeqTrainConfig, finetune_generator, finetune_qa

    r.store.set_stage(r.run_id, "train")
    r.store.delete_experiments(r.run_id, "")  # a stage killed mid-training trains again
    train, val = r.data(spec)
    try_fast = bool(r.opts.fast_student and val and spec.task_type != "extractive_qa")
    cfg = SeqTrainConfig(epochs=r.opts.train.epochs, seed=r.opts.train.seed)
    if try_fast:
        cfg = dataclasses.replace(cfg, max_minutes=FULL_MINUTES)
    candidates = []

    def trained(name: str, student: Any, cfg: SeqTrainConfig, t0: float) -> dict[str, Any]:
        report, ms = _score(student, spec, val)
        params = {
            **cfg.to_dict(),
            **{k: v for k, v in student.meta.items() if k in ("best_epoch", "steps", "seconds")},
        }
        rec = r._record(name, student, report, params, len(train), time.perf_counter() - t0)
        cut = f", {cfg.layers} of its 30 layers" if cfg.layers else ""
        rec.update(ms_per_example=round(ms, 3), base=student_base(student.kind) + cut)
        _log(r, f"{name}: validation {report.metric} {report.score:.3f}, {ms:.0f} ms/example")
        candidates.append(rec)
        return rec

    t0 = time.perf_counter()
    if spec.task_type == "extractive_qa":
        r.decide(
            "train",
            "fine-tune MiniLM with an extractive QA head on the checked spans",
            student="all-MiniLM-L6-v2",
        )
        best = trained("qa-reader", finetune_qa(train, val, cfg, progress=r.progress), cfg, t0)
        reason = f"qa-reader is the one student for {spec.task_type} ({best['report']['metric']} {best['score']:.3f})"
    else:
        r.decide("train", "LoRA fine-tune of SmolLM2-135M (the teacher's own weights) on the checked examples",
                 student="SmolLM2-135M")  # fmt: skip
        full = finetune_generator(train, val, spec.instruction, cfg, progress=r.progress)
        best = trained("lora", full, cfg, t0)
        reason = f"lora is the one student ({best['report']['metric']} {best['score']:.3f})"
        if try_fast:
            r.decide("train", f"try a faster student: SmolLM2-135M cut to {FAST_LAYERS} of its 30 layers, "
                     f"kept if its validation score is within {FAST_TOLERANCE:.0%} of the full one's",
                     student=f"SmolLM2-135M-{FAST_LAYERS}L")  # fmt: skip
            # every weight of the kept layers is trained (LoRA alone recovered less of the cut: e2e_nlg
            # validation chrF++ 42.5 vs 44.4 on the same data). Measured on one e2e_nlg run's own data
            # (162 teacher rows + 343 distilled, its teacher-written validation): 12 layers 45.9, 15
            # layers 45.3 after 3 epochs, full student 49.3; without distilled rows 15 layers 41.4.
            fast_cfg = SeqTrainConfig(epochs=FAST_EPOCHS, lr=1e-4, seed=cfg.seed, layers=FAST_LAYERS, full=True,
                                      max_minutes=FAST_MINUTES)  # fmt: skip
            t0 = time.perf_counter()
            extra = []
            if spec.task_type == "data_to_text":
                r.decide("generate_more", f"distil: the full student describes {DISTIL_RECORDS} new records; "
                         "its texts that mention every value and no other train the cut-down one too",
                         n=DISTIL_RECORDS, source="lora")  # fmt: skip
                extra = _distil(r, full, train, val)
            fast = finetune_generator(train + extra, val, spec.instruction, fast_cfg, progress=r.progress)
            rec = trained(f"lora-{FAST_LAYERS}L", fast, fast_cfg, t0)
            speed = best["ms_per_example"] / max(rec["ms_per_example"], 1e-9)
            if rec["score"] >= best["score"] * (1 - FAST_TOLERANCE):
                reason = (f"{rec['name']}: validation {rec['score']:.3f} vs {best['score']:.3f} for all layers, "
                          f"within {FAST_TOLERANCE:.0%}, and {speed:.1f}× as fast: deploy the faster")  # fmt: skip
                best = rec
            else:
                reason = (f"lora: validation {best['score']:.3f}; {rec['name']} scores {rec['score']:.3f}, more "
                          f"than {FAST_TOLERANCE:.0%} lower ({speed:.1f}× as fast): keep all layers")  # fmt: skip
    r.decide("select", reason, name=best["name"])
    info = {"best": best, "candidates": candidates, "candidates_dir": str(r.folder / "candidates")}
    r.store.stage_done(r.run_id, "train", info)
    return info


def _deploy(
    r: Any, spec: TaskSpec, gen: dict, cur: dict, trained: dict, eval_refs: list | None
) -> dict[str, Any]:
    from p2m.tools.train_seq import load_seq_student

    r.store.set_stage(r.run_id, "deploy")
    best = trained["best"]
    model_dir = r.folder / "model"
    deploy.copy_model(best["path"], model_dir)
    user_report = None
    if eval_refs:
        student = load_seq_student(model_dir)
        t0 = time.perf_counter()
        preds = student.predict([x for x, _ in eval_refs])
        rep = seq_report(spec.metric, preds, [y for _, y in eval_refs], [x for x, _ in eval_refs])
        rep.ms_per_example = round(1000 * (time.perf_counter() - t0) / len(eval_refs), 3)
        user_report = rep.to_dict()
    train, val = r.data(spec)
    report = r.report(
        spec,
        best,
        trained["candidates"],
        user_report,
        train,
        val,
        gen,
        cur,
        None,
        base=best.get("base") or student_base(best["kind"]),
    )
    deploy.write_run_folder(r.folder, spec, report, train, val, teacher=r._teacher_name())
    r.store.stage_done(r.run_id, "deploy", {"model": str(model_dir)})
    return report


def run_seq_stages(r: Any, spec: TaskSpec, eval_refs: list[tuple[str, list[str]]] | None) -> dict[str, Any]:
    """Generate, curate, train and deploy for a non-classification task; returns the run report."""
    if r.store.stage_info(r.run_id, "retrieve") is None:
        r.decide("retrieve", f"skipped: retrieval maps labelled data, not {spec.task_type} data", n=0)
        r.store.stage_done(r.run_id, "retrieve", {"rows": 0, "tried": [], "used": []})
    gen = _generate(r, spec)
    cur = _curate(r, spec)
    trained = _train(r, spec)
    return _deploy(r, spec, gen, cur, trained, eval_refs)
