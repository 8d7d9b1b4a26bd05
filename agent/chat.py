"""A conversation with the agent about one task of any kind: describe it, answer a question or two, refine,
deploy.

`ChatSession.handle(message)` reads what the message asks for (agent/intents.py), carries it out and
returns the agent's replies. Every refinement makes a new TaskSpec version in the run store, redoes
only what it affects (agent/refine.py), retrains and reports the scores — on real rows first, then on
teacher-written rows, each with its rows and 90% interval — next to the previous version's. The
conversation, the versions and the session's settings live in the run store (the session id is the
run id), so a new process — a reloaded web page, another terminal — re-attaches with
`ChatSession.attach(run_id)` and nothing is lost.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from p2m.agent.chat_data import DataIntents
from p2m.agent.chat_labels import LabelIntents
from p2m.agent.chat_seq import SeqIntents, sample_lines
from p2m.agent.intents import HELP, SEQ_HELP, Intent, llm_intent, looks_foreign, parse_intent
from p2m.agent.options import RunOptions, open_run, open_store
from p2m.agent.refine import USER_DROP, drop_where, sample, train_version
from p2m.agent.run import Run
from p2m.agent.versions import compare, history_table, scores_line, write_version_plot
from p2m.errors import ConfigError, P2MError
from p2m.memory import ResponseCache, RunStore, home_dir
from p2m.tools.kinds import kind_for
from p2m.tools.parse import read_task_asking
from p2m.tools.types import Decision, TaskSpec

__all__ = ["ChatSession", "MAX_MESSAGE"]

MAX_MESSAGE = 20_000  # characters; longer messages are refused with a clear reply (nothing is cut silently)


class ChatSession(DataIntents, LabelIntents, SeqIntents):
    """One conversation about one task (one run), of any task kind. Thread-safe: one message at a time.

    The user's examples and data-wide changes are in agent/chat_data.py, classification intents in
    agent/chat_labels.py, those of the kinds that write text in agent/chat_seq.py.

    Args:
        store: the run store (default: the one under the p2m home).
        options: run settings for a new session (budgets, teacher, student).
        llm: an LLMClient to use instead of starting the teacher (tests, the UI's shared client).
        on_reply: called with each reply as soon as it is made (streaming to a terminal).
    """

    def __init__(self, store: RunStore | None = None, options: RunOptions | None = None, llm: Any = None,
                 on_reply: Callable[[str], None] | None = None) -> None:  # fmt: skip
        self.store = store or open_store()
        self.options = options or RunOptions(retrieve=False)
        self.on_reply = on_reply
        self.run_id: str | None = None
        self.folder: Path | None = None
        self.state: dict[str, Any] = _new_state()
        self._llm = llm
        self._stack = contextlib.ExitStack()
        self._busy = threading.Lock()
        self.working_on = ""
        self._progress: tuple[int, int] | None = None  # (first request index, examples wanted) of the work

    # persistence --------------------------------------------------------------------------------
    @classmethod
    def attach(cls, run_id: str, store: RunStore | None = None, llm: Any = None,
               on_reply: Callable[[str], None] | None = None) -> ChatSession:  # fmt: skip
        """Re-attach to a session (by its run id) started earlier, in this process or another."""
        import os

        store = store or open_store()
        run = store.get_run(run_id)
        if run is None:
            raise ConfigError(f"no session {run_id!r}; `p2m runs` lists them")
        options = RunOptions.from_dict(run["config"], api_key=os.environ.get("OPENAI_API_KEY"))
        s = cls(store, options, llm, on_reply)
        s.run_id, s.folder = run_id, Path(run["folder"])
        s.state = {**_new_state(), **(run["config"].get("chat") or {})}
        return s

    def _save(self) -> None:
        run = self.store.get_run(self.run_id)
        self.store.update_config(self.run_id, {**run["config"], **self.options.to_dict(), "chat": self.state})

    def messages(self) -> list[dict[str, Any]]:
        """The conversation so far: [{id, role, content}] (empty before a task is given)."""
        return self.store.chat_messages(self.run_id) if self.run_id else list(self.state["pending"])

    def spec(self) -> TaskSpec | None:
        found = self.store.task_version(self.run_id) if self.run_id else None
        return TaskSpec.from_dict(found[1]) if found else None

    @property
    def versions(self) -> list[dict[str, Any]]:
        """The trained versions, oldest first: version, note, metrics, data counts."""
        return list(self.state["versions"])

    # the teacher --------------------------------------------------------------------------------
    @property
    def llm(self) -> Any:
        if self._llm is None:  # started only when something needs it, kept for the session
            from p2m.tools.llm_open import open_llm

            log = (self.folder or home_dir()) / "logs" / "llm_server.log"
            self._llm = self._stack.enter_context(open_llm(self.options.llm, cache=ResponseCache(home_dir() / "llm_cache.sqlite"),
                                                           on_call=self._on_call, log_path=log,
                                                           on_failure=self._on_failure))  # fmt: skip
        return self._llm

    @property
    def capable(self) -> bool:
        """Whether free text goes to the LLM: an endpoint the user gave, not the embedded 135M teacher."""
        if self._llm is not None:
            return bool(getattr(self._llm, "capable", False))
        return self.options.llm.base_url is not None

    def _on_call(self, purpose: str, cached: bool, pt: int, ct: int, seconds: float) -> None:
        if self.run_id:
            self.store.log_llm_call(self.run_id, purpose, cached, pt, ct, seconds)

    def _on_failure(self, purpose: str, kind: str) -> None:
        if self.run_id:
            self.store.log_llm_failure(self.run_id, purpose, kind)

    def close(self) -> None:
        self._stack.close()

    # the conversation ---------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._busy.locked()

    def handle(self, message: str, files: list[str] | None = None) -> list[str]:
        """Work on one user message (and uploaded example files); returns the agent's replies."""
        message = (message or "").replace("\x00", "")
        if not self._busy.acquire(blocking=False):
            self._record("user", message)
            text = (f"I am still working on {self.working_on or 'the last message'}; your message is kept in the"
                    " history — send it again when I am done.")  # fmt: skip
            self._record("assistant", text)  # not `_say`: the replies being collected are the other message's
            return [text]
        try:
            out: list[str] = []
            self._replies = out
            if len(message) > MAX_MESSAGE:
                self._record("user", message[:MAX_MESSAGE] + " …")
                self._say(f"That message is {len(message):,} characters; I read at most {MAX_MESSAGE:,}. Upload"
                          " long example lists as a file instead.")  # fmt: skip
                return out
            if not message.strip() and not files:
                self._say("Your message is empty. Describe the task, or say 'help'.")
                return out
            if message.strip():
                self._record("user", message)
            try:
                for path in files or []:
                    self._upload(path)
                if message.strip():
                    self._dispatch(message)
            except P2MError as e:
                self._say(f"Error: {e}")
            return out
        finally:
            self.working_on = ""
            self._busy.release()

    def _record(self, role: str, content: str) -> None:
        if self.run_id:
            self.store.add_chat_message(self.run_id, role, content)
        else:
            self.state["pending"].append(
                {"id": len(self.state["pending"]) + 1, "role": role, "content": content}
            )

    def _say(self, text: str) -> str:
        self._record("assistant", text)
        if getattr(self, "_replies", None) is not None:
            self._replies.append(text)
        if self.on_reply:
            self.on_reply(text)
        return text

    def _dispatch(self, message: str) -> None:
        spec = self.spec()
        intent = parse_intent(message, has_task=spec is not None, asking=self.state["asking"])
        if intent.kind == "unknown" and self.capable:
            intent = llm_intent(self.llm, message, spec.to_dict() if spec else {}) or intent
        handler = getattr(self, f"_on_{intent.kind}")
        self.working_on = intent.kind.replace("_", " ")
        handler(intent, spec, message)

    # intents ------------------------------------------------------------------------------------
    def _on_task(self, intent: Intent, spec: Any, message: str) -> None:
        reading = read_task_asking(message, lambda: self.llm)  # the teacher only where the reading is unsure
        spec = reading.spec
        run_id, folder, _, self.options, _ = open_run(
            self.store, message, self.options, None, {"chat": self.state}
        )
        self.run_id, self.folder = run_id, folder
        for m in self.state["pending"]:
            self.store.add_chat_message(run_id, m["role"], m["content"])
        self.state["pending"] = []
        # text generation read only as the fallback, without examples: a classification whose labels are
        # missing, or text to write? Asked, not guessed.
        fallback = spec.task_type == "text_generation" and reading.why.startswith("no cue")
        self.state["type_unsure"] = fallback and not spec.demonstrations
        self._new_version(spec, "parsed from your description", intent)
        self._say(self._restate(spec, 1))
        self._ask_or_run(spec)

    def _ask_or_run(self, spec: TaskSpec) -> None:
        """Ask what is ambiguous (one question at a time), else train the first version."""
        st, cls = self.state, spec.task_type == "classification"
        question = None
        if st.get("type_unsure") or (cls and len(spec.labels) < 2):
            st["asking"], question = "labels", self._labels_question(spec)
        elif not st.get("asked_language") and looks_foreign(spec):
            st["asking"], st["asked_language"] = "language", True
            question = ("Your description does not read like English. Which language should the examples be "
                        "written in (e.g. 'Spanish')? (Say 'go' to keep English.)")  # fmt: skip
        elif cls and spec.input_kind == "text" and not spec.demonstrations and not st["asked_kind"]:
            st["asking"], st["asked_kind"] = "input_kind", True
            question = (
                "What is one input — a support ticket, a tweet, a product review…? (Say 'go' to keep 'text'.)"
            )
        elif not cls and (ask := self._example_question(spec)):
            st["asking"], question = "example", ask
        if question:
            self._save()
            self._say(question)
            return
        st["asking"] = None
        self._run(spec, self._everything(spec), "first version")

    def _everything(self, spec: TaskSpec) -> list[str] | int:
        """What a version that rewrites all generated data generates: every label, or a full set of examples."""
        return list(spec.labels) if spec.task_type == "classification" else self.options.gen.examples

    def _on_go(self, intent: Intent, spec: TaskSpec, message: str) -> None:
        if self.state["versions"]:
            v = self.state["versions"][-1]
            self._say(
                f"Version {v['version']} is trained ({scores_line(v)}). Refine it, or say 'stop and deploy'."
            )
        else:
            if self.state["type_unsure"]:  # 'go' to "labels, or text?": text, written without an example
                self.state["type_unsure"], self.state["asked_example"] = False, True
            self.state["asking"] = None
            self._ask_or_run(spec)

    def _on_length(self, intent: Intent, spec: TaskSpec, message: str) -> None:
        if spec.task_type == "classification":
            self._length_labels(intent, spec)
        else:
            self._length_seq(intent, spec)

    def _on_bigger_model(self, intent: Intent, spec: TaskSpec, message: str) -> None:
        opts = self.options
        if spec.task_type == "classification" and not opts.finetune:
            opts.finetune = True
            what = "fine-tune all-MiniLM-L6-v2 as a sequence classifier (before: only embeddings + a linear head)"
        else:
            opts.train = dataclasses.replace(opts.train, epochs=opts.train.epochs + 2)
            base = kind_for(spec.task_type).students(spec)[0].base
            what = (
                f"train longer ({opts.train.epochs} epochs); {base} is the largest student available offline"
            )
        self._new_version(spec, "bigger student", intent)
        self._say(f"I will {what}.")
        self._run_if_started(spec, [] if spec.task_type == "classification" else 0, "bigger student")

    def _on_retrain(self, intent: Intent, spec: TaskSpec, message: str) -> None:
        self._new_version(spec, "retrained on the current data", intent)
        self._run_if_started(spec, [] if spec.task_type == "classification" else 0, "retrained")

    def _on_deploy(self, intent: Intent, spec: TaskSpec, message: str) -> None:
        if not self.state["versions"]:
            self._say("Nothing is trained yet; say 'go' first.")
            return
        v = self.state["versions"][-1]
        self.state["deployed"] = v["version"]
        self._save()
        self.store.add_decision(self.run_id, Decision("stop", "you asked to stop and deploy", "rule",
                                                      {"version": v["version"]}).to_dict())  # fmt: skip
        self._say(f"Deployed version {v['version']}: {scores_line(v)}.{_better_note(self.state['versions'], v)}\n"
                  f"model: {self.folder / 'model'}\ncard: {self.folder / 'README.md'}\n"
                  f"try: p2m predict {self.run_id} {_example(spec)} | p2m serve {self.run_id}")  # fmt: skip

    def _on_why(self, intent: Intent, spec: Any, message: str) -> None:
        decisions = self.store.decisions(self.run_id) if self.run_id else []
        recent = decisions[self.state["decision_mark"] :] or decisions[-5:]
        if not recent:
            self._say("I have not decided anything yet.")
            return
        lines = [
            f"- {d['action']} ({'by the LLM' if d['by'] == 'llm' else 'by rule'}): {d['reason']}"
            for d in recent[-8:]
        ]
        self._say("Here is what I did last, and why:\n" + "\n".join(lines))

    def _on_history(self, intent: Intent, spec: Any, message: str) -> None:
        if not self.state["versions"]:
            self._say("No version is trained yet.")
            return
        self._say(history_table(self.state["versions"]))

    def _help(self, spec: TaskSpec | None) -> str:
        return HELP if spec is None or spec.task_type == "classification" else SEQ_HELP

    def _on_help(self, intent: Intent, spec: Any, message: str) -> None:
        self._say(self._help(spec))

    def _on_chat(self, intent: Intent, spec: Any, message: str) -> None:
        self._say(intent.args.get("reply") or self._help(spec))

    def _on_unknown(self, intent: Intent, spec: Any, message: str) -> None:
        self._say("I did not understand that as a change to the task. " + self._help(spec))

    # shared steps -------------------------------------------------------------------------------
    def drop_examples(self, ids: list[int]) -> str:
        """Drop examples by id (the UI's data table); the next version trains without them."""
        if not self.run_id:
            raise ConfigError("there is no task yet")
        if self.busy:
            raise ConfigError(
                f"I am working on {self.working_on or 'a message'}; drop examples when it is done"
            )
        wanted = set(ids)
        n = drop_where(self.store, self.run_id, lambda x: x["id"] in wanted, f"{USER_DROP} dropped by hand")
        text = f"Dropped {n} example{'s' * (n != 1)} by hand. Say 'retrain' to train without them."
        if n < len(wanted):
            text += f" ({len(wanted) - n} of the ids were not kept examples of this task.)"
        return self._say(text)

    def generated(self) -> tuple[int, int] | None:
        """(examples written, examples wanted) by the version being made, for progress bars."""
        if not self.busy or not self._progress or not self.run_id:
            return None
        since, want = self._progress
        rows = self.store.examples(self.run_id, kept=None, source_prefix="generated:")
        return sum(1 for x in rows if (x["request_index"] or -1) >= since and not x["drop_reason"]), want

    def _drop_generated(self, pred: Any, reason: str) -> int:
        return drop_where(self.store, self.run_id, pred, reason, generated_only=True)

    def _new_version(self, spec: TaskSpec, note: str, intent: Intent) -> int:
        version = self.store.add_task_version(self.run_id, spec.to_dict(), note=note)
        self.state["decision_mark"] = len(self.store.decisions(self.run_id))
        self.store.add_decision(self.run_id, Decision("refine_task", f"you asked: {note}", "llm" if intent.by == "llm" else "rule",
                                                      {"version": version, "intent": intent.kind}).to_dict())  # fmt: skip
        self._save()
        return version

    def _run_if_started(self, spec: TaskSpec, generate: list[str] | int, note: str) -> None:
        if self.state["versions"] or not self.state["asking"]:
            self._run(spec, generate, note)

    def _run(self, spec: TaskSpec, generate: list[str] | int, note: str) -> None:
        """Train one version: `generate` is the labels to write examples for (classification) or how many
        new examples to write (the other kinds)."""
        version = self.store.task_version(self.run_id)[0]
        self.working_on = f"version {version} ({note})"
        cls = spec.task_type == "classification"
        if cls:
            what = f"writing examples for {', '.join(generate)}, then " if generate else ""
            per_label = -(-self.options.gen.examples // max(1, len(spec.labels)))
            want = per_label * len(generate)
        else:
            what = f"writing {generate} new examples, then " if generate else ""
            want = int(generate)
        self._say(f"Working on version {version}: {what}training …")
        r = Run(self.store, self.run_id, self.folder, "", self.options, False, self.llm)
        self._progress = (self.store.max_request_index(self.run_id) + 1, want)
        rec = train_version(r, spec, version, generate, self.state["hints"], self.state["banned"],
                            hint="" if cls else self._seq_hint(), bounds=None if cls else self.state.get("bounds"))  # fmt: skip
        rec["note"] = note
        shown = sample(self.store, self.run_id, version)
        if shown:
            self._say("A sample of the new data:\n" + "\n".join(sample_lines(shown, spec.task_type)))
        prev = self.state["versions"][-1] if self.state["versions"] else None
        self.state["versions"].append(rec)
        self._save()
        write_version_plot(self.state["versions"], self.folder / "versions.png")
        self._say(f"Version {version} trained ({rec['model']}): {scores_line(rec)}.\n\n{compare(prev, rec)}\n\n"
                  "Refine it in plain words, ask 'why did you do that?', or say 'stop and deploy'.")  # fmt: skip

    def _restate(self, spec: TaskSpec, version: int | None) -> str:
        v = version or self.store.task_version(self.run_id)[0]
        if spec.task_type != "classification" or self.state.get("type_unsure"):
            return self._seq_restate(spec, v)
        demos = f"; {len(spec.demonstrations)} example(s) from you" if spec.demonstrations else ""
        labels = ", ".join(spec.labels) if spec.labels else "(none found yet)"
        return (f"Task v{v}: classify each {spec.input_kind} as one of: {labels}. Language: {spec.language}; "
                f"metric: {spec.metric}{demos}.")  # fmt: skip


def _example(spec: TaskSpec) -> str:
    """An input to try the model on, quoted for a shell: the first demonstration's, else "some text"."""
    import shlex

    return shlex.quote(spec.demonstrations[0][0] if spec and spec.demonstrations else "some text")


def _better_note(versions: list[dict[str, Any]], v: dict[str, Any]) -> str:
    """Which earlier version scored higher than `v` on the same rows (real rows first), if any."""
    real = (v.get("real") or {}).get("rows")
    same = [x for x in versions if x is not v and real and (x.get("real") or {}).get("rows") == real]
    if same:
        best = max(same, key=lambda x: x["real"]["score"])
        if best["real"]["score"] > v["real"]["score"]:
            return (f" (v{best['version']} scored higher on the same {real} real rows: "
                    f"{scores_line(best)}; say so to go back)")  # fmt: skip
        return ""
    best = max(versions, key=lambda x: x["score"])
    if best is not v and best["score"] > v["score"] and not real:
        return f" (v{best['version']} scored higher on teacher-written rows: {scores_line(best)}; say so to go back)"
    return ""


def _new_state() -> dict[str, Any]:
    return {"asking": None, "asked_kind": False, "asked_language": False, "asked_example": False,
            "type_unsure": False, "versions": [], "hints": {}, "style": [], "length": None, "bounds": None,
            "banned": [], "deployed": None, "decision_mark": 0, "pending": []}  # fmt: skip
