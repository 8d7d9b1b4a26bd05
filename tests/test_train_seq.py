"""Sequence students: input parsing, span labels, prompt/labels layout, save/load; slow tests fine-tune
the real models for a few steps on tiny synthetic tasks and check that they learned."""

from __future__ import annotations

import json

import pytest

from p2m.errors import ConfigError, DataError
from p2m.tools import train_seq as ts
from p2m.tools.students import generator
from p2m.tools.train_seq import (
    GEN_TEMPLATE,
    GenStudent,
    QAStudent,
    SeqTrainConfig,
    answer_span,
    finetune_generator,
    finetune_qa,
    load_seq_student,
    parse_qa_input,
)

# ---------------------------------------------------------------- parsing and labels


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "Passage: Paris is in France.\nQuestion: Where is Paris?",
            ("Paris is in France.", "Where is Paris?"),
        ),
        (
            "Question: Where is Paris?\nPassage: Paris is in France.",
            ("Paris is in France.", "Where is Paris?"),
        ),
        ("context: A\nB\nquestion:  Q?  ", ("A\nB", "Q?")),
        ('{"context": "Paris is in France.", "question": "Where?"}', ("Paris is in France.", "Where?")),
        ('{"passage": "P", "question": "Q"}', ("P", "Q")),
        ("Paris is in France.\nQuestion: Where is Paris?", ("Paris is in France.", "Where is Paris?")),
        ("just a passage", ("just a passage", "")),
        ("{not json", ("{not json", "")),
    ],
)
def test_parse_qa_input(text, expected):
    assert parse_qa_input(text) == expected


def test_answer_span_first_occurrence_then_case_then_punctuation():
    passage = "Ada met Bob. Later Ada left."
    assert answer_span(passage, "Ada") == (0, 3)
    assert answer_span(passage, "bob") == (8, 11)
    assert answer_span(passage, ' "Bob." ') == (8, 11)
    assert answer_span(passage, "Carol") is None
    assert answer_span(passage, "  ") is None


def test_qa_rows_skip_answers_missing_from_the_passage():
    rows, skipped = ts.qa_rows(
        [("Passage: Ada met Bob.\nQuestion: Who?", "Bob"), ("Passage: Ada met Bob.\nQuestion: Who?", "Eve")]
    )
    assert rows == [("Who?", "Ada met Bob.", (8, 11))] and skipped == 1


def test_config_validation_names_the_field():
    with pytest.raises(ConfigError, match="lora_r"):
        SeqTrainConfig(lora_r=0)
    with pytest.raises(ConfigError, match="max_minutes"):
        SeqTrainConfig(max_minutes=0)
    with pytest.raises(ConfigError, match="lr"):
        SeqTrainConfig(lr=2.0)


def test_bad_training_sets_raise_one_line_data_errors():
    with pytest.raises(DataError, match="no training examples"):
        finetune_qa([], [], SeqTrainConfig())
    with pytest.raises(DataError, match="none of the 1"):
        finetune_qa([("Passage: Ada met Bob.\nQuestion: Who?", "Eve")], [], SeqTrainConfig())
    with pytest.raises(DataError, match="no training examples"):
        finetune_generator([("x", " ")], [], "Describe.", SeqTrainConfig())


class _CharTokenizer:
    """One token per character; EOS = 0, pad = 1."""

    eos_token_id, pad_token_id = 0, 1

    def __call__(self, text, add_special_tokens=False):
        class _Enc:
            input_ids = [ord(c) for c in text]

        return _Enc()


