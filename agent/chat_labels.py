"""The chat's classification intents: labels (set, add, remove), what one input is, examples too short or long.

A mixin of `ChatSession` (agent/chat.py): it uses the session's store, state, `_say`, `_new_version` and
`_run`. The intents that make sense for every task kind live in agent/chat.py; those of the kinds that
write text in agent/chat_seq.py.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from p2m.agent.intents import Intent
from p2m.agent.refine import USER_DROP, drop_where
from p2m.tools.types import TaskSpec, default_metric

__all__ = ["LabelIntents", "LENGTH_HINT"]

# what to ask the teacher when the examples of a label are too short / too long
LENGTH_HINT = {"short": "Write two or three full sentences with concrete details.",
               "long": "Keep it to one short sentence."}  # fmt: skip


class LabelIntents:
    """Classification refinements of a chat session (`self` is the ChatSession: its store, state, `_say`,
    `_new_version`, `_run`, …)."""

    store: Any
    run_id: str | None
    state: dict[str, Any]

    def _no_labels(self, spec: TaskSpec) -> bool:
        """A task that writes text has no labels: say so (True) instead of changing them."""
        if spec.task_type == "classification":
            return False
        self._say(f"This is a {spec.task_type.replace('_', ' ')} task: the model writes its output, so it has no "
                  "labels. Say 'help' for what you can change.")  # fmt: skip
        return True

    def _on_set_labels(self, intent: Intent, spec: TaskSpec, message: str) -> None:
        labels = list(dict.fromkeys(intent.args["labels"]))
        if spec.task_type != "classification":
            if self.state["versions"]:
                self._no_labels(spec)
                return
            # the reading could not tell; labels make it a classification task
            spec = dataclasses.replace(
                spec, task_type="classification", metric=default_metric("classification")
            )
            self.state["type_unsure"] = False
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
            self._run(spec, self._everything(spec), f"inputs are {spec.input_kind}s")
        else:
            self._ask_or_run(spec)

    def _on_add_label(self, intent: Intent, spec: TaskSpec, message: str) -> None:
        if self._no_labels(spec):
            return
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
        if self._no_labels(spec):
            return
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

    def _length_labels(self, intent: Intent, spec: TaskSpec) -> None:
        """The examples of a label (or of all) are too short or too long: regenerate them with a hint."""
        label, direction = intent.args.get("label"), intent.args.get("direction", "short")
        if label and label.lower() not in {lab.lower() for lab in spec.labels}:
            self._say(f"There is no label '{label}'; the labels are {', '.join(spec.labels)}.")
            return
        labels = [lab for lab in spec.labels if not label or lab.lower() == label.lower()]
        for lab in labels:
            self.state["hints"][lab] = LENGTH_HINT[direction]
        n = self._drop_generated(lambda x: x["output"] in labels, f"{USER_DROP} too {direction}")
        self._new_version(spec, f"{', '.join(labels)} examples were too {direction}", intent)
        self._say(f"I dropped {n} generated examples of {', '.join(labels)} and will write new ones, asking for "
                  f"{'longer' if direction == 'short' else 'shorter'} text.")  # fmt: skip
        self._run_if_started(spec, labels, f"{', '.join(labels)} too {direction}")

    def _check_labelled(
        self, spec: TaskSpec, pairs: list[tuple[str, str]]
    ) -> tuple[list[tuple[str, str]], str]:
        """The pairs whose label is one of the task's (spelled as the task spells it), and what is wrong with
        the others ('' when nothing is)."""
        canon = {lab.lower(): lab for lab in spec.labels}
        good = [(x, canon[y.lower()]) for x, y in pairs if y.lower() in canon]
        bad = sorted({y for _, y in pairs if y.lower() not in canon})
        if not bad:
            return good, ""
        return good, (f"{len(pairs) - len(good)} examples have labels that are not in the task: {', '.join(bad)}. "
                      f"Say 'add a label {bad[0]}' first, then send them again.")  # fmt: skip

    def _count(self, label: str) -> int:
        return sum(x["output"] == label for x in self.store.examples(self.run_id, kept=True))

    def _drop_labels(self, labels: list[str]) -> int:
        return sum(drop_where(self.store, self.run_id, lambda x, lab=lab: x["output"] == lab,
                              f"{USER_DROP} label {lab} removed") for lab in labels)  # fmt: skip

    def _labels_question(self, spec: TaskSpec) -> str:
        """The question when the labels are missing (or the reading could not tell the task type)."""
        text = "Which labels should the model choose from? For example: 'labels: billing, bug, other'."
        if spec.task_type != "classification":
            text += (" If the model should write text instead (an answer, a description, code), paste an example"
                     " as 'Input: … / Output: …', or say 'go' to let it write text without one.")  # fmt: skip
        return text
