"""The chat's intents for the kinds that write their output: extractive QA, text-to-code, data-to-text and
text generation.

A mixin of `ChatSession` (agent/chat.py). What differs from classification: there are no labels; a
wish about the outputs ("make the answers shorter", "use a formal tone") becomes a hint the teacher
gets with every output it writes (tools/generate_seq.py), except for extractive QA, whose answers are
spans picked from the passage — there, shorter or longer answers are a bound on the answers kept;
examples the user gives before the first version show the teacher what to write (demonstrations).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from p2m.agent.intents import Intent
from p2m.agent.refine import USER_DROP, drop_where, words_outside
from p2m.agent.versions import metric_name
from p2m.tools.parse import qa_input, qa_parts, read_task_asking, record_fields
from p2m.tools.types import TaskSpec, default_metric

__all__ = ["SeqIntents", "SEQ_NAMES", "OUTPUT_LENGTH_HINT", "sample_lines"]

SEQ_NAMES = {"extractive_qa": "extractive QA (the answer is a span of the passage)",
             "text_to_code": "text to Python code", "data_to_text": "data to text",
             "text_generation": "text generation"}  # fmt: skip
# what the teacher is asked when the outputs are too long / too short
OUTPUT_LENGTH_HINT = {"long": "Keep the output short: one sentence, nothing extra.",
                      "short": "Write a longer output: two or three sentences with more detail."}  # fmt: skip


def _clip(text: str, n: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def sample_lines(rows: list[dict[str, Any]], task_type: str) -> list[str]:
    """A few examples as chat lines: '[label] text', 'question → answer' (QA), 'input → output'."""
    if task_type == "classification":
        return [f"- [{r['output']}] {r['input']}" for r in rows]
    if task_type == "extractive_qa":
        return [
            f"- {_clip((qa_parts(r['input']) or ('', r['input']))[1])} → {_clip(r['output'])}" for r in rows
        ]
    return [f"- {_clip(r['input'])} → {_clip(r['output'])}" for r in rows]


class SeqIntents:
    """Refinements of a chat session whose task writes its output (`self` is the ChatSession)."""

    store: Any
    run_id: str | None
    state: dict[str, Any]
    options: Any

    def _seq_hint(self) -> str:
        """Everything the user asked of the outputs, as one instruction for the teacher."""
        length = [OUTPUT_LENGTH_HINT[self.state["length"]]] if self.state.get("length") else []
        return " ".join([*length, *self.state.get("style", [])])

    def _example_question(self, spec: TaskSpec) -> str | None:
        """The question for examples when the task needs them (None: go on). Data-to-text cannot start
        without an example record; the others are asked once (real rows to check the model on)."""
        if spec.task_type == "data_to_text" and not any(
            len(record_fields(x)) >= 2 for x, _ in spec.demonstrations
        ):
            return ("I need at least one example record with its text to learn the fields from. Paste one or two, "
                    "e.g. 'Input: name[Blue Spice], area[riverside] / Output: Blue Spice is by the river.'")  # fmt: skip
        if spec.demonstrations or self.state.get("asked_example"):
            return None
        self.state["asked_example"] = True
        how = ("'Passage: … / Question: … / Answer: …' (the answer copied from the passage)"
               if spec.task_type == "extractive_qa" else "'Input: … / Output: …'")  # fmt: skip
        return (f"Paste one or two examples as {how}: the teacher writes more like them, and I check the model on "
                "them (real rows). (Say 'go' to start without.)")  # fmt: skip

    def _check_written(
        self, spec: TaskSpec, pairs: list[tuple[str, str]]
    ) -> tuple[list[tuple[str, str]], str]:
        """The pairs that fit the task (QA inputs in the one QA format), and what is wrong with the others."""
        good: list[tuple[str, str]] = []
        bad: list[str] = []
        for x, y in pairs:
            if spec.task_type == "extractive_qa":
                parts = qa_parts(x)
                if parts is None or y not in parts[0]:
                    bad.append(_clip(y, 40))
                    continue
                x = qa_input(*parts)
            elif spec.task_type == "data_to_text" and len(record_fields(x)) < 2:
                bad.append(_clip(x, 40))
                continue
            good.append((x, y))
        if not bad:
            return good, ""
        what = ("are not 'Passage: … / Question: … / Answer: …' with the answer copied from the passage"
                if spec.task_type == "extractive_qa" else "are not records like 'name[Blue Spice], area[riverside]'")  # fmt: skip
        return good, f"{len(bad)} of your examples {what}, so I left them out: {'; '.join(bad[:3])}."

    def _take_demonstrations(self, pairs: list[tuple[str, str]], spec: TaskSpec, intent: Intent) -> None:
        """Examples before the first version: they show the teacher what to write (and are real rows)."""
        if self.state["asking"] == "labels":  # the reading could not tell the task type: read it with them
            text = spec.instruction + "\n\n" + "\n\n".join(f"Input: {x}\nOutput: {y}" for x, y in pairs)
            spec = read_task_asking(text, lambda: self.llm).spec
            outs = list(dict.fromkeys(y for _, y in pairs))
            if (
                spec.task_type != "classification"
                and len(outs) >= 2
                and all(len(y.split()) <= 3 for y in outs)
            ):
                # asked for labels, answered with examples whose outputs are a few short names: those are labels
                spec = dataclasses.replace(spec, task_type="classification", labels=outs,
                                           metric=default_metric("classification"), demonstrations=list(pairs))  # fmt: skip
            note, n = "read again with your examples", len(spec.demonstrations)
        else:
            good, problem = self._check_written(spec, pairs)
            if problem:
                self._say(problem)
            if not good:
                return
            spec = dataclasses.replace(spec, demonstrations=[*spec.demonstrations, *good])
            note, n = f"{len(good)} examples of yours", len(good)
        self.state["asking"], self.state["type_unsure"] = None, False
        self._new_version(spec, note, intent)
        self._say(f"I use your {n} example{'s' * (n != 1)} to show the teacher what to write, and check the model "
                  f"on them (real rows).\n\n{self._restate(spec, None)}")  # fmt: skip
        self._ask_or_run(spec)

    def _length_seq(self, intent: Intent, spec: TaskSpec) -> None:
        """The outputs are too long or too short: a hint for the teacher, or (QA) a bound on the answers."""
        direction = intent.args.get("direction", "long")
        rows = self.store.examples(self.run_id, kept=True, source_prefix="generated:")
        lengths = sorted(len(r["output"].split()) for r in rows)
        mid = lengths[(len(lengths) - 1) // 2] if lengths else 0
        if spec.task_type == "extractive_qa":
            bounds = {"max_words": max(1, mid)} if direction == "long" else {"min_words": mid + 1}
            outside = sum(words_outside(r, bounds) for r in rows)
            if outside in (0, len(rows)):  # nothing would change, or nothing would be left
                self._say("The answers are spans copied from the passages, and "
                          f"{'they are as short as they get' if direction == 'long' else 'none is longer'}; paste "
                          "examples of the answers you want instead.")  # fmt: skip
                return
            self.state["bounds"] = bounds
            wish = (f"at most {bounds['max_words']} word{'s' * (bounds['max_words'] != 1)}" if direction == "long"
                    else f"at least {bounds['min_words']} words")  # fmt: skip
            n = drop_where(self.store, self.run_id, lambda x: words_outside(x, bounds),
                           f"{USER_DROP} answer too {direction}", generated_only=True)  # fmt: skip
            self._new_version(spec, f"answers of {wish}", intent)
            self._say(f"Answers of extractive QA are spans copied from the passage, so I keep answers of {wish} from "
                      f"now on: I dropped {n} generated examples and write {n} new ones.")  # fmt: skip
            self._run_if_started(spec, n, f"answers of {wish}")
            return
        self.state["length"] = direction
        too = (lambda r: len(r["output"].split()) > mid) if direction == "long" else (
            lambda r: len(r["output"].split()) < mid)  # fmt: skip
        n = self._drop_generated(too, f"{USER_DROP} output too {direction}")
        new = max(n, self.options.gen.examples // 4, 4)
        self._new_version(spec, f"outputs were too {direction}", intent)
        self._say(f"I dropped {n} generated examples with the {'longest' if direction == 'long' else 'shortest'} "
                  f"outputs and write {new} new ones, asking the teacher: “{self._seq_hint()}”")  # fmt: skip
        self._run_if_started(spec, new, f"outputs too {direction}")

    def _on_style(self, intent: Intent, spec: TaskSpec, message: str) -> None:
        hint = intent.args["hint"].strip()
        if not hint.endswith((".", "!", "?")):
            hint += "."
        if spec.task_type == "extractive_qa":
            self._say("The answers of extractive QA are spans copied from the passage, so a style does not apply; "
                      "you can say 'make the answers shorter' (or longer).")  # fmt: skip
            return
        if spec.task_type == "classification":
            for lab in spec.labels:
                self.state["hints"][lab] = f"{self.state['hints'].get(lab, '')} {hint}".strip()
        elif hint not in self.state.setdefault("style", []):
            self.state["style"].append(hint)
        n = self._drop_generated(lambda x: True, f"{USER_DROP} style changed")
        self._new_version(spec, f"style: {hint}", intent)
        asked = self._seq_hint() if spec.task_type != "classification" else hint
        self._say(
            f"From now on I ask the teacher: “{asked}” I set aside {n} generated examples and write new ones."
        )
        self._run_if_started(spec, self._everything(spec), f"style: {hint}")

    def _seq_restate(self, spec: TaskSpec, v: int) -> str:
        if self.state.get("type_unsure"):
            return (f"Task v{v}: “{_clip(spec.instruction, 200)}” — I cannot tell yet whether the model should pick "
                    "a label or write text.")  # fmt: skip
        demos = f"; {len(spec.demonstrations)} example(s) from you" if spec.demonstrations else ""
        return (f"Task v{v}: {SEQ_NAMES.get(spec.task_type, spec.task_type)} — {_clip(spec.instruction, 200)} "
                f"Language: {spec.language}; metric: {metric_name(spec.metric)}{demos}.")  # fmt: skip