def test_loss_is_on_the_output_and_eos_only():
    cfg = SeqTrainConfig(max_input_tokens=5, max_output_tokens=3)
    ids, n_prompt = ts.encode_pair(_CharTokenizer(), "abcdefgh", "xyzw", cfg)
    assert ids == [ord(c) for c in "defgh"] + [ord(c) for c in " xy"] + [0] and n_prompt == 5
    batch = ts.lm_batch([(ids, n_prompt), ([7, 8, 9], 2)], pad_id=1)
    assert batch["labels"][0].tolist() == [-100] * 5 + ids[5:]
    assert batch["labels"][1].tolist() == [-100, -100, 9] + [-100] * 6
    assert batch["input_ids"][1].tolist() == [7, 8, 9] + [1] * 6
    assert batch["attention_mask"][1].tolist() == [1, 1, 1] + [0] * 6
    assert GEN_TEMPLATE.format(input="name[Aromi]") == "Input: name[Aromi]\nOutput:"


def _minilm_tokenizer():
    from transformers import AutoTokenizer

    from p2m.tools.embed import default_student_path

    return AutoTokenizer.from_pretrained(default_student_path())


def test_span_labels_point_at_the_answer_tokens_or_cls():
    tok = _minilm_tokenizer()
    passage = "The capital of France is Paris and it is large."
    enc = ts.qa_windows(tok, ["What is the capital?", "Unrelated?"], [passage, "No answer here."])
    start, end = ts.span_labels(enc, [answer_span(passage, "Paris"), (100, 105)])
    assert tok.decode(enc["input_ids"][0][start[0] : end[0] + 1]) == "paris"
    assert (start[1], end[1]) == (0, 0)


def test_long_passages_are_windowed_with_labels_in_the_right_window():
    tok = _minilm_tokenizer()
    passage = " ".join(f"word{i}" for i in range(400)) + " The code is zebra."
    enc = ts.qa_windows(tok, ["What is the code?"], [passage])
    assert len(enc["input_ids"]) > 1
    start, end = ts.span_labels(enc, [answer_span(passage, "zebra")])
    assert (
        start[:-1].tolist() == [0] * (len(start) - 1)
        and tok.decode(enc["input_ids"][-1][start[-1]]) == "zebra"
    )


def test_best_span_is_valid_and_inside_the_passage():
    import torch

    ctx = torch.tensor([[False, False, True, True, True, False]])
    start = torch.tensor([[9.0, 0, 1, 5, 0, 9]])
    end = torch.tensor([[9.0, 0, 3, 1, 2, 9]])
    # (3, 2) would score 8 but ends before it starts; [CLS]/question/[SEP] tokens are never chosen
    assert ts.best_spans(start, end, ctx) == [(7.0, 3, 4)]


def test_load_needs_the_metadata(tmp_path):
    with pytest.raises(ConfigError, match="not a saved sequence student"):
        load_seq_student(tmp_path)
    (tmp_path / ts.META_FILE).write_text(json.dumps({"kind": "mystery"}))
    with pytest.raises(ConfigError, match="unknown sequence student kind"):
        load_seq_student(tmp_path)
    with pytest.raises(ConfigError, match="not 'causal-lm'"):
        GenStudent.load(tmp_path)


