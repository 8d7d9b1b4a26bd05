"""The bench's printed table, with and without the teacher's baseline."""

from __future__ import annotations

from p2m.agent.bench import format_result


def _result(teacher: dict | None) -> dict:
    return {
        "task": "sst2", "metric": "accuracy", "n_test": 300,
        "student": {"score": 0.72, "ms_per_example": 2.0, "model": "all-MiniLM-L6-v2 (sequence-classifier)"},
        "teacher": teacher, "ceiling": None, "speedup": 150.0 if teacher else None,
        "pipeline": {"seconds": 600, "examples_generated": 280, "examples_kept": 270, "llm_calls": 636,
                     "llm_tokens": 72000},
    }  # fmt: skip


def test_table_with_teacher() -> None:
    text = format_result(_result({"score": 0.51, "ms_per_example": 300.0, "model": "SmolLM2"}))
    assert "teacher  0.510" in text and "150.0x faster" in text and "636 LLM calls" in text


def test_table_without_teacher_says_it_was_skipped() -> None:
    text = format_result(_result(None))
    assert "skipped: --no-teacher" in text and "faster" not in text and "student  0.720" in text
