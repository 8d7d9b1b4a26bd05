"""The fixed pipeline: parse → generate → curate → train → evaluate → deploy, resumable at every stage.

Classification runs the stages below; the other task types (QA, code, data-to-text, text generation)
run the same stages from agent/pipeline_seq.py.

Each stage records its result in the run store before the next starts; `run_pipeline(resume=…)`
skips what is recorded, so a run killed at any point continues where it stopped (generated
examples stay, the LLM cache answers repeated requests, trained candidates are reloaded).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2m import faults
from p2m.errors import ConfigError, LLMError, P2MError, TaskError, storage_error
from p2m.memory import ResponseCache, RunStore, home_dir, runs_dir
from p2m.memory.home import ensure_writable
from p2m.tools import deploy
from p2m.tools.evaluate import classification_report, load_jsonl_pairs, load_jsonl_refs
from p2m.tools.generate import GenConfig, curate, generate_examples
from p2m.tools.llm import LLMConfig, open_llm
from p2m.tools.parse import parse_task, read_task_asking
from p2m.tools.train import TrainConfig, finetune, label_prototypes, load_student, train_quick
from p2m.tools.types import Decision, TaskSpec

__all__ = ["RunOptions", "RunResult", "run_pipeline", "open_run", "open_store", "new_run_id"]


@dataclass
class RunOptions:
    """Everything a run needs besides the prompt; stored with the run so `resume` reuses it."""

    llm: LLMConfig = field(default_factory=LLMConfig)
    gen: GenConfig = field(default_factory=GenConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    finetune: bool = True
    # generative tasks: also try a cut-down student (for data-to-text also taught by the full one on new
    # records) and deploy it if nearly as good on validation (agent/pipeline_seq.py)
    fast_student: bool = False
    eval_file: str | None = None
    out: str | None = None
    retrieve: bool = True  # search the index for labelled data that fits, and train on it too
    retrieve_max: int = 1000  # at most this many retrieved rows, balanced over labels
    retrieve_candidates: int = 3  # how many top search results to try loading
    chroma_url: str | None = None

    def __post_init__(self) -> None:
        if self.retrieve_max < 0 or self.retrieve_candidates < 0:
            raise ConfigError(f"--retrieve-max must be ≥ 0, not {self.retrieve_max}" if self.retrieve_max < 0
                              else f"retrieve_candidates must be ≥ 0, not {self.retrieve_candidates}")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        llm = {k: v for k, v in vars(self.llm).items() if k != "api_key"}  # never store keys
        return {"llm": llm, "gen": self.gen.to_dict(), "train": self.train.to_dict(), "finetune": self.finetune,
                "fast_student": self.fast_student, "eval_file": self.eval_file, "out": self.out,
                "retrieve": self.retrieve, "retrieve_max": self.retrieve_max,
                "retrieve_candidates": self.retrieve_candidates, "chroma_url": self.chroma_url}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any], api_key: str | None = None) -> RunOptions:
        return cls(
            llm=LLMConfig(**{**d["llm"], "api_key": api_key}),
            gen=GenConfig(**d["gen"]),
            train=TrainConfig(**d["train"]),
            finetune=d["finetune"],
            fast_student=bool(d.get("fast_student")),
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


def _log(progress: bool, msg: str) -> None:
    if progress:
        from tqdm.auto import tqdm

        tqdm.write(msg)


class _Run:
    """One run's stages, sharing the store, the folder and (lazily) the teacher."""

    def __init__(self, store: RunStore, run_id: str, folder: Path, prompt: str, opts: RunOptions, progress: bool,
                 llm: Any = None) -> None:  # fmt: skip
        self.store, self.run_id, self.folder, self.prompt, self.opts = store, run_id, folder, prompt, opts
        self.progress = progress
        self._llm = llm
        if llm is not None and getattr(llm, "on_call", None) is None:
            llm.on_call = self._on_call  # an injected client (tests, UI sessions) is accounted too
            llm.on_failure = self._on_failure
        self._stack = contextlib.ExitStack()

    @property
    def llm(self) -> Any:
        if self._llm is None:  # started only when a stage needs it
            _log(self.progress, "starting the teacher LLM …")
            cache = ResponseCache(home_dir() / "llm_cache.sqlite")
            self._llm = self._stack.enter_context(
                open_llm(
                    self.opts.llm,
                    cache=cache,
                    on_call=self._on_call,
                    on_failure=self._on_failure,
                    log_path=self.folder / "logs" / "llm_server.log",
                )
            )
        return self._llm

    def _on_call(self, purpose: str, cached: bool, pt: int, ct: int, seconds: float) -> None:
        self.store.log_llm_call(self.run_id, purpose, cached, pt, ct, seconds)

    def _on_failure(self, purpose: str, kind: str) -> None:
        self.store.log_llm_failure(self.run_id, purpose, kind)

    def close(self) -> None:
        self._stack.close()

    def decide(self, action: str, reason: str, **args: Any) -> None:
        """Record a rule decision; a stage that starts again after a kill does not record it twice."""
        last = (self.store.decisions(self.run_id) or [None])[-1]
        if last and (last["action"], last["reason"], last["args"]) == (action, reason, args):
            return
        self.store.add_decision(self.run_id, Decision(action, reason, "rule", args).to_dict())

    # stages -------------------------------------------------------------------------------------
    def parse(self, classification_only: bool = True) -> TaskSpec:
        """The run's TaskSpec (parsed once, then read from the store).

        Raises:
            TaskError: the prompt has no task, or (`classification_only`, as for the planner) it is not a
                classification task.
        """
        found = self.store.task_version(self.run_id)
        if found:
            spec = TaskSpec.from_dict(found[1])
            self._only_classification(spec, classification_only)
            return spec
        self.store.set_stage(self.run_id, "parse")
        # Deterministic first: a prompt with no task fails before the teacher starts, which is asked only
        # when that reading is unsure or would refuse the task.
        spec = read_task_asking(self.prompt, lambda: self.llm).spec
        self._only_classification(spec, classification_only)
        self.store.add_task_version(self.run_id, spec.to_dict(), note="parsed from the prompt")
        self.store.stage_done(self.run_id, "parse", {"labels": spec.labels, "task_type": spec.task_type})
        _log(self.progress, f"task: {spec.task_type}, labels {spec.labels}, input kind '{spec.input_kind}'")
        return spec

    @staticmethod
    def _only_classification(spec: TaskSpec, classification_only: bool) -> None:
        if classification_only and spec.task_type != "classification":
            raise TaskError(
                f"this is a {spec.task_type} task; the planner (--target, --planner) decides for classification"
                " only: run it without those options"
            )

    def retrieve(self, spec: TaskSpec, eval_pairs: list | None) -> dict[str, Any]:
        """Search the index for labelled data that fits the task, map it, and keep a balanced sample."""
        done = self.store.stage_info(self.run_id, "retrieve")
        if done is not None:
            return done
        self.store.set_stage(self.run_id, "retrieve")
        info = _retrieve(self, spec, eval_pairs)
        self.store.stage_done(self.run_id, "retrieve", info)
        return info

    def generate(self, spec: TaskSpec) -> dict[str, Any]:
        done = self.store.stage_info(self.run_id, "generate")
        if done is not None:
            return done
        from tqdm.auto import tqdm

        self.store.set_stage(self.run_id, "generate")
        kept = self.store.examples(self.run_id, kept=True, source_prefix="generated:")
        counts = {label: sum(r["output"] == label for r in kept) for label in spec.labels}
        start = self.store.max_request_index(self.run_id) + 1
        self.decide(
            "generate_more",
            "per-label generation to the example budget",
            labels=spec.labels,
            n=self.opts.gen.examples,
        )
        bar = tqdm(total=self.opts.gen.examples, initial=sum(counts.values()), desc="generate", unit="ex",
                   disable=not self.progress)  # fmt: skip
        try:
            stats = generate_examples(
                spec, self.llm, self.opts.gen, start_index=start, counts=counts,
                on_rows=lambda rows: self.store.add_examples(self.run_id, rows), run_id=self.run_id, progress=bar,
            )  # fmt: skip
        finally:
            bar.close()
        stats["kept_per_second"] = round(stats["usable"] / max(stats["seconds"], 1e-9), 3)
        self.store.stage_done(self.run_id, "generate", stats)
        return stats

    def curate(self, spec: TaskSpec) -> dict[str, Any]:
        done = self.store.stage_info(self.run_id, "curate")
        if done is not None:
            return done
        self.store.set_stage(self.run_id, "curate")
        rows = self.store.examples(self.run_id, kept=None, source_prefix="generated:")
        if not rows:
            raise TaskError(
                "the teacher produced no usable examples; raise --gen-minutes or use a stronger --llm"
            )
        updates, report = curate(rows, spec, seed=self.opts.train.seed)
        self.store.update_examples(updates)
        if min(report["per_label"].values(), default=0) < 2:
            raise TaskError(
                f"too few usable examples for some labels {report['per_label']}; raise --examples or --gen-minutes,"
                " or describe each label more clearly"
            )
        self.store.stage_done(self.run_id, "curate", report)
        _log(
            self.progress,
            f"kept {report['kept']} examples {report['per_label']}, dropped {report['dropped']}",
        )
        return report

    def data(self, spec: TaskSpec) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """Training rows (generated and retrieved) and validation rows (generated held-out + demonstrations)."""
        rows = self.store.examples(self.run_id, kept=True)
        train = [(r["input"], r["output"]) for r in rows if r["split"] == "train" and r["source"] != "prompt"]
        val = [(r["input"], r["output"]) for r in rows if r["split"] == "validation"] + list(
            spec.demonstrations
        )
        return train, val

    def train(self, spec: TaskSpec) -> dict[str, Any]:
        done = self.store.stage_info(self.run_id, "train")
        if done is not None:
            return done
        self.store.set_stage(self.run_id, "train")
        self.store.delete_experiments(self.run_id, "")  # a stage killed mid-training trains again
        train, val = self.data(spec)
        cand_dir = self.folder / "candidates"
        results = []
        t0 = time.perf_counter()
        prior = label_prototypes(spec.labels, spec.input_kind)
        quick, report, params = train_quick(train, val, spec.labels, prior=prior)
        results.append(
            self._record("quick-trial", quick, report, params, len(train), time.perf_counter() - t0)
        )
        _log(
            self.progress,
            f"quick trial (embeddings + logistic regression + label prior): validation {report.score:.3f}",
        )
        if self.opts.finetune:
            reason = "fine-tune MiniLM as a sequence classifier, distilled from the quick trial (teacher labels + label prior)"
            self.decide("train", reason, student="all-MiniLM-L6-v2")
            t0 = time.perf_counter()
            soft = quick.probabilities([x for x, _ in train])
            student, report, params = finetune(
                train, val, spec.labels, self.opts.train, progress=self.progress, soft=soft
            )
            results.append(
                self._record("finetune", student, report, params, len(train), time.perf_counter() - t0)
            )
            _log(self.progress, f"fine-tuned MiniLM: validation {report.score:.3f}")
        best = max(results, key=lambda r: (r["score"], r["macro_f1"], r["name"] == "finetune"))
        self.decide(
            "select", f"{best['name']} has the best validation score ({best['score']:.3f})", name=best["name"]
        )
        info = {"best": best, "candidates": results, "candidates_dir": str(cand_dir)}
        self.store.stage_done(self.run_id, "train", info)
        return info

    def _record(
        self, name: str, student: Any, report: Any, params: dict, n: int, seconds: float
    ) -> dict[str, Any]:
        path = self.folder / "candidates" / name
        if path.exists():
            shutil.rmtree(path)
        faults.point("model")
        student.save(path)
        self.store.add_experiment(self.run_id, {"name": name, "student": student.kind, "params": params, "n_train": n,
                                                "report": report.to_dict(), "model_path": str(path), "seconds": seconds})  # fmt: skip
        return {"name": name, "kind": student.kind, "score": report.score, "macro_f1": report.scores.get("macro_f1", 0.0),
                "path": str(path), "report": report.to_dict()}  # fmt: skip

    def deploy(
        self,
        spec: TaskSpec,
        gen: dict,
        cur: dict,
        trained: dict,
        eval_pairs: list | None,
        retrieved: dict | None = None,
    ) -> dict[str, Any]:
        self.store.set_stage(self.run_id, "deploy")
        best = trained["best"]
        model_dir = self.folder / "model"
        deploy.copy_model(best["path"], model_dir)
        student = load_student(model_dir)
        user_report = None
        if eval_pairs:
            t0 = time.perf_counter()
            preds = student.predict([x for x, _ in eval_pairs])
            user_report = classification_report(
                [y for _, y in eval_pairs], preds, spec.labels, [x for x, _ in eval_pairs]
            )
            user_report.ms_per_example = round(1000 * (time.perf_counter() - t0) / len(eval_pairs), 3)
            user_report = user_report.to_dict()
        train, val = self.data(spec)
        report = self.report(spec, best, trained["candidates"], user_report, train, val, gen, cur, retrieved,
                             base="sentence-transformers/all-MiniLM-L6-v2")  # fmt: skip
        deploy.write_run_folder(self.folder, spec, report, train, val, teacher=self._teacher_name())
        self.store.stage_done(self.run_id, "deploy", {"model": str(model_dir)})
        return report

    def report(self, spec: TaskSpec, best: dict[str, Any], candidates: list[dict[str, Any]], user_report: Any,
               train: list, val: list, gen: dict, cur: dict, retrieved: dict | None, base: str) -> dict[str, Any]:  # fmt: skip
        """The run's report.json: the task, the chosen student, its scores, the data, cost and decisions."""
        return {
            "run": self.run_id,
            "task": spec.to_dict(),
            "student": {"kind": best["kind"], "base": base, "selected": best["name"]},
            "validation": best["report"],
            "candidates": [
                {k: c[k] for k in ("name", "kind", "score", "macro_f1", "ms_per_example") if k in c}
                for c in candidates
            ],  # fmt: skip
            "user_eval": user_report,
            "data": {
                "train": len(train),
                "validation": len(val),
                "generation": gen,
                "curation": cur,
                "retrieval": retrieved or {},
            },  # fmt: skip
            "teacher": self.opts.llm.model
            or ("embedded" if self.opts.llm.base_url is None else self.opts.llm.base_url),
            "cost": self.store.ledger(self.run_id),
            "decisions": self.store.decisions(self.run_id),
        }

    def _teacher_name(self) -> str:
        from p2m.tools.llm import EMBEDDED_MODEL

        return (
            EMBEDDED_MODEL
            if self.opts.llm.base_url is None
            else f"{self.opts.llm.model} at {self.opts.llm.base_url}"
        )


