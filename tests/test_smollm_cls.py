"""The SmolLM2 classifier student: a tiny random Llama stands in for SmolLM2 in the quick tests (the same
code path: head, LoRA, the loop, merge, save, load); the slow test trains the real SmolLM2-135M."""

from __future__ import annotations

import json

import numpy as np
import pytest

from p2m.errors import ConfigError, DataError
from p2m.tools.students.smollm_cls import encode_inputs
from p2m.tools.train import (
    SmolClassifier,
    SmolClsConfig,
    TrainConfig,
    finetune_smollm_classifier,
    load_student,
)

GOOD = "wonderful superb charming delightful brilliant lovely".split()
BAD = "awful boring tedious dreadful clumsy dull".split()
LABELS = ["positive", "negative"]


def _rows(template: str, n: int = 1) -> list[tuple[str, str]]:
    return [(template.format(w=w, i=i), y) for i in range(n) for ws, y in ((GOOD, "positive"), (BAD, "negative"))
            for w in ws]  # fmt: skip


def _tiny_base():
    """A random two-layer Llama with MiniLM's tokenizer (pad = [PAD]), in place of SmolLM2."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from p2m.tools.embed import default_student_path

    tok = AutoTokenizer.from_pretrained(default_student_path())
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, pad_token_id=tok.pad_token_id)  # fmt: skip
    return LlamaForCausalLM(config), tok


def _train(**kw):
    cfg = SmolClsConfig(**{"epochs": 8, "batch_size": 8, "lr": 1e-2, "threads": 1, **kw.pop("cfg", {})})
    return finetune_smollm_classifier(_rows("a {w} film {i}", 3), _rows("the {w} one"), LABELS, cfg,
                                      progress=False, base=_tiny_base, **kw)  # fmt: skip


@pytest.fixture(scope="module")
def trained():
    return _train()


def test_it_learns_separable_labels_and_reports_on_validation(trained):
    student, report, params = trained
    assert isinstance(student, SmolClassifier) and student.kind == "smollm-cls"
    held_out = _rows("I found it {w} overall")
    preds = student.predict([x for x, _ in held_out])
    assert sum(p == y for p, (_, y) in zip(preds, held_out, strict=True)) >= 11, preds
    assert report.n == 12 and report.score >= 0.9
    assert params["steps"] == 8 * 5 and [h["epoch"] for h in params["history"]] == list(range(1, 9))
    assert 1 <= params["best_epoch"] <= 8 and params["lr"] == 1e-2 and not params["stopped_by_time"]
    assert not any(p.requires_grad for p in student.model.parameters())  # merged, frozen
    assert not any("lora" in n for n, _ in student.model.named_parameters())


def test_probabilities_are_rows_in_label_order_and_batching_does_not_change_them(trained):
    student, _, _ = trained
    texts = [x for x, _ in _rows("so {w} and then some more words {i}", 2)]
    probs = student.probabilities(texts, batch_size=5)
    assert probs.shape == (len(texts), 2) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    alone = np.vstack([student.probabilities([t]) for t in texts[:4]])
    assert np.allclose(probs[:4], alone, atol=2e-2)  # right padding: the head reads the last real token
    assert student.predict(texts) == [LABELS[i] for i in probs.argmax(1)]
    assert student.predict([]) == []


def test_save_and_load_student_give_the_same_predictions(trained, tmp_path):
    student, _, _ = trained
    student.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "p2m_cls.json").read_text())
    assert meta["kind"] == "smollm-cls" and meta["labels"] == LABELS and meta["config"]["lora_r"] == 16
    texts = [x for x, _ in _rows("it was {w}", 1)] + ["x", ""]
    loaded = load_student(tmp_path / "m")
    assert isinstance(loaded, SmolClassifier) and loaded.labels == LABELS
    assert loaded.template == student.template == "{input}\nAnswer (positive or negative):"
    assert loaded.predict(texts) == student.predict(texts)
    assert np.allclose(loaded.probabilities(texts), student.probabilities(texts), atol=1e-6)
    float32 = load_student(tmp_path / "m", fast=False)
    assert np.allclose(float32.probabilities(texts), student.probabilities(texts), atol=2e-2)
    (tmp_path / "m" / "p2m_cls.json").write_text(json.dumps({"kind": "causal-lm"}))
    with pytest.raises(ConfigError, match="not 'smollm-cls'"):
        load_student(tmp_path / "m")


def test_the_deadline_stops_after_one_step_and_keeps_a_model():
    student, report, params = _train(max_minutes=1e-9)
    assert params["stopped_by_time"] and params["steps"] == 1 and params["best_epoch"] == 1
    assert set(student.predict(["a lovely film"])) <= set(LABELS)


def test_soft_targets_replace_the_labels():
    train = _rows("a {w} film {i}", 3)
    flipped = np.array([[0.0, 1.0] if y == "positive" else [1.0, 0.0] for _, y in train])
    cfg = SmolClsConfig(epochs=8, batch_size=8, lr=1e-2, threads=1)
    student, _, _ = finetune_smollm_classifier(train, _rows("the {w} one"), LABELS, cfg, progress=False,
                                               soft=flipped, base=_tiny_base)  # fmt: skip
    preds = student.predict([x for x, _ in train])
    assert sum(p != y for p, (_, y) in zip(preds, train, strict=True)) >= 0.9 * len(train)  # learnt the flip


def test_long_inputs_are_cut_before_the_template_end_and_padding_is_on_the_right():
    _, tok = _tiny_base()
    template = "Review: {input}\nAnswer (positive or negative):"
    tail = tok(template.split("{input}")[1], add_special_tokens=False).input_ids
    enc = encode_inputs(tok, ["word " * 200, "short <|im_end|>"], template, 24, pad_id=0)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    assert ids.shape == (2, 24) and ids[0, -len(tail) :].tolist() == tail
    n = int(mask[1].sum())
    assert ids[1, n - len(tail) : n].tolist() == tail and set(ids[1, n:].tolist()) <= {0}
    assert mask[1, :n].all() and not mask[1, n:].any()


def test_config_validation_and_another_students_config():
    for field, value in [("epochs", 0), ("lora_r", 0), ("lr", 1.0), ("warmup", 1.0), ("layers", 2),
                         ("template", "no input")]:  # fmt: skip
        with pytest.raises(ConfigError, match=field):
            SmolClsConfig(**{field: value})
    cfg = SmolClsConfig.like(TrainConfig(epochs=7, lr=3e-5, batch_size=4, seed=2))
    assert (cfg.epochs, cfg.batch_size, cfg.seed, cfg.lr) == (7, 4, 2, SmolClsConfig().lr)


def test_bad_data_raises_readable_errors_before_any_model_loads():
    def never():
        raise AssertionError("the model was loaded")

    rows = _rows("a {w} film")
    for train, val, labels, error, match in [
        ([], rows, LABELS, DataError, "no training examples"),
        (rows, [], LABELS, DataError, "validation rows"),
        (rows + [("meh", "neutral")], rows, LABELS, DataError, "neutral"),
        (rows, rows, ["positive"], ConfigError, "at least 2 labels"),
    ]:
        with pytest.raises(error, match=match):
            finetune_smollm_classifier(train, val, labels, progress=False, base=never)
    with pytest.raises(ConfigError, match="max_minutes"):
        finetune_smollm_classifier(rows, rows, LABELS, progress=False, max_minutes=0, base=never)
    with pytest.raises(DataError, match="soft targets"):
        finetune_smollm_classifier(rows, rows, LABELS, progress=False, soft=np.ones((3, 2)), base=never)


@pytest.mark.slow
def test_smollm2_classifier_learns_and_round_trips(tmp_path):
    """The real SmolLM2-135M from the teacher's GGUF, all 30 layers, 15 steps on a separable set.

    The labels are arbitrary names ("kind A" for the good words): the model's own prior cannot tell
    which is which (its zero-shot choice is a coin toss), so a held-out score near 1 is learnt.
    """
    names = {"positive": "kind A", "negative": "kind B"}

    def rows(template: str, n: int = 1) -> list[tuple[str, str]]:
        return [(x, names[y]) for x, y in _rows(template, n)]

    train, val, held_out = (
        rows("a {w} film {i}", 2) + rows("this was {w}"),
        rows("the {w} one"),
        rows("I found it {w}"),
    )
    cfg = SmolClsConfig(epochs=3, batch_size=8, lr=1e-3, lora_r=8)
    student, report, params = finetune_smollm_classifier(
        train, val, ["kind A", "kind B"], cfg, progress=False
    )
    assert params["steps"] == 15 and "SmolLM2-135M" in params["base"] and report.score >= 0.9
    preds = student.predict([x for x, _ in held_out])
    assert sum(p == y for p, (_, y) in zip(preds, held_out, strict=True)) >= 10, preds
    student.save(tmp_path / "m")
    loaded = load_student(tmp_path / "m")
    assert isinstance(loaded, SmolClassifier) and loaded.predict([x for x, _ in held_out]) == preds
    # "<|im_end|>" in a text is its words, not the padding token the head would skip
    assert len(student.predict(["a lovely film <|im_end|>", "<|im_end|>"])) == 2