def test_tiny_generator_saves_and_loads_with_its_template(tmp_path):
    """A tiny random causal LM stands in for SmolLM2: save → load gives the same answers and metadata."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _minilm_tokenizer()
    tok.eos_token = "[SEP]"
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, pad_token_id=tok.pad_token_id)  # fmt: skip
    student = GenStudent(LlamaForCausalLM(config), tok, "Q: {input}\nA:", meta={"instruction": "Say it."})
    inputs = ["name[Aromi]", "name[The Eagle], area[riverside]", "x"]
    before = student.predict(inputs, batch_size=2, max_new_tokens=5)
    student.save(tmp_path / "gen")
    meta = json.loads((tmp_path / "gen" / ts.META_FILE).read_text())
    assert (
        meta["kind"] == "causal-lm"
        and meta["template"] == "Q: {input}\nA:"
        and meta["instruction"] == "Say it."
    )
    assert (tmp_path / "gen" / "model.safetensors").exists()
    loaded = load_seq_student(tmp_path / "gen")
    assert isinstance(loaded, GenStudent) and loaded.template == "Q: {input}\nA:"
    assert loaded.predict(inputs, batch_size=2, max_new_tokens=5) == before
    assert loaded.predict(inputs, batch_size=3, max_new_tokens=5) == before  # left padding: batch-independent


def _tiny_llama(vocab: int, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, pad_token_id=0)  # fmt: skip
    return LlamaForCausalLM(config).eval()


def _left_padded(rows: list[list[int]]):
    import torch

    width = max(map(len, rows))
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def test_greedy_decode_matches_generate_and_drops_finished_rows(monkeypatch):
    """Rows leave the batch at their stop token; every row's answer is what `model.generate` gives it."""
    import torch

    monkeypatch.setattr(generator, "LOOP_NGRAM", 10_000)  # compare without the loop cut
    model = _tiny_llama(50)
    rows = [[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15], [16]]
    ids, mask = _left_padded(rows)
    stops = [3, 4, 17, 21]
    with torch.inference_mode():
        got = ts.greedy_decode(model, ids, mask, 12, stops)
        ref = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=12, do_sample=False,
                             eos_token_id=stops, pad_token_id=0)  # fmt: skip
    expected = []
    for row in ref[:, ids.shape[1] :].tolist():
        answer = []
        for t in row:
            if t in stops:
                break
            answer.append(t)
        expected.append(answer)
    assert got == expected
    assert any(len(a) < 12 for a in got), "no row stopped early: the test does not exercise dropping"
    assert ts.greedy_decode(model, ids, mask, 0, stops) == [[], [], [], []]


def test_greedy_decode_cuts_a_looping_answer(monkeypatch):
    """A tiny random model repeats itself: with the loop cut, each answer is a prefix of the uncut one
    and holds no repeated n-gram."""
    import torch

    model = _tiny_llama(12, seed=1)
    ids, mask = _left_padded([[1, 2, 3], [4, 5], [6, 7, 8, 9]])
    with torch.inference_mode():
        monkeypatch.setattr(generator, "LOOP_NGRAM", 10_000)
        full = ts.greedy_decode(model, ids, mask, 40, [0])
        monkeypatch.setattr(generator, "LOOP_NGRAM", 3)
        cut = ts.greedy_decode(model, ids, mask, 40, [0])
    assert any(len(c) < len(f) for c, f in zip(cut, full, strict=True)), "nothing looped"
    for c, f in zip(cut, full, strict=True):
        assert f[: len(c)] == c
        grams = [tuple(c[i : i + 3]) for i in range(len(c) - 2)]
        assert len(grams) == len(set(grams))


def test_keep_layers_cuts_the_model_and_it_still_runs_saves_and_loads(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=12,
                         num_attention_heads=2, num_key_value_heads=1, pad_token_id=0)  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    second_to_last = model.model.layers[10]
    assert ts.keep_layers(model, 0) == list(range(12))
    keep = ts.keep_layers(model, 8)
    assert keep == [0, 1, 2, 3, 4, 9, 10, 11] and model.config.num_hidden_layers == 8
    assert model.model.layers[6] is second_to_last
    assert [layer.self_attn.layer_idx for layer in model.model.layers] == list(range(8))
    ids, mask = _left_padded([[5, 6, 7], [8, 9]])
    with torch.inference_mode():
        before = ts.greedy_decode(model, ids, mask, 6, [1])
    model.save_pretrained(tmp_path / "m")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    assert len(loaded.model.layers) == 8
    with torch.inference_mode():
        assert ts.greedy_decode(loaded, ids, mask, 6, [1]) == before
    with pytest.raises(ConfigError, match="layers"):
        SeqTrainConfig(layers=2)


# ---------------------------------------------------------------- slow: real models, tiny tasks

NAMES = "Ada Bruno Chen Dara Emil Farah Goran Hana Ivo Jun Kira Lev".split()
CITIES = "Lyon Oslo Quito Perth Turin Hanoi Cork Lagos Bergen Porto Split Kobe".split()
JOBS = "baker pilot nurse judge tailor chemist".split()


