"""Run: one run's engine — the store, the folder, the teacher, and the stages, once for every task kind.

The planner (agent/planner.py), chat and refinement (agent/chat.py, agent/refine.py) and the bench
drive a `Run`; a task kind (tools/kinds/) supplies what differs between task types. Every stage
records its result in the run store before the next starts and reads it back instead of working
again, so a run killed at any point resumes where it stopped: examples stay, the LLM cache answers
repeated requests, trained candidates are recorded as experiments.

Each candidate is scored twice, never mixed: on teacher-written validation rows and on real rows
(the prompt's demonstrations, examples the user labelled, held-out retrieved rows, an `--eval`
file), each with its row count and a 90% interval (tools/validation.py).
"""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path
from typing import Any

from p2m import faults
from p2m.agent.options import RunOptions
from p2m.errors import TaskError
from p2m.memory import ResponseCache, RunStore, home_dir
from p2m.tools.kinds import Kind, TrainSettings, kind_for
from p2m.tools.llm import EMBEDDED_MODEL
from p2m.tools.llm_open import open_llm
from p2m.tools.parse import read_task_asking
from p2m.tools.types import Decision, TaskSpec
from p2m.tools.validation import estimate, row_scores

__all__ = ["Run", "log", "USER_DROP"]

USER_DROP = "user:"  # drop reasons the user caused start with this; curation never revives them


def log(progress: bool, msg: str) -> None:
    """A progress line that does not break tqdm bars."""
    if progress:
        from tqdm.auto import tqdm

        tqdm.write(msg)


