"""A conversation with the agent about one task: describe it, answer a question or two, refine, deploy.

`ChatSession.handle(message)` reads what the message asks for (agent/intents.py), carries it out and
returns the agent's replies. Every refinement makes a new TaskSpec version in the run store, redoes
only what it affects (agent/refine.py), retrains and reports the metric next to the previous
version's. The conversation, the versions and the session's settings live in the run store (the
session id is the run id), so a new process — a reloaded web page, another terminal — re-attaches
with `ChatSession.attach(run_id)` and nothing is lost.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from p2m.agent.intents import HELP, LANGUAGES, Intent, llm_intent, looks_foreign, parse_intent
from p2m.agent.options import RunOptions, open_run, open_store
from p2m.agent.refine import (
    USER_DROP,
    compare,
    drop_where,
    history_table,
    mentions,
    read_upload,
    sample,
    train_version,
)
from p2m.agent.run import Run
from p2m.errors import ConfigError, P2MError
from p2m.memory import ResponseCache, RunStore, home_dir
from p2m.tools.parse import read_task_asking
from p2m.tools.types import Decision, TaskSpec

__all__ = ["ChatSession", "MAX_MESSAGE"]

MAX_MESSAGE = 20_000  # characters; longer messages are refused with a clear reply (nothing is cut silently)

_LENGTH_HINT = {"short": "Write two or three full sentences with concrete details.",
                "long": "Keep it to one short sentence."}  # fmt: skip


class ChatSession:
    """One conversation about one task (one run). Thread-safe: one message is worked on at a time.

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
            from p2m.tools.llm import open_llm

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
        spec = read_task_asking(
            message, lambda: self.llm
        ).spec  # the teacher only where the reading is unsure
        if spec.task_type in ("extractive_qa", "text_to_code", "data_to_text") and len(spec.labels) < 2:
            self._say(
                f"This reads like a {spec.task_type.replace('_', ' ')} task. The chat refines classification"
                " tasks for now; build this one with `p2m run` (same description), or name the labels to"
                " classify ('… as billing, bug or other')."
            )
            return
        run_id, folder, _, self.options, _ = open_run(
            self.store, message, self.options, None, {"chat": self.state}
        )
        self.run_id, self.folder = run_id, folder
        for m in self.state["pending"]:
            self.store.add_chat_message(run_id, m["role"], m["content"])
        self.state["pending"] = []
        spec.task_type = "classification"
        self._new_version(spec, "parsed from your description", intent)
        self._say(self._restate(spec, 1))
        self._ask_or_run(spec)

    def _ask_or_run(self, spec: TaskSpec) -> None:
        if len(spec.labels) < 2:
            self.state["asking"] = "labels"
            self._save()
            self._say(
                "Which labels should the model choose from? For example: 'labels: billing, bug, other'."
            )
        elif not self.state.get("asked_language") and looks_foreign(spec):
            self.state["asking"], self.state["asked_language"] = "language", True
            self._save()
            self._say(
                "Your description does not read like English. Which language should the examples be written in"
                " (e.g. 'Spanish')? (Say 'go' to keep English.)"
            )
        elif spec.input_kind == "text" and not spec.demonstrations and not self.state["asked_kind"]:
            self.state["asking"], self.state["asked_kind"] = "input_kind", True
            self._save()
            self._say(
                "What is one input — a support ticket, a tweet, a product review…? (Say 'go' to keep 'text'.)"
            )
        else:
            self.state["asking"] = None
            self._run(spec, spec.labels, "first version")

    def _on_set_labels(self, intent: Intent, spec: TaskSpec, message: str) -> None:
        labels = list(dict.fromkeys(intent.args["labels"]))
        gone = [lab for lab in spec.labels if lab not in labels]
        spec = dataclasses.replace(
            spec, labels=labels, demonstrations=[d for d in spec.demonstrations if d[1] in labels]
        )
        self._drop_labels(gone)
        self._new_version(spec, f"labels set to {', '.join(labels)}", intent)
        self._say(self._restate(spec, None))
        if not self.state["versions"]:
            self._ask_or_run(spec)
        else:
            self._run(
                spec, [lab for lab in labels if not self._count(lab)], f"labels set to {', '.join(labels)}"
            )

    def _on_input_kind(self, intent: Intent, spec: TaskSpec, message: str) -> None:
        spec = dataclasses.replace(spec, input_kind=intent.args["kind"] or "text")
        self._new_version(spec, f"one input is a {spec.input_kind}", intent)
        self.state["asking"] = None
        if self.state["versions"]:
            self._drop_generated(lambda x: True, f"{USER_DROP} input kind changed")
            self._run(spec, spec.labels, f"inputs are {spec.input_kind}s")
        else:
            self._ask_or_run(spec)

    def _on_go(self, intent: Intent, spec: TaskSpec, message: str) -> None:
        if self.state["versions"]:
            v = self.state["versions"][-1]
            self._say(
                f"Version {v['version']} is trained (accuracy {v['score']:.3f}). Refine it, or say 'stop and deploy'."
            )
        else:
            self.state["asking"] = None
            self._ask_or_run(spec)

    def _on_add_label(self, intent: Intent, spec: TaskSpec, message: str) -> None:
        label = intent.args["label"]
        if label.lower() in {lab.lower() for lab in spec.labels}:
            self._say(f"'{label}' is already a label ({', '.join(spec.labels)}).")
            return
        spec = dataclasses.replace(spec, labels=[*spec.labels, label])
        self._new_version(spec, f"added the label {label}", intent)
        self._say(
            f"Added the label '{label}'. I will write examples for {label} only; the others keep theirs."
        )
        self._run_if_started(spec, [label], f"added {label}")

    def _on_remove_label(self, intent: Intent, spec: TaskSpec, message: str) -> None:
        label = next((lab for lab in spec.labels if lab.lower() == intent.args["label"].lower()), None)
        if label is None:
            self._say(f"There is no label '{intent.args['label']}'; the labels are {', '.join(spec.labels)}.")
            return
        if len(spec.labels) <= 2:
            self._say("A classifier needs at least two labels; add another one before removing this one.")
            return
        spec = dataclasses.replace(spec, labels=[lab for lab in spec.labels if lab != label],
                                   demonstrations=[d for d in spec.demonstrations if d[1] != label])  # fmt: skip
        n = self._drop_labels([label])
        self._new_version(spec, f"removed the label {label}", intent)
        self._say(f"Removed the label '{label}' and its {n} examples (kept in the store, marked dropped).")
        self._run_if_started(spec, [], f"removed {label}")

    def _on_length(self, intent: Intent, spec: TaskSpec, message: str) -> None:
        label, direction = intent.args.get("label"), intent.args.get("direction", "short")
        if label and label.lower() not in {lab.lower() for lab in spec.labels}:
            self._say(f"There is no label '{label}'; the labels are {', '.join(spec.labels)}.")
            return
        labels = [lab for lab in spec.labels if not label or lab.lower() == label.lower()]
        for lab in labels:
            self.state["hints"][lab] = _LENGTH_HINT[direction]
        n = self._drop_generated(lambda x: x["output"] in labels, f"{USER_DROP} too {direction}")
        self._new_version(spec, f"{', '.join(labels)} examples were too {direction}", intent)
        self._say(f"I dropped {n} generated examples of {', '.join(labels)} and will write new ones, asking for "
                  f"{'longer' if direction == 'short' else 'shorter'} text.")  # fmt: skip
        self._run_if_started(spec, labels, f"{', '.join(labels)} too {direction}")

    def _on_examples(self, intent: Intent, spec: TaskSpec, message: str) -> None:
        self._add_pairs([tuple(p) for p in intent.args["pairs"]], "user:chat", spec, intent)

    def _upload(self, path: str) -> None:
        spec = self.spec()
        if spec is None or len(spec.labels) < 2:
            raise ConfigError("describe the task (with its labels) before uploading examples")
        name = Path(path).name
        self._record("user", f"(uploaded {name})")
        self._add_pairs(read_upload(path), f"user:{name}", spec, Intent("examples", {"file": name}))

    def _add_pairs(self, pairs: list[tuple[str, str]], source: str, spec: TaskSpec, intent: Intent) -> None:
        canon = {lab.lower(): lab for lab in spec.labels}
        good = [(x, canon[y.lower()]) for x, y in pairs if y.lower() in canon]
        bad = sorted({y for _, y in pairs if y.lower() not in canon})
        if bad:
            self._say(f"{len(pairs) - len(good)} examples have labels that are not in the task: {', '.join(bad)}. "
                      f"Say 'add a label {bad[0]}' first, then send them again.")  # fmt: skip
        if not good:
            return
        self.store.add_examples(
            self.run_id, [{"input": x, "output": y, "source": source, "split": "train"} for x, y in good]
        )
        self._new_version(spec, f"{len(good)} real examples added ({source})", intent)
        self._say(f"Added {len(good)} real examples for training ({source}); I keep them out of validation.")
        self._run_if_started(spec, [], f"{len(good)} real examples")

    def _on_drop_word(self, intent: Intent, spec: TaskSpec, message: str) -> None:
        word = intent.args["word"].strip()
        if not word:
            self._say("Which word? For example: 'drop examples that mention prices'.")
            return
        self.state["banned"] = sorted({*self.state["banned"], word})
        n = drop_where(
            self.store, self.run_id, lambda x: mentions(x["input"], word), f"{USER_DROP} mentions '{word}'"
        )
        self._new_version(spec, f"dropped examples that mention '{word}'", intent)
        self._say(
            f"Dropped {n} examples that mention '{word}'; new examples that mention it will be dropped too."
        )
        self._run_if_started(spec, [], f"without '{word}'")

    def _on_language(self, intent: Intent, spec: TaskSpec, message: str) -> None:
        name = intent.args["language"]
        code = LANGUAGES.get(name, name if name in LANGUAGES.values() else None)
        if code is None:
            self._say(f"I do not know the language '{name}'; try one of: {', '.join(sorted(LANGUAGES))}.")
            return
        lang = next(k for k, v in LANGUAGES.items() if v == code).capitalize()
        base = spec.instruction.split("\nWrite every input in ")[0]
        spec = dataclasses.replace(spec, language=code, instruction=f"{base}\nWrite every input in {lang}.")
        n = self._drop_generated(lambda x: True, f"{USER_DROP} language changed to {code}")
        if self.state["asking"] == "language":
            self.state["asking"] = None
        self._new_version(spec, f"examples in {lang}", intent)
        if not self.state["versions"]:
            self._say(f"Every example will be written in {lang}.")
            if not self.state["asking"]:
                self._ask_or_run(spec)
            return
        self._say(
            f"From now on every example is written in {lang}; I set aside {n} earlier ones and regenerate."
        )
        self._run(spec, spec.labels, f"in {lang}")

    def _on_bigger_model(self, intent: Intent, spec: TaskSpec, message: str) -> None:
        opts = self.options
        if not opts.finetune:
            opts.finetune = True
            what = "fine-tune all-MiniLM-L6-v2 as a sequence classifier (before: only embeddings + a linear head)"
        else:
            opts.train = dataclasses.replace(opts.train, epochs=opts.train.epochs + 2)
            what = f"fine-tune longer ({opts.train.epochs} epochs); all-MiniLM-L6-v2 is the largest student available offline"
        self._new_version(spec, "bigger student", intent)
        self._say(f"I will {what}.")
        self._run_if_started(spec, [], "bigger student")

    def _on_retrain(self, intent: Intent, spec: TaskSpec, message: str) -> None:
        self._new_version(spec, "retrained on the current data", intent)
        self._run_if_started(spec, [], "retrained")

    def _on_deploy(self, intent: Intent, spec: TaskSpec, message: str) -> None:
        if not self.state["versions"]:
            self._say("Nothing is trained yet; say 'go' first.")
            return
        v = self.state["versions"][-1]
        best = max(self.state["versions"], key=lambda x: x["score"])
        self.state["deployed"] = v["version"]
        self._save()
        self.store.add_decision(self.run_id, Decision("stop", "you asked to stop and deploy", "rule",
                                                      {"version": v["version"]}).to_dict())  # fmt: skip
        note = (
            ""
            if best is v
            else f" (v{best['version']} scored higher: {best['score']:.3f}; say so to go back)"
        )
        self._say(f"Deployed version {v['version']} (accuracy {v['score']:.3f}){note}.\nmodel: {self.folder / 'model'}\n"
                  f"card: {self.folder / 'README.md'}\ntry: p2m predict {self.run_id} \"some text\" | p2m serve {self.run_id}")  # fmt: skip

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

    def _on_help(self, intent: Intent, spec: Any, message: str) -> None:
        self._say(HELP)

    def _on_chat(self, intent: Intent, spec: Any, message: str) -> None:
        self._say(intent.args.get("reply") or HELP)

    def _on_unknown(self, intent: Intent, spec: Any, message: str) -> None:
        self._say("I did not understand that as a change to the task. " + HELP)

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

    def _count(self, label: str) -> int:
        return sum(x["output"] == label for x in self.store.examples(self.run_id, kept=True))

    def _drop_labels(self, labels: list[str]) -> int:
        return sum(drop_where(self.store, self.run_id, lambda x, lab=lab: x["output"] == lab,
                              f"{USER_DROP} label {lab} removed") for lab in labels)  # fmt: skip

    def _drop_generated(self, pred: Any, reason: str) -> int:
        return drop_where(self.store, self.run_id, pred, reason, generated_only=True)

    def _new_version(self, spec: TaskSpec, note: str, intent: Intent) -> int:
        version = self.store.add_task_version(self.run_id, spec.to_dict(), note=note)
        self.state["decision_mark"] = len(self.store.decisions(self.run_id))
        self.store.add_decision(self.run_id, Decision("refine_task", f"you asked: {note}", "llm" if intent.by == "llm" else "rule",
                                                      {"version": version, "intent": intent.kind}).to_dict())  # fmt: skip
        self._save()
        return version

    def _run_if_started(self, spec: TaskSpec, generate: list[str], note: str) -> None:
        if self.state["versions"] or not self.state["asking"]:
            self._run(spec, generate, note)

    def _run(self, spec: TaskSpec, generate: list[str], note: str) -> None:
        version = self.store.task_version(self.run_id)[0]
        self.working_on = f"version {version} ({note})"
        what = f"writing examples for {', '.join(generate)}, then " if generate else ""
        self._say(f"Working on version {version}: {what}training …")
        r = Run(self.store, self.run_id, self.folder, "", self.options, False, self.llm)
        per_label = -(-self.options.gen.examples // max(1, len(spec.labels)))
        self._progress = (self.store.max_request_index(self.run_id) + 1, per_label * len(generate))
        rec = train_version(r, spec, version, generate, self.state["hints"], self.state["banned"])
        rec["note"] = note
        shown = sample(self.store, self.run_id, version)
        if shown:
            self._say("A sample of the new data:\n" + "\n".join(f"- [{lab}] {text}" for lab, text in shown))
        prev = self.state["versions"][-1] if self.state["versions"] else None
        self.state["versions"].append(rec)
        self._save()
        self._say(f"Version {version} trained ({rec['model']}).\n\n{compare(prev, rec)}\n\n"
                  "Refine it in plain words, ask 'why did you do that?', or say 'stop and deploy'.")  # fmt: skip

    def _restate(self, spec: TaskSpec, version: int | None) -> str:
        v = version or self.store.task_version(self.run_id)[0]
        demos = f"; {len(spec.demonstrations)} example(s) from you" if spec.demonstrations else ""
        labels = ", ".join(spec.labels) if spec.labels else "(none found yet)"
        return (f"Task v{v}: classify each {spec.input_kind} as one of: {labels}. Language: {spec.language}; "
                f"metric: {spec.metric}{demos}.")  # fmt: skip


def _new_state() -> dict[str, Any]:
    return {"asking": None, "asked_kind": False, "asked_language": False, "versions": [], "hints": {}, "banned": [], "deployed": None,
            "decision_mark": 0, "pending": []}  # fmt: skip