def _qa_pairs(offset: int, n: int) -> list[tuple[str, str]]:
    pairs = []
    for i in range(offset, offset + n):
        name, city, job = NAMES[i % 12], CITIES[(i * 5) % 12], JOBS[i % 6]
        passage = f"{name} works as a {job}. {name} lives in {city}, near the old market."
        if i % 2:
            pairs.append((f"Passage: {passage}\nQuestion: Where does {name} live?", city))
        else:
            pairs.append((f"Passage: {passage}\nQuestion: What is {name}'s job?", job))
    return pairs


@pytest.mark.slow
def test_qa_student_learns_spans_and_round_trips(tmp_path):
    train, held_out = _qa_pairs(0, 48), _qa_pairs(48, 12)
    student = finetune_qa(train, held_out[:4], SeqTrainConfig(epochs=4, batch_size=8, qa_lr=2e-4))
    preds = student.predict([x for x, _ in held_out])
    exact = sum(p == y for p, (_, y) in zip(preds, held_out, strict=True)) / len(held_out)
    assert exact >= 0.75, list(zip(preds, held_out, strict=True))
    assert student.meta["skipped"] == 0 and student.meta["n_train"] == 48
    float_preds = QAStudent(student.model, student.tokenizer, fast=False).predict([x for x, _ in held_out])
    assert sum(a == b for a, b in zip(preds, float_preds, strict=True)) >= 11  # int8 keeps the answers
    student.save(tmp_path / "qa")
    loaded = load_seq_student(tmp_path / "qa")
    assert isinstance(loaded, QAStudent) and loaded.predict([x for x, _ in held_out]) == preds


@pytest.mark.slow
def test_qa_student_takes_at_least_its_minimum_steps_on_a_small_set():
    train = _qa_pairs(0, 6)
    cfg = SeqTrainConfig(epochs=2, batch_size=4, qa_min_steps=10, max_val=2)
    student = finetune_qa(train, _qa_pairs(6, 2), cfg)
    assert student.meta["steps"] == 10  # 5 epochs of 2 steps, not 2 epochs
    assert [h["epoch"] for h in student.meta["history"]] == [3, 5]  # still about `epochs` evaluations


FOODS = "Italian Chinese French Indian English Japanese".split()


def _gen_pairs(offset: int, n: int) -> list[tuple[str, str]]:
    return [
        (f"name[{NAMES[i % 12]}], food[{FOODS[i % 6]}]", f"{NAMES[i % 12]} serves {FOODS[i % 6]} food.")
        for i in range(offset, offset + n)
    ]


@pytest.mark.slow
def test_generator_learns_a_template_and_round_trips(tmp_path):
    train, held_out = _gen_pairs(0, 24), _gen_pairs(25, 6)
    cfg = SeqTrainConfig(epochs=2, batch_size=4, lr=1e-3, lora_r=8)
    student = finetune_generator(train, held_out[:4], "Describe the restaurant.", cfg)
    history = student.meta["history"]
    assert history[-1]["val_loss"] < history[0]["val_loss"] / 2  # epoch 0: before training
    preds = student.predict([x for x, _ in held_out], max_new_tokens=16)
    exact = sum(p == y for p, (_, y) in zip(preds, held_out, strict=True)) / len(held_out)
    assert exact >= 0.5, list(zip(preds, held_out, strict=True))
    assert student.meta["longest_output_tokens"] >= 5 and not student.meta["stopped_by_time"]
    student.save(tmp_path / "gen")
    assert not list((tmp_path / "gen").glob("*.gguf"))
    loaded = load_seq_student(tmp_path / "gen")
    assert (
        isinstance(loaded, GenStudent)
        and loaded.predict([x for x, _ in held_out], max_new_tokens=16) == preds
    )

    # the base model now loads from its converted copy under P2M_HOME; the time cap stops cleanly
    capped = finetune_generator(
        train, held_out[:2], "x", SeqTrainConfig(epochs=5, batch_size=4, max_minutes=1e-4)
    )
    assert capped.meta["stopped_by_time"] and capped.meta["steps"] == 1 and capped.meta["best_epoch"] == 1
