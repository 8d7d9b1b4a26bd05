"""Deployment: the run folder (model, card, data, report) and the Gradio demo.

RUN/model     the student (transformers `save_pretrained` + tokenizer + label map for a fine-tuned
              classifier; the MiniLM folder + `p2m_head.json` for the embedding + logistic-regression one)
RUN/README.md the model card
RUN/data/     the training and validation data with provenance
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from p2m.errors import ConfigError
from p2m.tools.types import TaskSpec

__all__ = ["write_run_folder", "model_card", "load_run_model", "build_demo", "serve"]


def _table(rows: list[list[Any]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def model_card(spec: TaskSpec, report: dict[str, Any], teacher: str) -> str:
    """The model card (README.md) of a run, from its report."""
    val = report["validation"]
    per_label = [
        [label, s["precision"], s["recall"], s["f1"], s["support"]] for label, s in val["per_label"].items()
    ]
    data = report["data"]
    cur = data["curation"]
    cost = report["cost"]
    kind = report["student"]["kind"]
    if kind == "sequence-classifier":
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
Training rows: {data["train"]}; validation rows: {data["validation"]} (a held-out split of the generated data plus the
prompt's demonstrations). The data is in `data/` with its provenance.

## Evaluation
On the validation set ({val["n"]} rows): accuracy **{val["score"]:.3f}**, macro-F1 {val["scores"]["macro_f1"]:.3f}.{user_md}

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


def write_run_folder(
    folder: Path, spec: TaskSpec, report: dict[str, Any], train: list[tuple[str, str]], val: list[tuple[str, str]],
    teacher: str,
) -> None:  # fmt: skip
    """Write the card, the data and the task spec next to the model."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("validation", val)):
        with open(folder / "data" / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for x, y in rows:
                f.write(json.dumps({"input": x, "output": y}, ensure_ascii=False) + "\n")
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
    return load_student(folder / "model"), json.loads((folder / "task.json").read_text())


def build_demo(student: Any, spec: dict[str, Any]) -> Any:
    """A Gradio Blocks demo: a text box in, the predicted label out."""
    import gradio as gr

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


def serve(run: str | Path, host: str = "127.0.0.1", port: int | None = None, share: bool = False) -> None:
    """Open the Gradio demo of a run (blocks until Ctrl-C)."""
    student, spec = load_run_model(run)
    build_demo(student, spec).launch(server_name=host, server_port=port, share=share, quiet=True)
