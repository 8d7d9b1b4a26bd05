"""The chat's data intents, for every task kind: the user's own examples (pasted or uploaded), dropping
examples that mention a word, and the language examples are written in.

A mixin of `ChatSession` (agent/chat.py). Examples from the user are real rows: after the first
version they train, and every third one (from three on) is held out as a real validation row, so each
version is scored on rows nobody generated (`Run.data()` reads held-out `user:` rows as real).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from p2m.agent.intents import LANGUAGES, Intent
from p2m.agent.refine import USER_DROP, drop_where, read_upload, row_mentions
from p2m.errors import ConfigError
from p2m.tools.types import TaskSpec

__all__ = ["DataIntents", "HOLD_OUT_EVERY"]

HOLD_OUT_EVERY = 3  # the user's 3rd, 6th, … example is a real validation row


class DataIntents:
    """The user's rows and data-wide changes of a chat session (`self` is the ChatSession)."""

    store: Any
    run_id: str | None
    state: dict[str, Any]

    def _on_examples(self, intent: Intent, spec: TaskSpec, message: str) -> None:
        self._add_pairs([tuple(p) for p in intent.args["pairs"]], "user:chat", spec, intent)

    def _upload(self, path: str) -> None:
        spec = self.spec()
        if spec is None or (spec.task_type == "classification" and len(spec.labels) < 2):
            raise ConfigError("describe the task (with its labels) before uploading examples")
        name = Path(path).name
        self._record("user", f"(uploaded {name})")
        self._add_pairs(read_upload(path), f"user:{name}", spec, Intent("examples", {"file": name}))

    def _add_pairs(self, pairs: list[tuple[str, str]], source: str, spec: TaskSpec, intent: Intent) -> None:
        """Real examples from the user: before the first version of a task that writes text, or as the answer
        to a question, they show the teacher what to write; after, they train, and every third is held out as
        a real validation row (from three on)."""
        first = not self.state["versions"]
        if first and (self.state["asking"] in ("labels", "example") or spec.task_type != "classification"):
            self._take_demonstrations(pairs, spec, intent)
            return
        check = self._check_labelled if spec.task_type == "classification" else self._check_written
        good, problem = check(spec, pairs)
        if problem:
            self._say(problem)
        if not good:
            return
        before = sum(r["source"].startswith("user:") for r in self.store.examples(self.run_id, kept=None))
        rows = [{"input": x, "output": y, "source": source,
                 "split": "validation" if (before + i + 1) % HOLD_OUT_EVERY == 0 else "train"} for i, (x, y) in enumerate(good)]  # fmt: skip
        self.store.add_examples(self.run_id, rows)
        held = sum(r["split"] == "validation" for r in rows)
        self._new_version(spec, f"{len(good)} real examples added ({source})", intent)
        if held:
            self._say(f"Added {len(good)} real examples ({source}): {len(good) - held} to train on, and I keep {held} "
                      "of them to check the model on (real validation rows, never trained on).")  # fmt: skip
        else:
            self._say(f"Added {len(good)} real examples for training ({source}); from the third one on, I keep "
                      "every third to check the model on.")  # fmt: skip
        self._run_if_started(
            spec, [] if spec.task_type == "classification" else 0, f"{len(good)} real examples"
        )

    def _on_drop_word(self, intent: Intent, spec: TaskSpec, message: str) -> None:
        word = intent.args["word"].strip()
        if not word:
            self._say("Which word? For example: 'drop examples that mention prices'.")
            return
        self.state["banned"] = sorted({*self.state["banned"], word})
        hits = [x for x in self.store.examples(self.run_id, kept=True)
                if x["source"] != "prompt" and row_mentions(x, word, spec.task_type)]  # fmt: skip
        n = drop_where(self.store, self.run_id, lambda x: x["id"] in {h["id"] for h in hits},
                       f"{USER_DROP} mentions '{word}'")  # fmt: skip
        self._new_version(spec, f"dropped examples that mention '{word}'", intent)
        self._say(
            f"Dropped {n} examples that mention '{word}'; new examples that mention it will be dropped too."
        )
        # a task that writes text gets as many new examples as it lost; a classifier keeps what is left
        new = sum(h["source"].startswith("generated:") for h in hits)
        self._run_if_started(spec, [] if spec.task_type == "classification" else new, f"without '{word}'")

    def _on_language(self, intent: Intent, spec: TaskSpec, message: str) -> None:
        name = intent.args["language"]
        code = LANGUAGES.get(name, name if name in LANGUAGES.values() else None)
        if code is None:
            self._say(f"I do not know the language '{name}'; try one of: {', '.join(sorted(LANGUAGES))}.")
            return
        lang = next(k for k, v in LANGUAGES.items() if v == code).capitalize()
        base = re.split(r"\nWrite every (?:input|text) in ", spec.instruction)[0]
        what = "input" if spec.task_type == "classification" else "text"
        spec = dataclasses.replace(spec, language=code, instruction=f"{base}\nWrite every {what} in {lang}.")
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
        self._run(spec, self._everything(spec), f"in {lang}")
