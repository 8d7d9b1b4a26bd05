"""Every bad input of the catalogue (tests/bad_inputs.py) gets one readable line and loses nothing; a public
link needs a login; uploads have a size limit; docs/errors.md is the catalogue's rendering."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2m.agent.cli import main
from p2m.errors import ConfigError, DataError, P2MError
from tests.bad_inputs import CASES, DOC, Case, Ctx, render
from tests.helpers import closed_port


@pytest.fixture(autouse=True)
def _no_login_or_limit(monkeypatch) -> None:
    for var in ("P2M_UI_AUTH", "P2M_MAX_UPLOAD_MB", "P2M_CHROMA_URL"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def fake_hub() -> Iterator:
    from tests.fakehub import FakeHub

    with FakeHub(max_datasets=0, max_models=0) as hub:
        yield hub


def _online(monkeypatch, tmp_path: Path, hub) -> None:
    """huggingface_hub talking to the loopback fake Hub (see tests/test_fakehub.py for why each line)."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setenv("HF_ENDPOINT", hub.url)


def _runs_left_running() -> list[str]:
    db = Path(os.environ["P2M_HOME"]) / "p2m.sqlite"
    if not db.is_file():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
        return [r[0] for r in con.execute("SELECT id FROM runs WHERE status = 'running'")]


def _params() -> list:
    out = []
    for c in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=f"owner: {c.owner}")] if c.owner else []
        out.append(pytest.param(c, id=c.id, marks=marks))
    return out


@pytest.mark.parametrize("case", _params())
def test_bad_input(case: Case, tmp_path, monkeypatch, capsys, request) -> None:
    # safety net: a case that reached the teacher fails fast here instead of starting the embedded one
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{closed_port()}/v1")
    with contextlib.ExitStack() as stack:
        ctx = Ctx(tmp_path / "case", stack, monkeypatch)
        ctx.tmp.mkdir()
        if case.surface in ("chat", "ui"):  # nothing here may train: fail at once instead of for minutes
            from p2m.agent.chat import ChatSession

            monkeypatch.setattr(
                ChatSession, "_run", lambda *a, **k: pytest.fail("a bad input started training")
            )
        if case.surface == "retrieve":
            ctx.hub = request.getfixturevalue("fake_hub")
            _online(monkeypatch, tmp_path, ctx.hub)
        if case.argv is not None:
            argv = case.argv(ctx)
            capsys.readouterr()
            with pytest.raises(SystemExit) as exit_:
                main(argv)
            out, err = capsys.readouterr()
            shown = f"p2m {' '.join(argv)[:300]}\nexit {exit_.value.code}\nstdout:\n{out[-2000:]}\n"
            shown += f"stderr:\n{err[-3000:]}"
            assert exit_.value.code not in (0, None), shown
            assert "Traceback" not in out + err, shown
            lines = [line for line in err.splitlines() if line.strip()]
            assert len(lines) == 1 and lines[0].startswith("Error: "), shown
            assert case.expect in lines[0], shown
        else:
            try:
                said = case.call(ctx)
            except P2MError as e:
                said = f"Error: {e}"
            assert "\n" not in said.strip() or case.surface == "chat", said
            assert case.expect in said, said
            assert "Traceback" not in said, said
    left = _runs_left_running()
    if case.surface not in ("chat", "ui"):  # a chat session's run stays open while the session is
        assert left == [], f"runs left 'running' after the error: {left}"


def test_catalogue_is_large_and_well_formed() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    assert len(CASES) >= 60
    for c in CASES:
        assert (c.argv is None) != (c.call is None), c.id
        assert c.surface in ("cli", "bench", "index add", "chat", "ui", "retrieve"), c.id
        assert c.expect and c.wrong and c.show, c.id


def test_docs_errors_md_is_the_catalogue() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/errors.md is stale: run `python -m tests.bad_inputs --write`"
    )


# a public link needs a login; the app's launch arguments -------------------------------------------------
@pytest.fixture
def launched(monkeypatch) -> list[dict]:
    """gradio's Blocks.launch, recording its keyword arguments instead of serving."""
    import gradio as gr

    calls: list[dict] = []
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, *a, **kw: calls.append(kw))
    return calls


