"""QA, code and data-to-text runs end to end on the fake teacher: stages, model folder, card, demo, bench.

The sequence students are replaced by a memorising stand-in (the real ones are tested in
tests/test_train_seq.py and, with the embedded model, in the slow test at the end).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from p2m.agent.options import RunOptions, open_store
from p2m.errors import TaskError
from p2m.tools.generate import GenConfig
from p2m.tools.kinds.sequence import FAST_LAYERS
from p2m.tools.llm import LLMConfig
from p2m.tools.parse import qa_parts
from p2m.tools.train import TrainConfig
from tests.fakes import FakeOpenAIServer
from tests.helpers import run_once
from tests.test_generate_seq import CODE_PROMPT, D2T_PROMPT, QA_PROMPT


class MemoStudent:
    """Answers from its training table; QA: the first capitalised word or number of the passage."""

    def __init__(self, kind: str, table: dict[str, str]) -> None:
        self.kind, self.table, self.meta = kind, table, {"best_epoch": 1}

    def predict(self, inputs: list[str], **kw) -> list[str]:
        if self.kind == "extractive-qa":
            return [self.table.get(x) or (qa_parts(x) or ("x",))[0].split()[-1].strip(".") for x in inputs]
        return [self.table.get(x, "The place.") for x in inputs]

    def save(self, path) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "p2m_seq.json").write_text(json.dumps({"kind": self.kind, "table": self.table}))


def _load(path, fast: bool = True) -> MemoStudent:
    meta = json.loads((Path(path) / "p2m_seq.json").read_text())
    return MemoStudent(meta["kind"], meta["table"])


@pytest.fixture
def memo_students(monkeypatch):
    import p2m.tools.train_seq as ts

    seen: dict[str, list] = {}

    def gen(train, val, instruction, cfg, progress=False):
        seen["gen"] = train
        return MemoStudent("causal-lm", dict(train))

    def qa(train, val, cfg, progress=False):
        seen["qa"] = train
        return MemoStudent("extractive-qa", dict(train))

    monkeypatch.setattr(ts, "finetune_generator", gen)
    monkeypatch.setattr(ts, "finetune_qa", qa)
    monkeypatch.setattr(ts, "load_seq_student", _load)
    return seen


def _opts(n: int = 16, **kw) -> RunOptions:
    return RunOptions(gen=GenConfig(examples=n, minutes=0), train=TrainConfig(epochs=1), retrieve=False, **kw)


@pytest.mark.parametrize(
    ("prompt", "task_type", "metric", "kind"),
    [
        (QA_PROMPT, "extractive_qa", "squad_f1", "extractive-qa"),
        (CODE_PROMPT, "text_to_code", "chrf", "causal-lm"),
        (D2T_PROMPT, "data_to_text", "chrf", "causal-lm"),
    ],
)
def test_seq_run_deploys_model_card_and_report(prompt, task_type, metric, kind, fake_llm, memo_students):
    res = run_once(prompt, _opts(), llm=fake_llm, progress=False)
    assert res.spec.task_type == task_type
    report = json.loads((res.folder / "report.json").read_text())
    assert report["validation"]["metric"] == metric and report["student"]["kind"] == kind
    assert report["data"]["generation"]["usable"] == 16
    assert report["data"]["curation"]["kept"] >= 8 and "diversity" in report["data"]["curation"]
    assert report["data"]["train"] + report["data"]["validation"] >= 8
    card = (res.folder / "README.md").read_text()
    assert card.startswith("# p2m model:") and task_type in card and "Worst validation examples" in card
    assert (res.folder / "model" / "p2m_seq.json").is_file()
    assert open_store().get_run(res.run_id)["status"] == "complete"
    train = memo_students["qa" if kind == "extractive-qa" else "gen"]
    if task_type == "extractive_qa":
        assert all(y in qa_parts(x)[0] for x, y in train)  # only verified spans reach the student


def test_seq_run_scores_the_eval_file_with_every_reference(tmp_path, fake_llm, memo_students):
    path = tmp_path / "eval.jsonl"
    rows = [{"input": "name[Aroma], area[riverside]", "output": ["The place.", "Aroma is by the river."]},
            {"input": "name[Vaults], food[French]", "output": "Vaults serves French food."}]  # fmt: skip
    path.write_text("\n".join(json.dumps(r) for r in rows))
    res = run_once(D2T_PROMPT, _opts(eval_file=str(path)), llm=fake_llm, progress=False)
    user = res.report["user_eval"]
    assert user["n"] == 2 and user["scores"]["exact_match"] == 0.5  # the first row's first reference matches
    assert user["errors"][0]["input"] == "name[Vaults], food[French]"


def test_seq_run_resumes_without_repeating_requests(fake_llm, fake_chat, memo_students):
    calls = {"n": 0}
    real = fake_chat.responder

    def flaky(messages, params):
        calls["n"] += 1
        if calls["n"] == 14:
            raise KeyboardInterrupt
        return real(messages, params)

    fake_chat.responder = flaky
    from p2m.errors import RunInterrupted

    with pytest.raises(RunInterrupted):
        run_once(CODE_PROMPT, _opts(), llm=fake_llm, progress=False)
    store = open_store()
    run = store.list_runs()[-1]
    fake_chat.responder = real
    res = run_once(resume=run["id"], llm=fake_llm, progress=False)
    indexes = [r["request_index"] for r in store.examples(run["id"], kept=None)]
    assert len(indexes) == len(set(indexes))
    assert res.report["data"]["generation"]["usable"] + 0 >= 1
    assert sum(r["kept"] for r in store.examples(run["id"], kept=None)) >= 8


class SlowStudent(MemoStudent):
    def predict(self, inputs: list[str], **kw) -> list[str]:
        import time

        time.sleep(0.003 * len(inputs))
        return super().predict(inputs)


@pytest.mark.parametrize(("fast_forgets", "chosen"), [(False, f"lora-{FAST_LAYERS}L"), (True, "lora")])
def test_a_cut_down_student_is_deployed_only_when_nearly_as_good(fast_forgets, chosen, fake_llm, monkeypatch):
    import p2m.tools.train_seq as ts

    layers = []

    def gen(train, val, instruction, cfg, progress=False):
        layers.append(cfg.layers)  # the cut-down one "forgets" everything when fast_forgets
        if not cfg.layers:  # the full one is the slower
            return SlowStudent("causal-lm", dict(train + val))
        return MemoStudent("causal-lm", {} if fast_forgets else dict(train + val))

    monkeypatch.setattr(ts, "finetune_generator", gen)
    monkeypatch.setattr(ts, "load_seq_student", _load)
    res = run_once(D2T_PROMPT, _opts(students=["lora", f"lora-{FAST_LAYERS}L"]), llm=fake_llm, progress=False)
    assert layers == [0, FAST_LAYERS]
    report = res.report
    assert report["student"]["selected"] == "r0-" + chosen
    assert [c["name"] for c in report["candidates"]] == ["r0-lora", f"r0-lora-{FAST_LAYERS}L"]
    assert all(c["ms_per_example"] >= 0 for c in report["candidates"])
    select = [d for d in report["decisions"] if d["action"] == "select"][-1]
    assert select["args"]["name"] == "r0-" + chosen and ("as fast" in select["reason"]) == (chosen != "lora")
    assert (f"{FAST_LAYERS} of its 30 layers" in report["student"]["base"]) == (chosen != "lora")
    # the default: one student
    layers.clear()
    run_once(D2T_PROMPT, _opts(), llm=fake_llm, progress=False)
    run_once(CODE_PROMPT, _opts(), llm=fake_llm, progress=False)
    assert layers == [0, 0]


class EchoStudent(MemoStudent):
    """A full student that describes any record by its values: '<v1> and <v2> is a place here.'"""

    def predict(self, inputs: list[str], **kw) -> list[str]:
        from p2m.tools.parse import record_fields

        return [" and ".join(v for _, v in record_fields(x)) + " is a place here." for x in inputs]


def test_the_cut_down_data_to_text_student_also_learns_from_the_full_ones_checked_texts(
    fake_llm, monkeypatch
):
    import p2m.tools.kinds.sequence as ps
    import p2m.tools.train_seq as ts

    sizes = []

    def gen(train, val, instruction, cfg, progress=False):
        sizes.append((cfg.layers, len(train), train))
        return EchoStudent("causal-lm", dict(train + val)) if not cfg.layers else MemoStudent("causal-lm", {})

    monkeypatch.setattr(ts, "finetune_generator", gen)
    monkeypatch.setattr(ts, "load_seq_student", _load)
    monkeypatch.setattr(ps, "DISTIL_RECORDS", 40)
    res = run_once(D2T_PROMPT, _opts(students=["lora", f"lora-{FAST_LAYERS}L"]), llm=fake_llm, progress=False)
    (full_layers, n_full, full_rows), (cut_layers, n_cut, cut_rows) = sizes
    assert (full_layers, cut_layers) == (0, FAST_LAYERS)
    assert full_rows == cut_rows[:n_full] and n_full + 10 <= n_cut <= n_full + 40  # echoes of yes/no fail
    assert all(" is a place here." in y for _, y in cut_rows[n_full:])
    assert not {x for x, _ in cut_rows[n_full:]} & {x for x, _ in full_rows}  # new records only
    lines = (res.folder / "data" / "distilled.jsonl").read_text().splitlines()
    assert len(lines) == n_cut - n_full and json.loads(lines[0])["source"] == "distilled:lora"
    cut = [e for e in open_store().experiments(res.run_id) if e["name"].endswith(f"{FAST_LAYERS}L")]
    assert cut[0]["params"]["distilled_rows"] == n_cut - n_full


def test_qa_prompt_without_passages_fails_before_generation(fake_llm):
    with pytest.raises(TaskError, match="passage"):
        run_once("Answer trivia questions about history.", _opts(), llm=fake_llm, progress=False)


@pytest.mark.parametrize("prompt", [D2T_PROMPT, QA_PROMPT])
def test_the_planner_runs_rounds_for_generation_and_qa_tasks(prompt, fake_llm, memo_students):
    from p2m.agent.planner import PlanOptions, run_planner

    res = run_planner(prompt, _opts(), PlanOptions(max_rounds=2, decider="rule", target=1.0), llm=fake_llm,
                      progress=False)  # fmt: skip
    decisions = open_store().decisions(res.run_id)
    more = [d for d in decisions if d["action"] == "generate_more" and (d["args"] or {}).get("round") == 1]
    assert more and more[0]["args"]["n"] > 0 and "labels" not in more[0]["args"]
    assert res.report["planner"]["rounds"] == 2
    names = [m["name"] for m in res.report["models_tried"]]
    assert names[0].startswith("r0-") and names[-1].startswith("r1-")
    # both estimates, each with its rows (the prompt's demonstrations are the real rows)
    est = res.report["estimates"]
    assert est["teacher"]["rows"] >= 1 and est["real"]["rows"] == len(res.spec.demonstrations)
    assert est["real"]["low"] <= est["real"]["score"] <= est["real"]["high"]


def test_demo_fits_the_task(memo_students):
    from p2m.tools.deploy import demo_fn

    qa = demo_fn(MemoStudent("extractive-qa", {}), "extractive_qa")
    assert qa("Ada moved to Leeds in 1990.", "Where did Ada move?") == "1990"
    assert "passage" in qa("", "Where?")
    gen = demo_fn(MemoStudent("causal-lm", {"x": "y"}), "text_to_code")
    assert gen("x") == "y" and "Type" in gen("  ")


def test_gradio_demo_has_passage_and_question_boxes():
    pytest.importorskip("gradio")
    from p2m.tools.deploy import build_demo

    demo = build_demo(
        MemoStudent("extractive-qa", {}), {"task_type": "extractive_qa", "instruction": "Answer."}
    )
    labels = [getattr(b, "label", None) for b in demo.blocks.values()]
    assert "Passage" in labels and "Question" in labels


# bench --------------------------------------------------------------------------------------------


def _bench_dir(tmp_path: Path) -> Path:
    d = tmp_path / "d2t_task"
    d.mkdir()
    (d / "task.json").write_text(json.dumps({"name": "tiny_d2t", "task_type": "data_to_text", "metric": "chrf",
                                             "prompt": D2T_PROMPT}))  # fmt: skip
    rows = [{"input": "name[Aroma], area[riverside]", "output": ["The place.", "Aroma is by the river."]},
            {"input": "name[Vaults], food[French]", "output": ["Vaults serves French food."]}]  # fmt: skip
    (d / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return d


def test_bench_scores_student_and_teacher_on_every_reference(tmp_path, memo_students):
    from p2m.agent.bench import format_result, run_bench

    with FakeOpenAIServer() as server:
        opts = _opts(llm=LLMConfig(base_url=server.url, model="fake", api_key="x"))
        result = run_bench(_bench_dir(tmp_path), tmp_path / "out.json", opts, progress=False)
    assert result["metric"] == "chrf" and result["n_test"] == 2
    assert result["student"]["batched"] is True and result["ceiling"] is None
    assert 0 < result["student"]["score"] <= 100 and result["teacher"]["score"] < result["student"]["score"]
    assert result["teacher"]["prompt_template"].startswith("{prompt}")
    assert json.loads((tmp_path / "out.json").read_text())["task"] == "tiny_d2t"
    assert "(batched)" in format_result(result)
    # the contract: both validation estimates, each with its rows; how far each was from the test score
    v = result["student"]["validation"]
    assert set(v["teacher"]) == {"score", "rows"} and v["teacher"]["rows"] >= 1
    assert {"score", "rows", "low", "high"} <= set(v["real"]) and v["real"]["rows"] >= 1
    assert v["error"]["teacher"] == pytest.approx(
        result["student"]["score"] - v["teacher"]["score"], abs=1e-3
    )
    assert "test − estimate" in format_result(result) and result["pipeline"]["planner"]["rounds"] >= 1


@pytest.mark.parametrize("name", ["qa_passages", "python_snippets"])
def test_own_bench_folders_follow_the_contract(name):
    from p2m.agent.bench import load_task
    from p2m.tools.evaluate import load_jsonl_refs
    from p2m.tools.parse import parse_task

    folder = Path(__file__).resolve().parents[1] / "bench" / "tasks" / name
    task = load_task(folder)
    rows = load_jsonl_refs(folder / "test.jsonl")
    assert 40 <= len(rows) <= 80
    assert parse_task(task["prompt"]).task_type == task["task_type"]
    assert len({x for x, _ in rows}) == len(rows)
    if task["task_type"] == "extractive_qa":
        assert all(qa_parts(x) and all(r in qa_parts(x)[0] for r in refs) for x, refs in rows)
    else:
        import ast

        for _, refs in rows:
            for r in refs:
                ast.parse(r)


# the real students ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("prompt", [QA_PROMPT, D2T_PROMPT])
def test_real_students_train_deploy_and_reload(prompt, fake_llm):
    from p2m.tools.deploy import load_run_model

    res = run_once(prompt, _opts(n=12), llm=fake_llm, progress=False)
    student, spec = load_run_model(res.folder)
    out = student.predict([i for i, _ in res.spec.demonstrations])
    assert len(out) == len(res.spec.demonstrations) and all(isinstance(o, str) for o in out)
    assert res.report["validation"]["n"] >= 1 and spec["task_type"] == res.spec.task_type


# the command line: bad inputs are one line --------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "fragment", "unsure"),
    [
        ("Answer trivia questions about world history.", "passage", True),
        ("Write a JavaScript function for the request.", "Python code only", False),
    ],
)
def test_cli_refuses_bad_seq_prompts_in_one_line(tmp_path, prompt, fragment, unsure):
    from tests.test_cli import P2M, assert_one_line_error, p2m

    if not P2M.exists():
        pytest.skip("the p2m console script is not installed")
    with (
        FakeOpenAIServer() as server
    ):  # an unsure reading asks the teacher before refusing (it changes nothing)
        done = p2m(
            tmp_path / "home", "run", prompt, "--no-retrieve", "--llm", server.url, "--llm-model", "fake"
        )
        assert (server.requests >= 1) == unsure
    assert_one_line_error(done, fragment)
