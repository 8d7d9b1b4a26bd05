"""Deployment: the run folder (model, card, data, report) and the Gradio demo.

RUN/model     the student (transformers `save_pretrained` + tokenizer + label map for a fine-tuned
              classifier; the MiniLM folder + `p2m_head.json` for the embedding + logistic-regression one;
              for the other task types a QA reader or a merged-LoRA causal LM + `p2m_seq.json`)
RUN/README.md the model card
RUN/data/     the training and validation data with provenance
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from p2m.errors import ConfigError
from p2m.tools.types import TaskSpec

__all__ = ["copy_model", "write_data", "write_run_folder", "model_card", "seq_model_card", "load_run_model", "build_demo",
           "serve"]  # fmt: skip


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")


def _link_or_copy(src: str, dst: str) -> str:
    """Weights are hard-linked (no second copy on disk); everything else, and any failed link, is copied.

    Candidates are written to fresh folders (a retrained one replaces its folder), so a linked file is
    never rewritten in place.
    """
    if src.endswith(WEIGHT_SUFFIXES):
        try:
            os.link(src, dst)
            return dst
        except OSError:
            pass
    return shutil.copy2(src, dst)


def copy_model(src: str | Path, dst: str | Path) -> Path:
    """Deploy a candidate's model folder to `dst` (replaced if it exists) without doubling its disk use."""
    dst = Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, copy_function=_link_or_copy)
    return dst