def test_ui_launch_passes_auth_and_upload_limit_to_gradio(launched, monkeypatch) -> None:
    from p2m.agent.options import RunOptions
    from p2m.agent.ui import launch

    monkeypatch.setenv("P2M_MAX_UPLOAD_MB", "20")
    launch(RunOptions(retrieve=False), share=True, auth=("ana", "s3:cret"))
    (kw,) = launched
    assert kw["share"] is True and kw["auth"] == ("ana", "s3:cret") and kw["max_file_size"] == 20_000_000
    assert kw["server_name"] == "127.0.0.1" and kw["server_port"] is None


def test_ui_share_without_auth_is_refused_before_launch(launched) -> None:
    from p2m.agent.options import RunOptions
    from p2m.agent.ui import launch

    with pytest.raises(ConfigError, match="add --auth USER:PASSWORD"):
        launch(RunOptions(retrieve=False), share=True)
    assert launched == []


def test_cli_ui_reads_auth_from_the_environment(launched, monkeypatch) -> None:
    monkeypatch.setenv("P2M_UI_AUTH", "ana:secret")
    main(["ui", "--share", "--no-retrieve"])  # returns: the fake launch does not block
    assert launched[0]["auth"] == ("ana", "secret") and launched[0]["share"] is True


def test_serve_passes_auth_and_refuses_share_without_it(launched, monkeypatch, tmp_path) -> None:
    from p2m.tools import deploy

    loaded: list[str] = []

    def fake_load(run):
        loaded.append(str(run))
        return object(), {"task_type": "classification", "instruction": "x", "demonstrations": []}

    monkeypatch.setattr(deploy, "load_run_model", fake_load)
    with pytest.raises(SystemExit):
        main(["serve", "RUN", "--share"])
    assert loaded == [] and launched == []  # refused before the model loads
    main(["serve", "RUN", "--share", "--auth", "ana:pw"])
    assert loaded == ["RUN"] and launched[0]["auth"] == ("ana", "pw") and launched[0]["share"] is True
    assert launched[0]["max_file_size"] == 200_000_000


def test_parse_auth() -> None:
    from p2m.tools.web import parse_auth

    assert parse_auth(None) is None
    assert parse_auth("ana:a:b") == ("ana", "a:b")  # the password may hold colons
    for bad in ("ana", ":pw", "ana:", " :pw", ""):
        with pytest.raises(ConfigError, match="USER:PASSWORD"):
            parse_auth(bad)


# the upload limit ------------------------------------------------------------------------------------------
def test_upload_limit_and_its_override(tmp_path, monkeypatch) -> None:
    from p2m.tools.uploads import MAX_UPLOAD_MB, check_upload_size, max_upload_mb

    assert max_upload_mb() == MAX_UPLOAD_MB == 200
    f = tmp_path / "big.csv"
    with open(f, "wb") as h:
        h.truncate(3_000_000)
    assert check_upload_size(f) == 3_000_000
    monkeypatch.setenv("P2M_MAX_UPLOAD_MB", "2")
    with pytest.raises(DataError, match=r"big.csv is 3 MB; files are limited to 2 MB"):
        check_upload_size(f)
    with pytest.raises(DataError, match="files are limited to 2 MB"):  # a folder counts its files together
        check_upload_size(tmp_path)
    monkeypatch.setenv("P2M_MAX_UPLOAD_MB", "-1")
    with pytest.raises(ConfigError, match="P2M_MAX_UPLOAD_MB must be a positive number"):
        max_upload_mb()


def test_ui_upload_handler_check_accepts_a_normal_file(tmp_path) -> None:
    from types import SimpleNamespace

    from p2m.agent.ui import upload_path

    f = tmp_path / "t.jsonl"
    f.write_text('{"input": "a", "output": "b"}\n')
    assert upload_path(str(f)) == str(f)
    assert upload_path(SimpleNamespace(name=str(f))) == str(f)  # gradio's file objects


def test_chat_upload_reads_a_whole_file_past_five_megabytes(tmp_path) -> None:
    from p2m.agent.refine import read_upload

    f = tmp_path / "big.jsonl"
    row = '{"input": "café crème ' + "x" * 200 + '", "output": "billing"}\n'
    f.write_text(row * 30_000, encoding="utf-8")  # ~6.5 MB: the old 5 MB cut split a character
    assert len(read_upload(f)) == 30_000
