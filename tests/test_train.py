"""Students: the learning-rate schedule, config validation, the quick trial and a one-epoch fine-tune."""

from __future__ import annotations

import shutil

import pytest

from p2m.errors import ConfigError
from p2m.tools.train import FinetunedStudent, TrainConfig, finetune, load_student, lr_at, train_quick
from tests.fakes import label_text

LABELS = ["positive", "negative"]


def _rows(n_per_label: int, offset: int = 0) -> list[tuple[str, str]]:
    return [(label_text(y, offset + i), y) for i in range(n_per_label) for y in LABELS]


# lr schedule ---------------------------------------------------------------------------------------


def test_lr_warms_up_then_decays_to_zero():
    total, peak = 100, 1e-3
    lrs = [lr_at(s, total, peak, 0.1) for s in range(total + 1)]
    assert lrs[0] == pytest.approx(peak / 10)
    assert lrs[9] == pytest.approx(peak)  # the last warm-up step reaches the peak
    assert max(lrs) == pytest.approx(peak)
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:10], strict=False))  # warm-up rises
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))  # then never rises
    assert lrs[55] == pytest.approx(peak * 45 / 90)
    assert lrs[total] == 0.0
    assert all(lr >= 0 for lr in lrs)


def test_lr_is_pure():
    assert lr_at(17, 50, 2e-5, 0.2) == lr_at(17, 50, 2e-5, 0.2)


def test_lr_without_warmup_starts_at_peak():
    assert lr_at(0, 10, 0.5, 0.0) == 0.5
    assert lr_at(10, 10, 0.5, 0.0) == 0.0


def test_lr_past_the_end_stays_zero():
    assert lr_at(120, 100, 1.0, 0.1) == 0.0


def test_lr_single_step_run():
    assert lr_at(0, 1, 0.1, 0.1) == pytest.approx(0.1)


# TrainConfig ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epochs", 0),
        ("batch_size", 0),
        ("max_length", -1),
        ("lr", 0.0),
        ("lr", 1.5),
        ("warmup", 1.0),
        ("warmup", -0.1),
    ],
)
def test_train_config_names_the_bad_field_and_value(field, value):
    with pytest.raises(ConfigError, match=field) as err:
        TrainConfig(**{field: value})
    assert str(value) in str(err.value)


def test_train_config_round_trips():
    cfg = TrainConfig(epochs=2, lr=1e-4, seed=3)
    assert TrainConfig(**cfg.to_dict()) == cfg


# quick trial ---------------------------------------------------------------------------------------


def test_train_quick_learns_separable_labels():
    student, report, params = train_quick(_rows(6), _rows(3, offset=100), LABELS)
    assert report.n == 6
    assert report.score == 1.0
    assert params["C"] in (0.5, 2.0, 8.0)
    preds = student.predict(["wonderful superb charming film", "boring awful tedious film"])
    assert preds == ["positive", "negative"]
    assert student.kind == "embedding-logreg"


@pytest.mark.parametrize("labels", [LABELS, ["billing", "bug", "other"]])
def test_quick_student_saved_and_loaded_predicts_the_same(tmp_path, labels):
    rows = [(label_text(y, i), y) for i in range(5) for y in labels]
    val = [(label_text(y, 50 + i), y) for i in range(2) for y in labels]
    student, _, _ = train_quick(rows, val, labels)
    student.save(tmp_path / "model")
    loaded = load_student(tmp_path / "model")
    probe = [x for x, _ in val] + ["refund my card payment", "it crashed with an error", "hello"]
    assert loaded.predict(probe) == student.predict(probe)
    assert set(loaded.predict(probe)) <= set(labels)


# fine-tune -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    train, val = _rows(6), _rows(2, offset=100)
    student, report, params = finetune(
        train, val, LABELS, TrainConfig(epochs=1, batch_size=8), progress=False
    )
    folder = tmp_path_factory.mktemp("ft") / "model"
    student.save(folder)
    yield student, report, params, folder
    shutil.rmtree(folder.parent, ignore_errors=True)


def test_finetune_returns_a_report_and_its_params(finetuned):
    student, report, params, _ = finetuned
    assert isinstance(student, FinetunedStudent)
    assert report.n == 4 and 0.0 <= report.score <= 1.0
    assert params["best_epoch"] == 1 and params["epochs"] == 1 and params["seconds"] > 0
    assert set(student.predict(["superb", "awful", "x"])) <= set(LABELS)


def test_finetuned_folder_loads_with_transformers_pipeline(finetuned):
    from transformers import pipeline

    *_, folder = finetuned
    clf = pipeline("text-classification", model=str(folder))
    out = clf(["loved it, wonderful", "hated it, boring"])
    assert all(o["label"] in LABELS for o in out)  # label names, not LABEL_0


def test_finetuned_folder_loads_with_load_student(finetuned):
    student, *_, folder = finetuned
    loaded = load_student(folder)
    assert isinstance(loaded, FinetunedStudent)
    texts = ["wonderful superb charming", "boring dull awful", "a plain sentence", "x"]
    assert loaded.predict(texts) == student.predict(texts)


def test_predict_keeps_input_order_across_batches(finetuned):
    student, *_ = finetuned
    texts = [label_text(y, i) + " " + "word " * (i % 7) for i in range(9) for y in LABELS]
    one = [student.predict([t])[0] for t in texts]
    assert student.predict(texts, batch_size=4) == one