def _retrieve(r: _Run, spec: TaskSpec, eval_pairs: list | None) -> dict[str, Any]:
    from p2m.memory.vectors import open_index
    from p2m.tools.hubindex import hub_offline
    from p2m.tools.retrieve import load_candidate, map_columns, sample_examples
    from p2m.tools.search import choose_student, search, spec_query

    info: dict[str, Any] = {"rows": 0, "tried": [], "used": []}
    if not r.opts.retrieve or r.opts.retrieve_max == 0:
        r.decide("retrieve", "skipped: retrieval is off for this run", n=0)
        return info
    index = open_index(r.opts.chroma_url)
    if not any(index.count(k) for k in ("datasets", "local")):
        r.decide("retrieve", "skipped: the index is empty (`p2m index add PATH` or `p2m index build`)", n=0)
        return info
    student, why = choose_student(index, spec)
    r.decide("choose_student", why, student=student.id)
    cands = search(index, spec_query(spec), "datasets", k=max(20, r.opts.retrieve_candidates),
                   task_type=spec.task_type, labels=spec.labels)  # fmt: skip
    # only what can be loaded here: the user's data and the HF cache always, the Hub when online
    online = not hub_offline()
    cands = [c for c in cands if c.kind == "local" or c.metadata.get("cached_path") or online]
    exclude = [x for x, _ in eval_pairs or []] + [x for x, _ in spec.demonstrations]
    budget = r.opts.retrieve_max
    for cand in cands[: r.opts.retrieve_candidates]:
        tried = {"id": cand.id, "score": cand.score}
        info["tried"].append(tried)
        try:
            table, provenance = load_candidate(cand)
        except P2MError as e:
            tried["skipped"] = str(e)
            continue
        llm = r.llm if r.opts.llm.base_url else None  # the embedded teacher is not asked to judge mappings
        cmap = map_columns(table, spec, llm=llm, seed=r.opts.train.seed)
        if cmap is None:
            tried["skipped"] = "no text column with labels that map onto two or more task labels"
            continue
        rows, rep = sample_examples(table, cmap, spec, budget, provenance, exclude=exclude, seed=r.opts.train.seed,
                                    licence=cand.metadata.get("license"))  # fmt: skip
        if not rows:
            tried["skipped"] = "no usable rows after mapping and dedup"
            continue
        r.store.add_examples(r.run_id, rows)
        tried.update(rep)
        info["used"].append(cand.id)
        info["rows"] += len(rows)
        budget -= len(rows)
        mapped = {k: v for k, v in cmap.labels.items() if v}
        r.decide("retrieve", f"{cand.id}: {len(rows)} rows, labels mapped {mapped} by {cmap.by}",
                 dataset=cand.id, n=len(rows))  # fmt: skip
        _log(r.progress, f"retrieved {len(rows)} rows from {cand.id} (labels {mapped})")
        if budget <= 0:
            break
    if not info["used"]:
        r.decide("retrieve", "no found data set could be loaded and mapped onto the task", n=0)
    return info


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
        import os

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