def _table(rows: list[list[Any]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def estimates_md(report: dict[str, Any]) -> str:
    """The two validation estimates, real rows first: what a user can trust leads."""
    est = report.get("estimates") or {}
    real, tw = est.get("real"), est.get("teacher")
    lines = []
    if real:
        lines.append(f"- **On real rows** ({real['rows']}: the prompt's demonstrations, examples people labelled, held-out "
                     f"retrieved data, an `--eval` file): {real['metric']} **{real['score']:.3f}** (90% interval "
                     f"{real['low']:.2f}–{real['high']:.2f}).")  # fmt: skip
    else:
        lines.append("- On real rows: none were given (add examples to the prompt, or `--eval FILE`).")
    if tw:
        lines.append(f"- On teacher-written rows ({tw['rows']}, held out from the generated data; they flatter the student: "
                     f"the teacher wrote its training rows too): {tw['metric']} {tw['score']:.3f} (90% interval "
                     f"{tw['low']:.2f}–{tw['high']:.2f}).")  # fmt: skip
    return "\n".join(lines)


def model_card(spec: TaskSpec, report: dict[str, Any], teacher: str) -> str:
    """The model card (README.md) of a run, from its report."""
    if spec.task_type != "classification":
        return seq_model_card(spec, report, teacher)
    val = report["validation"]
    per_label = [
        [label, s["precision"], s["recall"], s["f1"], s["support"]] for label, s in val["per_label"].items()
    ]
    data = report["data"]
    cur = data["curation"]
    cost = report["cost"]
    kind = report["student"]["kind"]
    if kind == "smollm-cls":
        usage = (
            "SmolLM2-135M with a classification head (LoRA merged); its input template is in `model/p2m_cls.json`:\n\n"
            '```python\nfrom p2m.tools.train import load_student\nload_student("model").predict(["your text"])\n```'
        )
    elif kind == "sequence-classifier":
        usage = (
            "```python\nfrom transformers import pipeline\n"
            'clf = pipeline("text-classification", model="model")\nclf("your text")\n```'
        )
    else:
        usage = (
            "The model is all-MiniLM-L6-v2 with mean pooling and a linear head (logistic regression on the\n"
            "embeddings plus a label-name prior; the head is also in `model/p2m_head.json`). Its class ships in\n"
            "`model/hf_head.py`:\n\n```python\nfrom transformers import pipeline\n"
            'clf = pipeline("text-classification", model="model", trust_remote_code=True)\nclf("your text")\n```'
        )
    user = report.get("user_eval")
    user_md = (
        f"\n\nOn the user's evaluation file ({user['n']} rows, never trained on): accuracy **{user['score']:.3f}**,"
        f" macro-F1 {user['scores']['macro_f1']:.3f}."
        if user
        else ""
    )
    demos = "\n".join(f"- `{i}` → **{o}**" for i, o in spec.demonstrations) or "- (none)"
    return f"""# p2m model: {spec.input_kind} classifier ({", ".join(spec.labels)})

Built by p2m from a plain-language task description, run `{report["run"]}`.

## Task
{spec.instruction}

Labels: {", ".join(f"`{label}`" for label in spec.labels)}. Demonstrations given in the prompt:
{demos}

## Model
Student: {report["student"]["base"]} ({kind}; selected `{report["student"]["selected"]}` by validation score
among {", ".join(f"{c['name']} {c['score']:.3f}" for c in report["candidates"])}).

{usage}

Or from the command line: `p2m predict RUN "your text"`; a demo: `p2m serve RUN`.

## Data
All training data was written by the teacher LLM ({teacher}) for one label at a time, then curated
without trusting the teacher's judgement: {data["generation"].get("requests", 0)} requests,
{cur["kept"]} examples kept; dropped: {json.dumps(cur["dropped"])}. Per label: {json.dumps(cur["per_label"])};
diversity (1 − mean pairwise cosine similarity): {json.dumps(cur["diversity"])}.
Training rows: {data["train"]}; teacher-written validation rows: {data["validation"]}; real validation rows:
{data.get("real_validation", 0)}. The data is in `data/` with its provenance.

## Evaluation
{estimates_md(report)}

Details on the teacher-written validation rows ({val["n"]}): accuracy {val["score"]:.3f}, macro-F1
{val["scores"]["macro_f1"]:.3f}.{user_md}

{_table(per_label, ["label", "precision", "recall", "F1", "support"])}

Confusion matrix (rows: expected, columns: predicted; order {", ".join(val["labels"])}): `{val["confusion"]}`

## Cost
Teacher calls: {cost["calls"]} ({cost["cached"]} from cache), tokens: {cost["prompt_tokens"] + cost["completion_tokens"]},
teacher seconds: {cost["seconds"]:.0f}.

## Limits
- The validation data is synthetic, like the training data: it measures how well the student learnt the teacher's
  idea of each label, not accuracy on real inputs. Evaluate on real data (`p2m run … --eval FILE.jsonl`) before use.
- A small teacher writes simple, sometimes off-label examples; inputs unlike those may be misclassified.
- Language: {spec.language}; inputs longer than the student's max length are cut.
"""


_SEQ_WHAT = {
    "extractive_qa": ("extractive QA reader", "the answer is the best span of the passage"),
    "text_to_code": ("Python snippet writer", "one greedy completion per request"),
    "data_to_text": ("data-to-text writer", "one greedy sentence per record"),
    "text_generation": ("text generator", "one greedy completion per input"),
}
_SEQ_DATA = {
    "extractive_qa": "the teacher wrote passages; answers were picked from each passage first (dates, numbers,"
    " names: verified spans), then the teacher wrote a question for each, kept only when it does not contain its"
    " answer and shares words with the answer's sentence",
    "text_to_code": "the teacher wrote requests like the prompt's, then a snippet for each, kept only when it parses"
    " (ast), is one line for one-liner tasks, and runs cleanly where it is closed and safe to run",
    "data_to_text": "records were sampled from the fields and values of the prompt's examples (values widened by the"
    " teacher); the teacher wrote the text for each, kept only when it mentions every value and no other",
    "text_generation": "the teacher wrote inputs like the prompt's, then an output for each, kept when it is not"
    " empty, not the input again, not about the task and not too long",
}
_METRIC_NAMES = {"squad_f1": "SQuAD F1", "squad_em": "SQuAD exact match", "chrf": "chrF++ (0–100)",
                 "rouge_l": "ROUGE-L F", "exact_match": "exact match"}  # fmt: skip


def seq_model_card(spec: TaskSpec, report: dict[str, Any], teacher: str) -> str:
    """The model card of a QA, code, data-to-text or text-generation run."""
    what, how = _SEQ_WHAT.get(spec.task_type, ("model", ""))
    val, data, cost = report["validation"], report["data"], report["cost"]
    cur, gen = data["curation"], data["generation"]
    scores = ", ".join(f"{_METRIC_NAMES.get(k, k)} {v:.3f}" for k, v in val["scores"].items())
    errors = [
        [e["input"].replace("\n", " / ")[:120], e["expected"][:80], e["predicted"][:80]]
        for e in val["errors"][:5]
    ]
    user = report.get("user_eval")
    user_md = (
        f"\n\nOn the user's evaluation file ({user['n']} rows, never trained on): "
        + ", ".join(f"{_METRIC_NAMES.get(k, k)} {v:.3f}" for k, v in user["scores"].items())
        + "."
        if user
        else ""
    )
    demos = "\n".join(f"- `{i}` → `{o}`".replace("\n", " / ") for i, o in spec.demonstrations) or "- (none)"
    usage = (
        "```python\nfrom p2m.tools.train_seq import load_seq_student\n"
        'student = load_seq_student("model")\n'
        + (
            'student.predict(["Passage: …\\nQuestion: …"])\n```'
            if spec.task_type == "extractive_qa"
            else 'student.predict(["your input"])\n```'
        )
    )
    return f"""# p2m model: {what} ({spec.task_type})

Built by p2m from a plain-language task description, run `{report["run"]}`.

## Task
{spec.instruction}

Demonstrations given in the prompt:
{demos}

## Model
Student: {report["student"]["base"]} (`{report["student"]["kind"]}`); {how}.

{usage}

Or from the command line: `p2m predict RUN "your input"`; a demo: `p2m serve RUN`.

## Data
All training data was written by the teacher LLM ({teacher}) and checked without trusting it: {_SEQ_DATA.get(spec.task_type, "")}.
{gen.get("requests", 0)} requests, {gen.get("usable", 0)} examples passed the checks while generating
({json.dumps(gen.get("checks", {}))}); curation kept {cur["kept"]} (dropped: {json.dumps(cur["dropped"])});
diversity of the {cur.get("diversity_of", "inputs")} (1 − mean pairwise cosine similarity): {cur["diversity"]}.
Training rows: {data["train"]}; teacher-written validation rows: {data["validation"]}; real validation rows:
{data.get("real_validation", 0)}. The data is in `data/` with its provenance.

## Evaluation
Metric: {_METRIC_NAMES.get(val["metric"], val["metric"])}.

{estimates_md(report)}

Details on the teacher-written validation rows ({val["n"]}): {scores}.{user_md}

Worst validation examples:

{_table(errors, ["input", "expected", "predicted"]) if errors else "(none)"}

## Cost
Teacher calls: {cost["calls"]} ({cost["cached"]} from cache), tokens: {cost["prompt_tokens"] + cost["completion_tokens"]},
teacher seconds: {cost["seconds"]:.0f}.

## Limits
- The validation data is synthetic, like the training data: it measures how well the student learnt the teacher's
  checked outputs, not quality on real inputs. Evaluate on real data (`p2m run … --eval FILE.jsonl`) before use.
- A small teacher writes simple texts; the checks remove wrong ones but cannot add what the teacher never wrote.
- Language: {spec.language}; long inputs are cut to the student's maximum length.
"""


def write_data(folder: Path, name: str, rows: list[tuple[str, str]], source: str | None = None) -> Path:
    """`folder/data/NAME.jsonl`: one {"input", "output"[, "source"]} object per row."""
    path = folder / "data" / f"{name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {"source": source} if source else {}
    with open(path, "w", encoding="utf-8") as f:
        for x, y in rows:
            f.write(json.dumps({"input": x, "output": y, **extra}, ensure_ascii=False) + "\n")
    return path


def write_run_folder(
    folder: Path, spec: TaskSpec, report: dict[str, Any], train: list[tuple[str, str]], val: list[tuple[str, str]],
    teacher: str,
) -> None:  # fmt: skip
    """Write the card, the data and the task spec next to the model."""
    write_data(folder, "train", train)
    write_data(folder, "validation", val)
    (folder / "task.json").write_text(json.dumps(spec.to_dict(), indent=2, ensure_ascii=False))
    (folder / "README.md").write_text(model_card(spec, report, teacher), encoding="utf-8")


def load_run_model(run: str | Path) -> tuple[Any, dict[str, Any]]:
    """The student of a run folder (or run id under the p2m home) and its task spec."""
    from p2m.memory import runs_dir
    from p2m.tools.train import load_student

    folder = Path(run)
    if not folder.exists():
        folder = runs_dir() / str(run)
    if not (folder / "model").is_dir() or not (folder / "task.json").is_file():
        raise ConfigError(
            f"{run}: not a finished p2m run folder (no model/ or task.json); `p2m runs` lists runs"
        )
    if (folder / "model" / "p2m_seq.json").is_file():
        from p2m.tools.train_seq import load_seq_student

        return load_seq_student(folder / "model"), json.loads((folder / "task.json").read_text())
    return load_student(folder / "model"), json.loads((folder / "task.json").read_text())


def demo_fn(student: Any, task_type: str) -> Any:
    """The demo's function: (passage, question) → answer for QA, text → output otherwise; empty boxes get a hint."""
    if task_type == "extractive_qa":
        from p2m.tools.parse import qa_input

        def answer(passage: str, question: str) -> str:
            if not (passage or "").strip() or not (question or "").strip():
                return "Give a passage and a question."
            return student.predict([qa_input(passage, question)])[0]

        return answer

    def generate(text: str) -> str:
        text = (text or "").strip()
        if not text:
            return "Type some text first."
        return student.predict([text])[0]

    return generate


_DEMO_LABELS = {
    "text_to_code": ("Request", "Python snippet", "Write code"),
    "data_to_text": ("Record", "Text", "Write"),
    "text_generation": ("Input", "Output", "Generate"),
}


def build_demo(student: Any, spec: dict[str, Any]) -> Any:
    """A Gradio Blocks demo that fits the task: passage + question boxes for QA, a code box for code, else
    a text box in and the label or the generated text out."""
    import gradio as gr

    task_type = spec.get("task_type", "classification")
    if task_type != "classification":
        fn = demo_fn(student, task_type)
        with gr.Blocks(title="p2m demo") as demo:
            gr.Markdown(f"## {task_type.replace('_', ' ')}\n{spec.get('instruction', '')}")
            if task_type == "extractive_qa":
                from p2m.tools.parse import qa_parts

                passage = gr.Textbox(label="Passage", lines=6)
                question = gr.Textbox(label="Question")
                out = gr.Textbox(label="Answer (a span of the passage)")
                gr.Button("Answer", variant="primary").click(fn, [passage, question], out)
                question.submit(fn, [passage, question], out)
                examples = [list(p) for i, _ in spec.get("demonstrations", []) if (p := qa_parts(i))]
                if examples:
                    gr.Examples(examples, [passage, question])
            else:
                label_in, label_out, verb = _DEMO_LABELS.get(task_type, _DEMO_LABELS["text_generation"])
                box = gr.Textbox(label=label_in, lines=3)
                out = (
                    gr.Code(label=label_out, language="python")
                    if task_type == "text_to_code"
                    else gr.Textbox(label=label_out, lines=3)
                )
                gr.Button(verb, variant="primary").click(fn, box, out)
                box.submit(fn, box, out)
                examples = [[i] for i, _ in spec.get("demonstrations", [])]
                if examples:
                    gr.Examples(examples, box)
        return demo

    def classify(text: str) -> str:
        text = (text or "").strip()
        if not text:
            return "Type some text first."
        return student.predict([text])[0]

    examples = [[i] for i, _ in spec.get("demonstrations", [])]
    with gr.Blocks(title="p2m demo") as demo:
        gr.Markdown(f"## {spec.get('input_kind', 'text')} classifier\n{spec.get('instruction', '')}")
        box = gr.Textbox(label="Input", lines=3)
        out = gr.Textbox(label="Predicted label")
        gr.Button("Classify", variant="primary").click(classify, box, out)
        box.submit(classify, box, out)
        if examples:
            gr.Examples(examples, box)
    return demo


def serve(run: str | Path, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
          auth: tuple[str, str] | None = None) -> None:  # fmt: skip
    """Open the Gradio demo of a run (blocks until Ctrl-C); `share` needs `auth` (user, password).

    Raises:
        ConfigError: `share` without `auth`, a port in use or out of range, or not a finished run.
    """
    from p2m.tools.web import launch_kwargs

    kwargs = launch_kwargs(host, port, share, auth)  # before the model loads: options fail fast
    student, spec = load_run_model(run)
    build_demo(student, spec).launch(**kwargs, quiet=True)
