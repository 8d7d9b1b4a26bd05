"""`p2m parse` and `p2m bench-parse`, in process (`main` with capsys); the teacher is a scripted fake."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from p2m.agent import cli_parse
from p2m.agent.cli import main

SURE = "Pick one of: urgent, normal, low for every support message."
UNSURE = "Group the photo captions by season, summer versus winter."


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = 0
    try:
        main(list(args))
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def teacher(monkeypatch, fake_llm):
    """Replace the embedded teacher with the fake one; `.started` counts how often it was opened."""
    state = {"started": 0}

    @contextlib.contextmanager
    def fake(*_a):
        state["started"] += 1
        yield fake_llm

    monkeypatch.setattr(cli_parse, "_teacher", fake)
    return state


def test_parse_prints_the_reading(capsys):
    code, out, _ = _run(capsys, "parse", SURE, "--no-llm")
    assert code == 0
    assert "task type      classification" in out
    assert "labels         urgent, normal, low" in out
    assert "metric         accuracy" in out
    assert "the teacher was not asked" in out


def test_parse_json_is_one_taskspec_object(capsys):
    prompt = "Does it mention the price? Answer yes or no.\nInput: too pricey\nOutput: yes\nInput: broke\nOutput: no"
    code, out, _ = _run(capsys, "parse", prompt, "--json", "--no-llm")
    spec = json.loads(out)
    assert code == 0 and out.count("\n") == 1
    assert spec["task_type"] == "classification" and spec["labels"] == ["yes", "no"]
    assert spec["demonstrations"] == [["too pricey", "yes"], ["broke", "no"]]
    assert {"instruction", "metric", "input_kind", "language", "target"} <= spec.keys()


def test_parse_reads_a_file_and_stdin(capsys, tmp_path, monkeypatch):
    path = tmp_path / "task.txt"
    path.write_bytes(b"Write a haiku about rain.\r\n")
    assert (
        json.loads(_run(capsys, "parse", "-f", str(path), "--json", "--no-llm")[1])["task_type"]
        == "text_generation"
    )
    monkeypatch.setattr("sys.stdin", io.StringIO("Answer the question from the passage."))
    assert json.loads(_run(capsys, "parse", "-", "--json", "--no-llm")[1])["task_type"] == "extractive_qa"


@pytest.mark.parametrize("args", [["parse", "", "--no-llm"], ["parse", "  \n", "--no-llm"], ["parse", ""]])
def test_parse_empty_prompt_is_one_error_line(capsys, args, teacher):
    code, out, err = _run(capsys, *args)
    assert code == 1 and out == ""
    assert err.startswith("Error: the prompt is empty") and err.count("\n") == 1
    assert teacher["started"] == 0


def test_parse_refusal_says_what_was_read(capsys):
    code, _, err = _run(capsys, "parse", "Answer trivia questions about world history.", "--no-llm")
    assert code == 1
    assert err.startswith("Error: read as extractive QA (") and "no passages" in err and err.count("\n") == 1


def test_parse_missing_file_is_one_error_line(capsys, tmp_path):
    code, _, err = _run(capsys, "parse", "-f", str(tmp_path / "nope.txt"), "--no-llm")
    assert code == 1 and err.startswith("Error: cannot read the prompt file") and err.count("\n") == 1


def test_parse_starts_the_teacher_only_when_unsure(capsys, teacher, fake_chat):
    _run(capsys, "parse", SURE)
    assert teacher["started"] == 0
    fake_chat.enqueue(json.dumps({"task_type": "classification", "labels": ["summer", "winter"]}))
    code, out, _ = _run(capsys, "parse", UNSURE)
    assert code == 0 and teacher["started"] == 1
    assert "labels         summer, winter" in out
    assert "the deterministic reading + the teacher" in out and "taken from it: labels, task type" in out


def test_parse_asks_the_teacher_before_refusing(capsys, teacher, fake_chat):
    fake_chat.enqueue(json.dumps({"task_type": "text_generation", "labels": []}))
    code, _, err = _run(capsys, "parse", "Answer trivia questions about world history.")
    assert code == 1 and teacher["started"] == 1 and len(fake_chat.history) == 1
    assert err.startswith("Error: read as extractive QA")


def _corpus(tmp_path) -> str:
    rows = [
        {"prompt": SURE, "task_type": "classification", "labels": ["Urgent", "normal", "low"], "note": ""},
        {"prompt": "Write a haiku about rain.", "task_type": "text_generation", "labels": [], "note": ""},
        {"prompt": UNSURE, "task_type": "classification", "labels": ["summer", "winter"], "note": "teacher"},
        {"prompt": "hello there", "task_type": None, "labels": [], "refuse": True, "note": "no task"},
    ]
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return str(path)


def test_bench_parse_deterministic(capsys, tmp_path, teacher):
    out_file = tmp_path / "out" / "parse.json"
    code, out, _ = _run(capsys, "bench-parse", _corpus(tmp_path), "--no-llm", "--out", str(out_file))
    assert code == 0 and teacher["started"] == 0
    lines = out.splitlines()
    assert (
        lines[0].startswith("deterministic")
        and "task type 3/4 (0.750)" in lines[0]
        and "both 3/4" in lines[0]
    )
    assert lines[1] == "per type (both right): classification 1 of 2, refused 1 of 1, text_generation 1 of 1"
    res = json.loads(out_file.read_text())
    assert res["n"] == 4 and res["full"] is None and len(res["rows"]) == 4
    assert res["rows"][3]["deterministic"]["refused"].startswith("could not find a task")


def test_bench_parse_with_the_teacher(capsys, tmp_path, teacher, fake_chat):
    fake_chat.enqueue(json.dumps({"task_type": "classification", "labels": ["summer", "winter"]}))
    code, out, _ = _run(capsys, "bench-parse", _corpus(tmp_path))
    assert code == 0 and teacher["started"] == 1
    lines = out.splitlines()
    assert "both 3/4" in lines[0]
    assert lines[1].startswith("+ teacher (2 asked)") and "both 4/4 (1.000)" in lines[1]
    assert "classification 1/2 of 2" in lines[2]


def test_bench_parse_bad_corpus_names_the_line(capsys, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "x", "task_type": "poetry", "labels": []}) + "\n")
    code, _, err = _run(capsys, "bench-parse", str(path), "--no-llm")
    assert code == 1 and err.startswith(f"Error: {path}:1: not a corpus row") and err.count("\n") == 1
