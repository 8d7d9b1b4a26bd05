"""The label-name prior, the linear head's save/load round trip, distillation and the parallel client."""

from __future__ import annotations

import threading
import time

import numpy as np

from p2m.tools.generate import GenConfig, generate_examples
from p2m.tools.llm import LLMClient
from p2m.tools.parse import parse_task
from p2m.tools.train import TrainConfig, finetune, label_prototypes, load_student, train_quick
from tests.fakes import FakeChatModel

LABELS = ["positive", "negative"]
TRAIN = [
    ("a wonderful, moving film", "positive"),
    ("brilliant acting and a charming story", "positive"),
    ("I loved every minute", "positive"),
    ("a delightful surprise", "positive"),
    ("boring and far too long", "negative"),
    ("an awful, tedious mess", "negative"),
    ("I hated the clumsy plot", "negative"),
    ("dull from start to finish", "negative"),
]


def test_label_prototypes_are_unit_vectors_that_point_at_their_label():
    protos = label_prototypes(LABELS, "movie review")
    assert protos.shape == (2, 384)
    assert np.allclose(np.linalg.norm(protos, axis=1), 1.0, atol=1e-5)
    from p2m.tools.embed import embed

    sims = embed(["a great, enjoyable movie", "a terrible, boring movie"]) @ protos.T
    assert sims[0].argmax() == 0 and sims[1].argmax() == 1


def test_prior_changes_the_head_and_survives_save_and_load(tmp_path):
    plain, _, p0 = train_quick(TRAIN, TRAIN[:2] + TRAIN[4:6], LABELS)
    prior = label_prototypes(LABELS)
    with_prior, _, p1 = train_quick(TRAIN, TRAIN[:2] + TRAIN[4:6], LABELS, prior=prior, prior_weight=20)
    assert p0["prior_weight"] == 0 and p1["prior_weight"] == 20
    assert with_prior.coef.shape == (2, 384)  # binary LR is stored as one row per label
    assert not np.allclose(plain.coef, with_prior.coef)
    with_prior.save(tmp_path / "m")
    loaded = load_student(tmp_path / "m", fast=False)  # float32: the same numbers as in training
    texts = ["what a lovely film", "a dreadful waste of time"]
    assert loaded.predict(texts) == with_prior.predict(texts)
    assert set(load_student(tmp_path / "m").predict(texts)) <= set(LABELS)  # int8 for CPU inference
    from transformers import pipeline

    clf = pipeline("text-classification", model=str(tmp_path / "m"), trust_remote_code=True)
    assert [r["label"] for r in clf(texts)] == with_prior.predict(texts)
    probs = with_prior.probabilities(texts)
    assert np.allclose(probs.sum(1), 1.0)


def test_prior_alone_classifies_when_the_teacher_labels_are_noise():
    # every generated label is flipped: logistic regression learns the flip, a strong prior resists it
    flipped = [(x, "negative" if y == "positive" else "positive") for x, y in TRAIN]
    student, _, _ = train_quick(
        flipped, flipped[:2], LABELS, prior=label_prototypes(LABELS), prior_weight=200
    )
    assert student.predict(["a wonderful, delightful film"]) == ["positive"]


def test_finetune_learns_from_soft_targets():
    soft = np.array([[1.0, 0.0] if y == "positive" else [0.0, 1.0] for _, y in TRAIN])
    student, report, params = finetune(
        TRAIN, TRAIN, LABELS, TrainConfig(epochs=3, lr=1e-4), progress=False, soft=soft
    )
    assert params["best_epoch"] >= 1
    assert report.score >= 0.75


class _SlowFake(FakeChatModel):
    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        time.sleep(0.05)
        self.history.append({"thread": threading.get_ident()})
        return super()._generate(messages, stop, run_manager, **kwargs)


def test_parallel_client_spreads_requests_and_keeps_generation_reproducible():
    spec = parse_task("Classify support tickets as billing, bug or other.")
    one = FakeChatModel()
    rows_1: list[dict] = []
    generate_examples(spec, LLMClient(one, "fake"), GenConfig(examples=24, minutes=0), on_rows=rows_1.extend)
    a, b = _SlowFake(), _SlowFake()
    llm = LLMClient(a, "fake", parallel=[a, b])
    assert llm.parallelism == 2
    rows_2: list[dict] = []
    start = time.perf_counter()
    generate_examples(spec, llm, GenConfig(examples=24, minutes=0), on_rows=rows_2.extend)
    elapsed = time.perf_counter() - start
    assert a.history and b.history, "both endpoints answered"
    key = [(r["request_index"], r["output"], r["input"]) for r in rows_1]
    assert [(r["request_index"], r["output"], r["input"]) for r in rows_2][: len(key)] == key
    assert elapsed < 0.05 * len(rows_2)  # requests overlapped