class Run:
    """One run's stages, sharing the store, the folder and (lazily) the teacher.

    Args:
        store: the run store.
        run_id: the run (already recorded in the store, see agent/options.open_run).
        folder: where its model, card, data and reports go.
        prompt: the task description.
        opts: its options.
        progress: print progress bars and stage lines.
        llm: an LLM client to use instead of starting one (tests, a UI session's shared client).
    """

    def __init__(self, store: RunStore, run_id: str, folder: Path, prompt: str, opts: RunOptions,
                 progress: bool = False, llm: Any = None) -> None:  # fmt: skip
        self.store, self.run_id, self.folder, self.prompt, self.opts = store, run_id, folder, prompt, opts
        self.progress = progress
        self._llm = llm
        self._spec: TaskSpec | None = None
        self._eval_rows: list[tuple[str, list[str]]] | None = None
        if llm is not None and getattr(llm, "on_call", None) is None:
            llm.on_call = self._on_call  # an injected client (tests, UI sessions) is accounted too
            llm.on_failure = self._on_failure
        self._stack = contextlib.ExitStack()

    # the teacher --------------------------------------------------------------------------------
    @property
    def llm(self) -> Any:
        if self._llm is None:  # started only when a stage needs it
            log(self.progress, "starting the teacher LLM …")
            cache = ResponseCache(home_dir() / "llm_cache.sqlite")
            self._llm = self._stack.enter_context(
                open_llm(
                    self.opts.llm,
                    cache=cache,
                    on_call=self._on_call,
                    on_failure=self._on_failure,
                    log_path=self.folder / "logs" / "llm_server.log",
                )  # fmt: skip
            )
        return self._llm

    def _on_call(self, purpose: str, cached: bool, pt: int, ct: int, seconds: float) -> None:
        self.store.log_llm_call(self.run_id, purpose, cached, pt, ct, seconds)

    def _on_failure(self, purpose: str, kind: str) -> None:
        self.store.log_llm_failure(self.run_id, purpose, kind)

    def teacher_name(self) -> str:
        o = self.opts.llm
        return EMBEDDED_MODEL if o.base_url is None else f"{o.model} at {o.base_url}"

    def close(self) -> None:
        self._stack.close()

    def decide(self, action: str, reason: str, by: str = "rule", **args: Any) -> None:
        """Record a decision; a stage that starts again after a kill does not record it twice."""
        last = (self.store.decisions(self.run_id) or [None])[-1]
        if last and (last["action"], last["reason"], last["args"]) == (action, reason, args):
            return
        self.store.add_decision(self.run_id, Decision(action, reason, by, args).to_dict())  # type: ignore[arg-type]

    def log(self, msg: str) -> None:
        log(self.progress, msg)

    # the task -----------------------------------------------------------------------------------
    @property
    def spec(self) -> TaskSpec:
        """The run's current TaskSpec (parsed once, then read from the store; chat adds versions)."""
        found = self.store.task_version(self.run_id)
        if found:
            return TaskSpec.from_dict(found[1])
        if self._spec is None:
            self._spec = self.parse()
        return self._spec

    def parse(self) -> TaskSpec:
        """Read the prompt (the teacher is asked only when the deterministic reading is unsure)."""
        found = self.store.task_version(self.run_id)
        if found:
            return TaskSpec.from_dict(found[1])
        self.store.set_stage(self.run_id, "parse")
        spec = read_task_asking(self.prompt, lambda: self.llm).spec
        self.store.add_task_version(self.run_id, spec.to_dict(), note="parsed from the prompt")
        self.store.stage_done(self.run_id, "parse", {"labels": spec.labels, "task_type": spec.task_type})
        labels = f", labels {spec.labels}" if spec.labels else ""
        self.log(f"task: {spec.task_type}{labels}, input kind '{spec.input_kind}'")
        return spec

    @property
    def kind(self) -> Kind:
        return kind_for(self.spec.task_type)

    def first_students(self) -> list[str]:
        """The students the first round trains."""
        names = list(self.opts.students or self.kind.default_students(self.spec))
        if not self.opts.finetune:  # --no-finetune: the quick students only
            names = [n for n in names if n != "finetune"] or names[:1]
        return names

    # data ---------------------------------------------------------------------------------------
    def eval_rows(self) -> list[tuple[str, list[str]]]:
        """The user's `--eval` rows (input, references), checked against the task's labels."""
        if self._eval_rows is None:
            self._eval_rows = []
            if self.opts.eval_file:
                from p2m.tools.evaluate import load_jsonl_refs

                self._eval_rows = load_jsonl_refs(self.opts.eval_file)
                spec = self.spec
                if spec.task_type == "classification":
                    bad = sorted({r[0] for _, r in self._eval_rows} - set(spec.labels))
                    if bad:
                        raise TaskError(
                            f"--eval file has outputs {bad} that are not task labels {spec.labels}"
                        )
        return self._eval_rows

    def data(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[tuple[str, list[str], str]]]:
        """(training rows, teacher-written validation rows, real validation rows with their source).

        Training: every kept training row but the prompt's demonstrations. Teacher validation: the held-out
        split of the generated rows. Real validation: the demonstrations, held-out rows people or datasets
        labelled (chat, uploads, retrieval) and the `--eval` file.
        """
        spec = self.spec
        rows = self.store.examples(self.run_id, kept=True)
        labels = set(spec.labels)
        ok = (lambda y: y in labels) if spec.task_type == "classification" else (lambda y: bool(y))
        train = [(r["input"], r["output"]) for r in rows
                 if r["split"] == "train" and r["source"] != "prompt" and ok(r["output"])]  # fmt: skip
        teacher = [(r["input"], r["output"]) for r in rows
                   if r["split"] == "validation" and r["source"].startswith("generated:") and ok(r["output"])]  # fmt: skip
        real = [(x, [y], "prompt") for x, y in spec.demonstrations if ok(y)]
        real += [(r["input"], [r["output"]], r["source"]) for r in rows
                 if r["split"] == "validation" and r["source"].startswith(("user:", "hub:")) and ok(r["output"])]  # fmt: skip
        real += [(x, refs, "eval:" + Path(self.opts.eval_file or "").name) for x, refs in self.eval_rows()]
        return train, teacher, real

    # stages -------------------------------------------------------------------------------------
    def stage(self, key: str, work: Any) -> dict[str, Any]:
        """Run `work()` once: its result is recorded under `key`, and read back on the next call or resume."""
        done = self.store.stage_info(self.run_id, key)
        if done is not None:
            return done
        self.store.set_stage(self.run_id, key)
        t0 = time.perf_counter()
        info = work()
        info.setdefault("seconds", round(time.perf_counter() - t0, 3))
        self.store.stage_done(self.run_id, key, info)
        return info

    def retrieve(self) -> dict[str, Any]:
        """Search the index for labelled data that fits, map it, keep a balanced sample (a share held out)."""
        from p2m.agent.retrieval import retrieve

        return self.stage("retrieve", lambda: retrieve(self))

    def generate(self, k: int = 0, focus: dict[str, Any] | None = None, n: int | None = None,
                 tag: dict[str, Any] | None = None, key: str | None = None) -> dict[str, Any]:  # fmt: skip
        """Round `k`'s examples from the teacher: `n` more (round 0: the run's example budget).

        Rows are tagged with `tag` (default {"round": k} after the first round) in their quality, and the
        stage is recorded under `key` (default generate / generate:<k>); chat versions use their own.
        """
        import dataclasses

        tag = tag if tag is not None else ({"round": k} if k else {})

        def work() -> dict[str, Any]:
            from tqdm.auto import tqdm

            def ours(
                q: dict[str, Any],
            ) -> bool:  # this round's (or version's) rows: a resumed stage counts them
                return (
                    all(q.get(t) == v for t, v in tag.items())
                    if tag
                    else not (q.get("round") or q.get("version"))
                )

            mine = [x for x in self.store.examples(self.run_id, kept=True, source_prefix="generated:")
                    if ours(x["quality"] or {})]  # fmt: skip
            cfg = self.opts.gen
            if n is not None or k:
                cfg = dataclasses.replace(cfg, examples=max(2, int(n or 50)), minutes=0 if k else cfg.minutes)
            if not k and not tag:
                self.decide("generate_more", f"the first round: {cfg.examples} examples from the teacher (the example "
                            "budget), checked and curated", n=cfg.examples)  # fmt: skip
            bar = tqdm(total=cfg.examples, initial=len(mine), desc=f"generate{f' (round {k})' if k else ''}",
                       unit="ex", disable=not self.progress)  # fmt: skip

            def store_rows(rows: list[dict[str, Any]]) -> None:
                self.store.add_examples(
                    self.run_id, [{**r, "quality": {**r.get("quality", {}), **tag}} for r in rows]
                )

            try:
                stats = self.kind.generate(self.spec, self.llm, cfg, existing=mine, on_rows=store_rows,
                                           start_index=self.store.max_request_index(self.run_id) + 1,
                                           run_id=self.run_id, progress=bar, focus=focus or {})  # fmt: skip
            finally:
                bar.close()
            stats["kept_per_second"] = round(stats["usable"] / max(stats["seconds"], 1e-9), 3)
            return stats

        return self.stage(key or ("generate" if k == 0 else f"generate:{k}"), work)

    def curate(self, k: int = 0, key: str | None = None, later: bool | None = None) -> dict[str, Any]:
        """Vet every generated row (dedup, checks, balance, split); rows of later rounds only ever train."""

        def work() -> dict[str, Any]:
            rows = [x for x in self.store.examples(self.run_id, kept=None, source_prefix="generated:")
                    if not (x["drop_reason"] or "").startswith(USER_DROP)]  # fmt: skip
            if not rows:
                raise TaskError(
                    "the teacher produced no usable examples; raise --gen-minutes or use a stronger --llm"
                )
            updates, report = self.kind.curate(rows, self.spec, seed=self.opts.train.seed,
                                               later=k > 0 if later is None else later)  # fmt: skip
            before = {x["id"]: x for x in rows}
            if (
                k > 0
            ):  # earlier rounds' rows stay as they were: validation, and so the scores, stay comparable
                updates = [u for u in updates if (before[u["id"]]["quality"] or {}).get("round") == k]
            for u in updates:
                old = before.get(u["id"]) or {}
                if "quality" in u:  # curation's signals join what the row already said (its round, version)
                    u["quality"] = {**(old.get("quality") or {}), **u["quality"]}
                # validation stays what it was after the first round: scores of rounds stay comparable
                if (old.get("quality") or {}).get("round", 0) > 0 and u.get("split") == "validation":
                    u["split"] = "train"
            self.store.update_examples(updates)
            self.log(f"kept {report['kept']} examples, dropped {report['dropped']}")
            return report

        return self.stage(key or ("curate" if k == 0 else f"curate:{k}"), work)

    def train(self, k: int, students: list[str], overrides: dict[str, Any] | None = None,
              prefix: str | None = None) -> dict[str, Any]:  # fmt: skip
        """Train `students` on everything kept so far; each is an experiment `r<k>-<name>` scored twice."""
        from p2m.agent.scoring import select, train_candidates

        prefix = prefix if prefix is not None else f"r{k}-"
        return self.stage(f"train:{k}" if prefix == f"r{k}-" else f"train:{prefix}",
                          lambda: train_candidates(self, students, overrides or {}, prefix, select))  # fmt: skip

    def settings(self, overrides: dict[str, Any]) -> TrainSettings:
        t = self.opts.train
        return TrainSettings(epochs=int(overrides.get("epochs") or t.epochs), lr=overrides.get("lr"), seed=t.seed,
                             extra=t.to_dict(), folder=self.folder)  # fmt: skip

    def save_candidate(self, name: str, student: Any) -> Path:
        path = self.folder / "candidates" / name
        if path.exists():
            shutil.rmtree(path)
        faults.point("model")
        student.save(path)
        return path

    def estimates_of(self, student: Any, teacher: list[tuple[str, str]],
                     real: list[tuple[str, list[str], str]]) -> dict[str, Any]:  # fmt: skip
        """Score a student on both validation sets: reports, per-row scores, estimates and batched ms/example."""
        spec, kind = self.spec, self.kind
        out: dict[str, Any] = {}
        timed = [x for x, _ in teacher] or [x for x, _, _ in real]
        if timed:
            student.predict(timed[:4])  # warm-up (first allocations), not timed
        for source, rows in (
            ("teacher", [(x, [y]) for x, y in teacher]),
            ("real", [(x, r) for x, r, _ in real]),
        ):
            if not rows:
                out[source] = None
                continue
            inputs = [x for x, _ in rows]
            t0 = time.perf_counter()
            preds = student.predict(inputs)
            ms = 1000 * (time.perf_counter() - t0) / len(inputs)
            rep = kind.score(spec, preds, [r for _, r in rows], inputs)
            rep.ms_per_example = round(ms, 3)
            per_row = row_scores(rep.metric, preds, [r for _, r in rows])
            out[source] = {**rep.to_dict(), "rows": per_row,
                           "estimate": estimate(source, rep.metric, rep.score, per_row, seed=self.opts.train.seed).to_dict()}  # fmt: skip
        return out

    def train_fit(self, student: Any, train: list[tuple[str, str]], n: int = 48) -> float:
        """The student's score (0–1) on up to `n` of its own training rows: low means it underfits."""
        from p2m.tools.validation import unit

        rows = train[:: max(1, len(train) // n)][:n]
        if not rows:
            return 0.0
        inputs = [x for x, _ in rows]
        rep = self.kind.score(self.spec, student.predict(inputs), [[y] for _, y in rows], inputs)
        return round(unit(rep.metric, rep.score), 4)

    def deploy(self, best: dict[str, Any], candidates: list[dict[str, Any]], extra: dict[str, Any] | None = None
               ) -> dict[str, Any]:  # fmt: skip
        """Copy the chosen candidate to model/, write the card, data and report.json; returns the report."""
        from p2m.agent.report import build_report, write_outputs

        self.store.set_stage(self.run_id, "deploy")
        report = build_report(self, best, candidates, extra or {})
        write_outputs(self, best, report)
        self.store.stage_done(self.run_id, "deploy", {"model": str(self.folder / "model")})
        return report
