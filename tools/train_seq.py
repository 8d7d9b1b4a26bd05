"""Sequence students for the generative task types: a text generator and an extractive QA reader.

- `GenStudent`: SmolLM2-135M, loaded by transformers from the same GGUF the embedded teacher runs
  (dequantized to float), fine-tuned with LoRA (peft) on `template(input) → output`, the LoRA merged
  back for inference: greedy, batched with left padding, KV cache, bfloat16 on CPUs that have it.
- `QAStudent`: all-MiniLM-L6-v2 with a fresh span head (`AutoModelForQuestionAnswering`), SQuAD-style
  windows with a document stride; the answer is the best valid span of the passage.

This module is their public import point; the code lives in `p2m.tools.students` (`generator`,
`qa_reader`, `smollm`, `common`) and trains through the one loop, `p2m.tools.trainloop`.
`load_seq_student(path)` gives back either student from its folder.
"""

from __future__ import annotations

from pathlib import Path

from p2m.errors import ConfigError
from p2m.tools.students.common import (
    META_FILE,
    SeqTrainConfig,
    auto_threads,
    bf16_supported,
    read_meta,
    torch_threads,
)
from p2m.tools.students.generator import (
    GEN_TEMPLATE,
    LOOP_NGRAM,
    GenStudent,
    encode_pair,
    finetune_generator,
    greedy_decode,
    lm_batch,
)
from p2m.tools.students.qa_reader import (
    QA_MAX_ANSWER,
    QA_MAX_LENGTH,
    QA_STRIDE,
    QAStudent,
    answer_span,
    best_spans,
    finetune_qa,
    parse_qa_input,
    qa_rows,
    qa_windows,
    span_labels,
)
from p2m.tools.students.smollm import LORA_TARGETS, base_generator, keep_layers

__all__ = [
    "GEN_TEMPLATE",
    "LOOP_NGRAM",
    "LORA_TARGETS",
    "META_FILE",
    "QA_MAX_ANSWER",
    "QA_MAX_LENGTH",
    "QA_STRIDE",
    "GenStudent",
    "QAStudent",
    "SeqTrainConfig",
    "answer_span",
    "auto_threads",
    "base_generator",
    "best_spans",
    "bf16_supported",
    "encode_pair",
    "finetune_generator",
    "finetune_qa",
    "greedy_decode",
    "keep_layers",
    "lm_batch",
    "load_seq_student",
    "parse_qa_input",
    "qa_rows",
    "qa_windows",
    "read_meta",
    "span_labels",
    "torch_threads",
]


def load_seq_student(path: str | Path, fast: bool = True) -> GenStudent | QAStudent:
    """The saved sequence student in `path`, whichever kind it is (see `p2m_seq.json`)."""
    kind = read_meta(path).get("kind")
    for cls in (GenStudent, QAStudent):
        if kind == cls.kind:
            return cls.load(path, fast=fast)
    raise ConfigError(f"{path}: unknown sequence student kind {kind!r}")