def run_pipeline(
    prompt: str | None = None,
    options: RunOptions | None = None,
    *,
    resume: str | None = None,
    progress: bool = True,
    llm: Any = None,
    store: RunStore | None = None,
) -> RunResult:
    """Run (or resume) the fixed pipeline and deploy the best student.

    Args:
        prompt: the task description (ignored when resuming).
        options: settings; when resuming, the stored ones are used.
        resume: a run id to continue.
        progress: print progress bars and stage lines.
        llm: an LLMClient to use instead of starting one (tests).
        store: the run store (default: the one under the p2m home).

    Raises:
        P2MError: a readable failure; the run is marked failed (or interrupted on Ctrl-C) and can be resumed.
    """
    store = store or open_store()
    run_id, folder, prompt, options, _ = open_run(store, prompt, options, resume)
    eval_pairs = load_jsonl_pairs(options.eval_file) if options.eval_file else None
    r = _Run(store, run_id, folder, prompt, options, progress, llm)
    _log(progress, f"run {run_id} → {folder}")
    with recorded(store, run_id), contextlib.closing(r):
        spec = r.parse(classification_only=False)
        if spec.task_type != "classification":  # QA, code, data-to-text, text generation
            from p2m.agent.pipeline_seq import run_seq_stages

            eval_refs = load_jsonl_refs(options.eval_file) if options.eval_file else None
            report = run_seq_stages(r, spec, eval_refs)
            (folder / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
            return RunResult(run_id, folder, spec, report)
        if eval_pairs:
            bad = sorted({y for _, y in eval_pairs} - set(spec.labels))
            if bad:
                raise TaskError(f"--eval file has outputs {bad} that are not task labels {spec.labels}")
        retrieved = r.retrieve(spec, eval_pairs)
        gen = r.generate(spec)
        cur = r.curate(spec)
        trained = r.train(spec)
        report = r.deploy(spec, gen, cur, trained, eval_pairs, retrieved)
        (folder / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return RunResult(run_id, folder, spec, report)
