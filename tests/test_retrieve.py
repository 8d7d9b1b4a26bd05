"""Using found data: loading local formats, column and label mapping on odd schemas, sampling, the pipeline."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from p2m.agent.cli import main
from p2m.agent.options import RunOptions, open_store
from p2m.errors import ConfigError, DataError
from p2m.memory.vectors import VectorIndex, open_index
from p2m.tools import hubindex
from p2m.tools.embed import embed
from p2m.tools.generate import GenConfig
from p2m.tools.llm import LLMClient
from p2m.tools.retrieve import load_table, local_entry, map_columns, sample_examples
from p2m.tools.train import TrainConfig
from p2m.tools.types import TaskSpec
from tests.fakes import FakeChatModel, label_text
from tests.helpers import closed_port, run_once

CHROMA = Path(sys.executable).with_name("chroma")  # the venv's, whether or not it is on PATH
SPEC = TaskSpec("Classify support tickets as billing, bug or other", labels=["billing", "bug", "other"],
                input_kind="support ticket", demonstrations=[("I was charged twice", "billing")])  # fmt: skip


def _rows(n: int = 60) -> list[dict]:
    names = {"billing": "Payments", "bug": "Defect", "other": "General"}
    return [{"ticket_id": i, "body": label_text(lab, i), "queue": names[lab], "priority": i % 3}
            for i in range(n) for lab in [("billing", "bug", "other")[i % 3]]]  # fmt: skip


def _write(folder: Path, fmt: str, rows: list[dict]) -> Path:
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows)
    path = folder / f"data.{fmt}"
    if fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "jsonl":
        df.to_json(path, orient="records", lines=True)
    else:
        df.to_parquet(path)
    return path


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_load_table_reads_each_format(tmp_path, fmt) -> None:
    path = _write(tmp_path, fmt, _rows(9))
    table = load_table(path)
    assert len(table) == 9 and {"body", "queue"} <= set(table.features)
    assert len(load_table(tmp_path)) == 9  # the folder works too


def test_load_table_reads_a_save_to_disk_folder(tmp_path) -> None:
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    feats = Features({"text": Value("string"), "label": ClassLabel(names=["billing", "bug"])})
    ds = Dataset.from_dict({"text": ["refund please", "app crashes"], "label": [0, 1]}, features=feats)
    DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "saved"))
    assert load_table(tmp_path / "saved")["text"] == ["refund please", "app crashes"]


def test_bad_data_gets_one_clear_error(tmp_path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_table(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("text,label\n")
    with pytest.raises(DataError, match="has no rows|cannot read"):
        load_table(tmp_path / "empty.csv")
    (tmp_path / "bad.jsonl").write_text('{"text": "a", "label": 1}\n{oops\n')
    with pytest.raises(DataError, match="cannot read"):
        load_table(tmp_path / "bad.jsonl")
    mixed = tmp_path / "mixed"
    _write(mixed, "csv", _rows(3))
    _write(mixed, "jsonl", _rows(3))
    with pytest.raises(DataError, match="mixes formats"):
        load_table(mixed)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="unsupported format"):
        load_table(tmp_path / "notes.txt")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataError, match="holds no CSV"):
        load_table(tmp_path / "nothing")


def test_labels_with_other_names_map_by_name_and_content(tmp_path) -> None:
    table = load_table(_write(tmp_path, "csv", _rows()))
    cmap = map_columns(table, SPEC)
    assert cmap is not None and cmap.by == "rule"
    assert (cmap.input_column, cmap.label_column) == ("body", "queue")
    assert cmap.labels == {"Payments": "billing", "Defect": "bug", "General": "other"}


def test_numeric_labels_map_by_their_examples(tmp_path) -> None:
    rows = [{"txt": label_text(lab, i), "y": ["billing", "bug", "other"].index(lab)}
            for i in range(90) for lab in [("billing", "bug", "other")[i % 3]]]  # fmt: skip
    cmap = map_columns(load_table(_write(tmp_path, "jsonl", rows)), SPEC)
    assert cmap is not None and cmap.labels == {"0": "billing", "1": "bug", "2": "other"}


def test_data_that_cannot_serve_is_refused(tmp_path) -> None:
    no_labels = [{"text": f"free text number {i}", "n": i} for i in range(30)]
    assert map_columns(load_table(_write(tmp_path / "a", "csv", no_labels)), SPEC) is None
    one_label = [{"text": label_text("bug", i), "label": "bug"} for i in range(30)]
    assert map_columns(load_table(_write(tmp_path / "b", "csv", one_label)), SPEC) is None


def test_a_capable_llm_checks_the_mapping(tmp_path) -> None:
    table = load_table(_write(tmp_path, "csv", _rows()))
    chat = FakeChatModel()
    llm = LLMClient(chat, "fake-strong", "json_schema", capable=True)
    chat.enqueue(
        *[json.dumps({"answer": a}) for a in ("bug", "none", "billing")]
    )  # Defect, General, Payments
    cmap = map_columns(table, SPEC, llm=llm)
    assert cmap is not None and cmap.by == "llm"
    assert cmap.labels == {"Defect": "bug", "General": None, "Payments": "billing"}
    assert len(chat.history) == 3 and "Payments" in str(chat.history[-1])


def test_sample_is_balanced_deduplicated_and_never_repeats_eval_rows(tmp_path) -> None:
    rows = _rows(90) + [{"ticket_id": 999, "body": "exact eval text", "queue": "Payments", "priority": 0}]
    rows += [{"ticket_id": 1000, "body": rows[0]["body"], "queue": "Payments", "priority": 0}]  # a duplicate
    table = load_table(_write(tmp_path, "csv", rows))
    cmap = map_columns(table, SPEC)
    out, rep = sample_examples(table, cmap, SPEC, 45, "user:x", exclude=["Exact eval text!"], licence="mit")
    assert rep["per_label"] == {"billing": 15, "bug": 15, "other": 15}
    assert "exact eval text" not in {r["input"] for r in out}
    assert len({r["input"] for r in out}) == len(out)
    assert all(r["source"] == "user:x" and r["quality"]["licence"] == "mit" for r in out)


def test_local_entry_describes_the_data(tmp_path) -> None:
    entry = local_entry(_write(tmp_path / "tickets", "csv", _rows(12)))
    assert entry.kind == "local" and entry.id == "local/data"
    assert (
        entry.meta["rows"] == 12 and "Payments" in entry.keywords and entry.meta["path"].endswith("data.csv")
    )


PROMPT = "Classify customer support tickets as billing, bug or other.\n\nInput: I was charged twice\nOutput: billing"


def test_run_finds_local_data_and_trains_on_it_with_provenance(tmp_path, fake_llm) -> None:
    path = _write(tmp_path / "tickets", "parquet", _rows(120))
    index = open_index()
    hubindex.build(index, "local", [local_entry(path)], embed)
    opts = RunOptions(gen=GenConfig(examples=30, minutes=0), train=TrainConfig(epochs=1), finetune=False,
                      retrieve_max=60)  # fmt: skip
    res = run_once(PROMPT, opts, llm=fake_llm, progress=False)
    store = open_store()
    retrieved = store.examples(res.run_id, source_prefix="user:")
    assert len(retrieved) == 60
    held = [r for r in retrieved if r["split"] == "validation"]  # every fifth: real validation rows
    assert len(held) == 12 and all(r["split"] == "train" for r in retrieved if r not in held)
    assert {r["output"] for r in retrieved} == {"billing", "bug", "other"}
    report = json.loads((res.folder / "report.json").read_text())
    assert report["data"]["retrieval"]["used"] == ["local/data"]
    assert report["data"]["train"] >= 48 + 20
    assert report["data"]["real_validation"] == 12 + 1 and report["estimates"]["real"]["rows"] == 13
    actions = [(d["action"], d["by"]) for d in store.decisions(res.run_id)]
    assert ("retrieve", "rule") in actions
    # resuming a finished stage does not retrieve twice
    assert store.stage_info(res.run_id, "retrieve")["rows"] == 60


def test_run_without_index_or_with_retrieval_off_just_generates(fake_llm) -> None:
    opts = RunOptions(gen=GenConfig(examples=30, minutes=0), train=TrainConfig(epochs=1), finetune=False)
    res = run_once(PROMPT, opts, llm=fake_llm, progress=False)
    reasons = [d["reason"] for d in open_store().decisions(res.run_id) if d["action"] == "retrieve"]
    assert reasons and "index is empty" in reasons[0]
    opts.retrieve = False
    res = run_once(PROMPT, opts, llm=fake_llm, progress=False)
    reasons = [d["reason"] for d in open_store().decisions(res.run_id) if d["action"] == "retrieve"]
    assert "retrieval is off" in reasons[0]


def test_cli_index_add_and_its_errors(tmp_path, capsys) -> None:
    path = _write(tmp_path / "t", "csv", _rows(12))
    main(["index", "add", str(path), "--name", "tickets"])  # returns normally: exit 0
    assert "added: local/tickets (12 rows" in capsys.readouterr().out
    main(["index", "add", str(path), "--name", "tickets"])
    assert "already indexed" in capsys.readouterr().out
    mixed = tmp_path / "mixed"
    _write(mixed, "csv", _rows(3))
    _write(mixed, "jsonl", _rows(3))
    with pytest.raises(SystemExit) as e:
        main(["index", "add", str(mixed)])
    err = capsys.readouterr().err
    assert (
        e.value.code == 1 and err.startswith("Error: ") and "mixes formats" in err and "Traceback" not in err
    )


def test_unreachable_chroma_server_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot open the Chroma server"):
        VectorIndex(tmp_path / "index", chroma_url=f"http://127.0.0.1:{closed_port()}")
    assert not (tmp_path / "index").exists()  # nothing half-written


@pytest.mark.slow
@pytest.mark.skipif(not CHROMA.exists(), reason="no chroma CLI beside this Python")
def test_chroma_server_works_like_the_embedded_client(tmp_path) -> None:
    port = closed_port()
    proc = subprocess.Popen([str(CHROMA), "run", "--path", str(tmp_path / "srv"), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            try:
                index = VectorIndex(tmp_path / "side", chroma_url=url)
                break
            except ConfigError:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        path = _write(tmp_path / "tickets", "csv", _rows(30))
        hubindex.build(index, "local", [local_entry(path)], embed)
        from p2m.tools.search import search

        hits = search(index, "customer support tickets about payments", "datasets", k=3)
        assert [c.id for c in hits] == ["local/data"] and hits[0].kind == "local"
        assert not (tmp_path / "side" / "chroma").exists()  # the vectors live in the server
    finally:
        proc.terminate()
        proc.wait(timeout=30)
