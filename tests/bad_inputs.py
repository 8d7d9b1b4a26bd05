"""The catalogue of bad inputs: what people get wrong, on every surface, and what p2m says back.

Each `Case` says what is wrong, how to reproduce it (argv for the CLI, a callable for chat, the web app
and retrieval) and a fragment of what p2m must say. tests/test_bad_inputs.py runs every case and checks
the contract: a non-zero exit and exactly one `Error: …` line (or a message in the chat / web app), no
traceback, nothing lost. docs/errors.md is rendered from this list; regenerate it with

    python -m tests.bad_inputs --write

(a test fails when it differs). Builders get a `Ctx`: a fresh folder, an exit stack for things that must
stay open during the call (a socket holding a port), the test's monkeypatch and, for retrieval, a loopback
fake Hub.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers import closed_port

__all__ = ["Case", "Ctx", "CASES", "render", "DOC"]

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
TASK = "Classify texts as billing, bug or other."  # asks what one input is before it trains: no training
SPEC_LABELS = ["billing", "bug", "other"]
CLS_TASK = {"name": "toy", "task_type": "classification", "metric": "accuracy", "labels": ["pos", "neg"],
            "prompt": "Classify reviews as pos or neg."}  # fmt: skip
GOOD_TEST = '{"input": "loved it", "output": "pos"}\n{"input": "awful", "output": "neg"}\n'
LATIN1 = "text,label\ncafé crème was cold,billing\nthe app crashes,bug\n".encode("latin-1")
UTF16 = '{"input": "charged twice", "output": "billing"}\n'.encode("utf-16")
BINARY = bytes(range(256)) * 8


@dataclass
class Ctx:
    """What a case's builder gets: a fresh folder and helpers that live as long as the call."""

    tmp: Path
    stack: contextlib.ExitStack
    monkeypatch: Any = None
    hub: Any = None  # a started tests.fakehub.FakeHub, for surface "retrieve"

    def file(self, name: str, data: bytes | str = b"") -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def sparse(self, name: str, mb: float) -> Path:
        """A file of `mb` megabytes that takes no disk space (a hole)."""
        path = self.tmp / name
        with open(path, "wb") as f:
            f.truncate(int(mb * 1e6))
        return path

    def blocked(self) -> Path:
        """A path no one can write to, even root: a folder under a regular file."""
        return self.file("a_file", "not a folder") / "sub"

    def busy_port(self) -> int:
        """A loopback port something listens on for the rest of the call."""
        s = self.stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        return s.getsockname()[1]

    def bench(self, task: dict | str | bytes | None = None, test: str | None = GOOD_TEST) -> Path:
        folder = self.tmp / "task"
        folder.mkdir(exist_ok=True)
        if isinstance(task, dict):
            task = json.dumps(task)
        if task is not None:
            (folder / "task.json").write_bytes(task.encode() if isinstance(task, str) else task)
        if test is not None:
            (folder / "test.jsonl").write_text(test)
        return folder


@dataclass(frozen=True)
class Case:
    """One bad input.

    Attributes:
        id: a short unique name (the pytest id).
        surface: cli, bench, index add, chat, ui or retrieve.
        wrong: what is wrong with the input, in words.
        show: how a person gets there, as typed (for docs/errors.md).
        expect: a fragment of what p2m says (the test checks it; the docs show it).
        argv: CLI cases: the arguments after `p2m`, built in the case's folder.
        call: other cases: returns what p2m says (a chat reply, a UI message) or raises a P2MError.
        owner: the fix belongs in a file another engineer owns: the case is a strict xfail until it lands.
    """

    id: str
    surface: str
    wrong: str
    show: str
    expect: str
    argv: Callable[[Ctx], list[str]] | None = None
    call: Callable[[Ctx], str] | None = None
    owner: str | None = None


def _llm() -> list[str]:
    return ["--llm", f"http://127.0.0.1:{closed_port()}/v1"]


def _finished_run(ctx: Ctx, status: str = "complete", model: bool = False) -> str:
    """A run recorded in the store (no model trained): enough for resume/predict/serve to find it."""
    from p2m.agent.options import open_store
    from p2m.memory import runs_dir

    folder = runs_dir() / "20260101-000000-toy"
    folder.mkdir(parents=True, exist_ok=True)
    store = open_store()
    store.create_run("20260101-000000-toy", TASK, {}, str(folder))
    store.set_status("20260101-000000-toy", status)
    return "20260101-000000-toy"


# chat -------------------------------------------------------------------------------------------------
def _session(ctx: Ctx, task: bool = True, asking: bool = True) -> Any:
    """A chat session with the fake teacher; with a task, it waits for the answer to "what is one input?"
    (`asking`), so nothing trains; without `asking` the question counts as answered (still untrained)."""
    from p2m.agent.chat import ChatSession
    from p2m.tools.llm import LLMClient
    from tests.fakes import FakeChatModel

    s = ChatSession(llm=LLMClient(FakeChatModel(), "fake", "json_object"))
    ctx.stack.callback(s.close)
    if task:
        s.handle(TASK)
        assert s.state["asking"] == "input_kind", s.messages()
        if not asking:
            s.state["asking"] = None
            s._save()
    return s


def _say(message: str, task: bool = True, asking: bool = False) -> Callable[[Ctx], str]:
    def call(ctx: Ctx) -> str:
        s = _session(ctx, task, asking)
        replies = s.handle(message)
        assert not s.state["versions"], "a bad message must not train"
        return "\n".join(replies)

    return call


def _upload(make: Callable[[Ctx], Path], task: bool = True) -> Callable[[Ctx], str]:
    """Upload a file in the chat (`/upload FILE` in the terminal, the upload button in the web app)."""

    def call(ctx: Ctx) -> str:
        s = _session(ctx, task)
        before = len(s.store.examples(s.run_id, kept=None)) if s.run_id else 0
        replies = s.handle("", files=[str(make(ctx))])
        after = len(s.store.examples(s.run_id, kept=None)) if s.run_id else 0
        assert after == before, "a refused upload must not add or drop examples"
        assert "add a label" in "\n".join(s.handle("help")), "the session must still answer"
        return "\n".join(replies)

    return call


# ui ---------------------------------------------------------------------------------------------------
def _ui_upload(make: Callable[[Ctx], Any]) -> Callable[[Ctx], str]:
    def call(ctx: Ctx) -> str:
        from p2m.agent.ui import upload_path

        return upload_path(make(ctx))

    return call


def _ui_launch(**kw: Any) -> Callable[[Ctx], str]:
    def call(ctx: Ctx) -> str:
        from p2m.agent.options import RunOptions
        from p2m.agent.ui import launch

        launch(RunOptions(retrieve=False), **{k: v(ctx) if callable(v) else v for k, v in kw.items()})
        return "launched"

    return call


def _ui_download(ctx: Ctx) -> str:
    from p2m.agent.ui import _download

    return _download(_session(ctx))


def _ui_drop(ctx: Ctx) -> str:
    from p2m.agent.ui import parse_ids

    return _session(ctx, task=False).drop_examples(parse_ids("3"))


def _ui_ids(text: str) -> Callable[[Ctx], str]:
    def call(ctx: Ctx) -> str:
        from p2m.agent.ui import parse_ids

        return str(parse_ids(text))

    return call


# retrieved data ---------------------------------------------------------------------------------------
NOT_MAPPED = "not used: no text column with labels that map onto two or more task labels"


def _hub(files: dict[str, bytes | str], max_bytes: int = 200_000_000, llm_says: str | None = None
         ) -> Callable[[Ctx], str]:  # fmt: skip
    """Load a data set from the loopback fake Hub and map it onto a billing/bug/other task, as a run does;
    a run skips a data set that fails and records why (the message returned here)."""

    def call(ctx: Ctx) -> str:
        from p2m.tools.types import Candidate

        rid = f"p2m-test/case-{len(ctx.hub.repos('dataset'))}"
        ctx.hub.add_dataset_files(rid, {"README.md": "---\nlicense: mit\n---\nTickets.\n", **files})
        return _use(Candidate(id=rid, kind="datasets", score=1.0, metadata={"revision": "main"}), max_bytes,
                    llm_says)  # fmt: skip

    return call


def _use(cand: Any, max_bytes: int = 200_000_000, llm_says: str | None = None) -> str:
    from p2m.tools.llm import LLMClient
    from p2m.tools.retrieve import load_candidate, map_columns
    from p2m.tools.types import TaskSpec
    from tests.fakes import FakeChatModel

    table, _ = load_candidate(cand, max_bytes=max_bytes)
    llm = None
    if llm_says is not None:  # a capable endpoint that judges every mapping
        chat = FakeChatModel()
        chat.enqueue(*[json.dumps({"answer": llm_says})] * 10)
        llm = LLMClient(chat, "fake-strong", "json_schema", capable=True)
    spec = TaskSpec(
        "Classify support tickets as billing, bug or other", labels=SPEC_LABELS, input_kind="ticket"
    )
    return NOT_MAPPED if map_columns(table, spec, llm=llm) is None else "mapped"


def _local_candidate(make: Callable[[Ctx], Path]) -> Callable[[Ctx], str]:
    def call(ctx: Ctx) -> str:
        from p2m.tools.types import Candidate

        return _use(Candidate(id="local/x", kind="local", score=1.0, metadata={"path": str(make(ctx))}))

    return call


def _offline_candidate(ctx: Ctx) -> str:
    from p2m.tools.types import Candidate

    ctx.monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return _use(Candidate(id="someone/tickets", kind="datasets", score=1.0, metadata={}))


_TWO = [("charged twice for my plan", "billing"), ("the app crashes on start", "bug")]
TICKETS = "".join(f"{t} number {i},{lab}\n" for i in range(30) for t, lab in _TWO)


def _with_env(ctx: Ctx, var: str, value: str, argv: list[str]) -> list[str]:
    ctx.monkeypatch.setenv(var, value)
    return argv


def _index_env(ctx: Ctx, value: str) -> list[str]:
    return _with_env(
        ctx, "P2M_MAX_UPLOAD_MB", value, ["index", "add", str(ctx.file("t.csv", "text,label\n" + TICKETS))]
    )


def _chmod_dir(ctx: Ctx) -> Path:
    import pytest

    d = ctx.tmp / "readonly"
    d.mkdir()
    d.chmod(0o500)
    ctx.stack.callback(d.chmod, 0o700)
    if os.access(d, os.W_OK):  # root writes anyway
        pytest.skip(
            "running as root: chmod does not stop writes (the a_file/sub cases cover unwritable paths)"
        )
    return d / "out"


def _saved_broken(ctx: Ctx) -> Path:
    d = ctx.tmp / "saved"
    d.mkdir()
    (d / "state.json").write_text("{oops")
    return d


def _mixed(ctx: Ctx) -> Path:
    ctx.file("mixed/a.csv", "text,label\na,b\n")
    ctx.file("mixed/b.jsonl", '{"text": "a", "label": "b"}\n')
    return ctx.tmp / "mixed"


CASES: list[Case] = [
    # cli: run -------------------------------------------------------------------------------------------
    Case("run-empty-prompt", "cli", "empty prompt", 'p2m run ""', "prompt is empty",
         argv=lambda c: ["run", "", *_llm()]),
    Case("run-blank-prompt-file", "cli", "prompt file with only blank lines", "p2m run -f blank.txt",
         "prompt is empty", argv=lambda c: ["run", "-f", str(c.file("blank.txt", "\n  \n")), *_llm()]),
    Case("run-prompt-and-file", "cli", "a prompt and --prompt-file at once", 'p2m run "…" -f task.txt',
         "give the task as PROMPT or with --prompt-file, not both",
         argv=lambda c: ["run", TASK, "-f", str(c.file("t.txt", TASK)), *_llm()]),
    Case("run-missing-prompt-file", "cli", "--prompt-file that does not exist", "p2m run -f nope.txt",
         "cannot read the prompt file", argv=lambda c: ["run", "-f", str(c.tmp / "nope.txt")]),
    Case("run-latin1-prompt-file", "cli", "prompt file in latin-1", "p2m run -f latin1.txt",
         "not UTF-8 text", argv=lambda c: ["run", "-f", str(c.file("p.txt", LATIN1))]),
    Case("run-prompt-file-is-folder", "cli", "--prompt-file is a folder", "p2m run -f DIR",
         "is a directory", argv=lambda c: ["run", "-f", str(c.tmp)]),
    Case("run-negative-examples", "cli", "negative --examples", "p2m run … --examples -5",
         "examples must be at least 2", argv=lambda c: ["run", TASK, "--examples", "-5", *_llm()]),
    Case("run-examples-not-a-number", "cli", "--examples that is not a number", "p2m run … --examples many",
         "'many' is not a valid integer", argv=lambda c: ["run", TASK, "--examples", "many"]),
    Case("run-zero-epochs", "cli", "--epochs 0", "p2m run … --epochs 0", "epochs must be ≥ 1",
         argv=lambda c: ["run", TASK, "--epochs", "0", *_llm()]),
    Case("run-negative-gen-minutes", "cli", "negative --gen-minutes", "p2m run … --gen-minutes -1",
         "minutes must be ≥ 0", argv=lambda c: ["run", TASK, "--gen-minutes", "-1", *_llm()]),
    Case("run-negative-retrieve-max", "cli", "negative --retrieve-max", "p2m run … --retrieve-max -1",
         "--retrieve-max must be ≥ 0, not -1",
         argv=lambda c: ["run", TASK, "--retrieve-max", "-1", *_llm()]),
    Case("run-negative-llm-calls", "cli", "negative --budget-llm-calls", "p2m run … --budget-llm-calls -1",
         "max_calls must be ≥ 0", argv=lambda c: ["run", TASK, "--budget-llm-calls", "-1", *_llm()]),
    Case("run-target-above-one", "cli", "--target above 1", "p2m run … --target 2",
         "--target must be in (0, 1]", argv=lambda c: ["run", TASK, "--target", "2", *_llm()]),
    Case("run-negative-budget-minutes", "cli", "negative --budget-minutes", "p2m run … --budget-minutes -1",
         "--budget-minutes must be ≥ 0, not -1.0", argv=lambda c: ["run", TASK, "--budget-minutes", "-1", *_llm()]),
    Case("run-zero-rounds", "cli", "--max-rounds 0", "p2m run … --max-rounds 0",
         "--max-rounds must be ≥ 1, not 0", argv=lambda c: ["run", TASK, "--max-rounds", "0", *_llm()]),
    Case("run-llm-not-http", "cli", "--llm that is not an http(s) URL", "p2m run … --llm localhost:8000/v1",
         "--llm must be an http(s) URL", argv=lambda c: ["run", TASK, "--llm", "localhost:8000/v1"]),
    Case("run-llm-no-host", "cli", "--llm URL without a host", "p2m run … --llm http://",
         "--llm must be an http(s) URL", argv=lambda c: ["run", TASK, "--llm", "http://", "-q"]),
    Case("run-llm-closed-port", "cli", "--llm where nothing listens",
         "p2m run … --llm http://127.0.0.1:PORT/v1",
         "cannot reach the LLM", argv=lambda c: ["run", TASK, *_llm(), "--llm-timeout", "5", "-q"]),
    Case("run-zero-llm-timeout", "cli", "--llm-timeout 0", "p2m run … --llm-timeout 0",
         "timeout must be positive", argv=lambda c: ["run", TASK, "--llm-timeout", "0"]),
    Case("run-eval-missing", "cli", "--eval file that does not exist", "p2m run … --eval nope.jsonl",
         "no such file; --eval takes a JSONL file",
         argv=lambda c: ["run", TASK, "--eval", str(c.tmp / "n.jsonl")]),
    Case("run-eval-folder", "cli", "--eval is a folder", "p2m run … --eval DIR", "a folder, not a file",
         argv=lambda c: ["run", TASK, "--eval", str(c.tmp)]),
    Case("run-eval-empty", "cli", "empty --eval file", "p2m run … --eval empty.jsonl",
         "the file holds no examples",
         argv=lambda c: ["run", TASK, "--eval", str(c.file("e.jsonl", ""))]),
    Case("run-eval-utf16", "cli", "--eval file in UTF-16", "p2m run … --eval utf16.jsonl",
         "cannot read it as UTF-8 text",
         argv=lambda c: ["run", TASK, "--eval", str(c.file("e.jsonl", UTF16))]),
    Case("run-eval-bad-json", "cli", "--eval line that is not JSON", "p2m run … --eval bad.jsonl",
         "e.jsonl:2: not valid JSON",
         argv=lambda c: ["run", TASK, "--eval",
             str(c.file("e.jsonl", '{"input": "a", "output": "bug"}\n{oops\n'))]),
    Case("run-eval-wrong-columns", "cli", "--eval rows without input/output", "p2m run … --eval cols.jsonl",
         'each line needs an "input" and an "output" field',
         argv=lambda c: ["run", TASK, "--eval", str(c.file("e.jsonl", '{"text": "a", "label": "bug"}\n'))]),
    Case("run-out-under-a-file", "cli", "--out under a regular file", "p2m run … --out a_file/sub",
         "cannot write to", argv=lambda c: ["run", TASK, "--out", str(c.blocked()), *_llm()]),
    Case("run-out-read-only", "cli", "--out in a read-only folder (chmod 500)", "p2m run … --out ro/out",
         "cannot write to", argv=lambda c: ["run", TASK, "--out", str(_chmod_dir(c)), *_llm()]),
    Case("run-home-under-a-file", "cli", "--home under a regular file", "p2m run … --home a_file/sub",
         "cannot write to", argv=lambda c: ["run", TASK, "--home", str(c.blocked()), *_llm()]),
    Case("unknown-command", "cli", "a command that does not exist", "p2m trian", "No such command 'trian'",
         argv=lambda c: ["trian"]),
    Case("unknown-option", "cli", "an option that does not exist", "p2m run --exampels 5",
         "No such option '--exampels'", argv=lambda c: ["run", "--exampels", "5"]),
    # cli: runs by id ------------------------------------------------------------------------------------
    Case("resume-unknown", "cli", "unknown run id", "p2m resume nope", "no run 'nope'; `p2m runs` lists them",
         argv=lambda c: ["resume", "nope"]),
    Case("resume-complete", "cli", "resume a run that is complete", "p2m resume RUN", "is already complete",
         argv=lambda c: ["resume", _finished_run(c)]),
    Case("predict-unknown", "cli", "unknown run id", 'p2m predict nope "text"',
         "not a finished p2m run folder",
         argv=lambda c: ["predict", "nope", "some text"]),
    Case("predict-failed-run", "cli", "a run that failed before its model", 'p2m predict RUN "text"',
         "not a finished p2m run folder",
         argv=lambda c: ["predict", _finished_run(c, "failed"), "some text"]),
    Case("show-unknown", "cli", "unknown run id", "p2m show nope", "no run 'nope'",
         argv=lambda c: ["show", "nope"]),
    Case("runs-home-is-a-file", "cli", "--home is a regular file", "p2m runs --home a_file", "is a file",
         argv=lambda c: ["runs", "--home", str(c.file("a_file", "x"))]),
    Case("runs-home-under-a-file", "cli", "--home under a regular file", "p2m runs --home a_file/sub",
         "cannot write to", argv=lambda c: ["runs", "--home", str(c.blocked())]),
    # cli: serve and ui ----------------------------------------------------------------------------------
    Case("serve-unknown", "cli", "unknown run id", "p2m serve nope", "not a finished p2m run folder",
         argv=lambda c: ["serve", "nope"]),
    Case("serve-share-without-auth", "cli", "a public link without a login", "p2m serve RUN --share",
         "--share makes a public link", argv=lambda c: ["serve", "nope", "--share"]),
    Case("serve-auth-no-colon", "cli", "--auth without a colon", "p2m serve RUN --auth ana",
         "must be USER:PASSWORD", argv=lambda c: ["serve", "nope", "--share", "--auth", "ana"]),
    Case("serve-auth-empty-password", "cli", "--auth with an empty password", "p2m serve RUN --auth ana:",
         "must be USER:PASSWORD", argv=lambda c: ["serve", "nope", "--auth", "ana:"]),
    Case("serve-port-out-of-range", "cli", "--port out of range", "p2m serve RUN --port 70000",
         "--port must be between 1 and 65535", argv=lambda c: ["serve", "nope", "--port", "70000"]),
    Case("serve-port-in-use", "cli", "--port something listens on", "p2m serve RUN --port 7860",
         "pass another --port", argv=lambda c: ["serve", "nope", "--port", str(c.busy_port())]),
    Case("ui-share-without-auth", "cli", "a public link without a login", "p2m ui --share",
         "add --auth USER:PASSWORD", argv=lambda c: ["ui", "--share"]),
    Case("ui-auth-empty-user", "cli", "--auth with an empty user", "p2m ui --share --auth :secret",
         "must be USER:PASSWORD", argv=lambda c: ["ui", "--share", "--auth", ":secret"]),
    Case("ui-auth-env-malformed", "cli", "P2M_UI_AUTH without a colon", "P2M_UI_AUTH=ana p2m ui --share",
         "must be USER:PASSWORD", argv=lambda c: _with_env(c, "P2M_UI_AUTH", "ana", ["ui", "--share"])),
    Case("ui-port-in-use", "cli", "--port something listens on", "p2m ui --port 7860", "cannot listen on",
         argv=lambda c: ["ui", "--port", str(c.busy_port())]),
    Case("ui-negative-port", "cli", "negative --port", "p2m ui --port -1",
         "--port must be between 1 and 65535",
         argv=lambda c: ["ui", "--port", "-1"]),
    Case("ui-unknown-session", "cli", "unknown session id", "p2m ui --session nope", "no session 'nope'",
         argv=lambda c: ["ui", "--session", "nope"]),
    Case("chat-unknown-session", "cli", "unknown session id", "p2m chat --session nope -m hi",
         "no session 'nope'",
         argv=lambda c: ["chat", "--session", "nope", "-m", "hi"]),
    Case("chat-bad-llm-url", "cli", "--llm that is not a URL", "p2m chat --llm gpt4 -m hi",
         "--llm must be an http(s) URL", argv=lambda c: ["chat", "--llm", "gpt4", "-m", "hi"]),
    # cli: search --------------------------------------------------------------------------------------
    Case("search-empty-query", "cli", "empty query", 'p2m search datasets ""', "the query is empty",
         argv=lambda c: ["search", "datasets", ""]),
    Case("search-zero-k", "cli", "-k 0", "p2m search datasets reviews -k 0", "-k must be at least 1",
         argv=lambda c: ["search", "datasets", "reviews", "-k", "0"]),
    Case("search-bad-size", "cli", "--max-size that is not a size", "p2m search models x --max-size lots",
         "is not a size such as 100K", argv=lambda c: ["search", "models", "x", "--max-size", "lots"]),
    Case("search-negative-size", "cli", "negative --max-size", "p2m search models x --max-size -5M",
         "--max-size must be positive", argv=lambda c: ["search", "models", "x", "--max-size", "-5M"]),
    Case("index-build-nothing", "cli", "index build without a source", "p2m index build",
         "say what to index", argv=lambda c: ["index", "build"]),
    Case("index-build-bad-snapshot", "cli", "--snapshot folder without Hub metadata",
         "p2m index build --snapshot DIR",
         "has neither datasets.jsonl nor models.jsonl",
         argv=lambda c: ["index", "build", "--snapshot", str(c.tmp)]),
    Case("index-build-hub-offline", "cli", "--hub while HF_HUB_OFFLINE is set", "p2m index build --hub",
         "HF_HUB_OFFLINE is set", argv=lambda c: ["index", "build", "--hub"]),
    Case("index-chroma-closed-port", "cli", "--chroma-url where nothing listens",
         "p2m index status --chroma-url http://127.0.0.1:PORT", "cannot open the Chroma server",
         argv=lambda c: ["index", "status", "--chroma-url", f"http://127.0.0.1:{closed_port()}"]),
    # bench ------------------------------------------------------------------------------------------------
    Case("bench-missing-folder", "bench", "folder that does not exist", "p2m bench nope --out o.json",
         "not a bench task folder (no task.json)",
         argv=lambda c: ["bench", str(c.tmp / "nope"), "--out", "o.json"]),
    Case("bench-no-task-json", "bench", "folder without task.json", "p2m bench DIR --out o.json",
         "not a bench task folder",
         argv=lambda c: ["bench", str(c.bench(None)), "--out", str(c.tmp / "o.json")]),
    Case("bench-dir-is-a-file", "bench", "TASK_DIR is a file", "p2m bench task.json --out o.json",
         "is a file",
         argv=lambda c: ["bench", str(c.file("x.json", "{}")), "--out", str(c.tmp / "o.json")]),
    Case("bench-bad-json", "bench", "task.json is not JSON", "p2m bench DIR --out o.json", "not valid JSON",
         argv=lambda c: ["bench", str(c.bench("{oops")), "--out", str(c.tmp / "o.json")]),
    Case("bench-utf16-json", "bench", "task.json in UTF-16", "p2m bench DIR --out o.json", "not UTF-8 text",
         argv=lambda c: ["bench", str(c.bench(json.dumps(CLS_TASK).encode("utf-16"))), "--out",
             str(c.tmp / "o.json")]),
    Case("bench-json-list", "bench", "task.json holds a list", "p2m bench DIR --out o.json",
         "must be a JSON object",
         argv=lambda c: ["bench", str(c.bench("[1, 2]")), "--out", str(c.tmp / "o.json")]),
    Case("bench-missing-fields", "bench", "task.json without prompt and metric", "p2m bench DIR --out o.json",
         "missing metric, prompt",
         argv=lambda c: ["bench", str(c.bench({"name": "x", "task_type": "classification"})),
                                                   "--out", str(c.tmp / "o.json")]),  # fmt: skip
    Case("bench-unknown-task-type", "bench", "unknown task_type", "p2m bench DIR --out o.json",
         "unknown task_type 'summarize'",
         argv=lambda c: ["bench", str(c.bench({**CLS_TASK, "task_type": "summarize"})), "--out",
             str(c.tmp / "o.json")]),
    Case("bench-no-labels", "bench", "classification task.json without labels", "p2m bench DIR --out o.json",
         'needs "labels"',
         argv=lambda c: ["bench", str(c.bench({k: v for k, v in CLS_TASK.items() if k != "labels"})),
                                          "--out", str(c.tmp / "o.json")]),  # fmt: skip
    Case("bench-no-test", "bench", "no test.jsonl", "p2m bench DIR --out o.json", "no test.jsonl",
         argv=lambda c: ["bench", str(c.bench(CLS_TASK, None)), "--out", str(c.tmp / "o.json")]),
    Case("bench-empty-test", "bench", "empty test.jsonl", "p2m bench DIR --out o.json", "holds no examples",
         argv=lambda c: ["bench", str(c.bench(CLS_TASK, "")), "--out", str(c.tmp / "o.json")]),
    Case("bench-unknown-label", "bench", "test.jsonl output not among the labels",
         "p2m bench DIR --out o.json",
         "output 'meh' is not one of the task's labels",
         argv=lambda c: ["bench", str(c.bench(CLS_TASK, GOOD_TEST + '{"input": "ok", "output": "meh"}\n')),
             "--out",
                         str(c.tmp / "o.json")]),  # fmt: skip
    Case("bench-test-bad-line", "bench", "test.jsonl line without output", "p2m bench DIR --out o.json",
         'each line needs an "input" and an "output" field',
         argv=lambda c: ["bench", str(c.bench(CLS_TASK, '{"input": "x"}\n')), "--out",
             str(c.tmp / "o.json")]),
    Case("bench-zero-limit", "bench", "--limit 0", "p2m bench DIR --out o.json --limit 0",
         "--limit must be at least 1",
         argv=lambda c: ["bench", str(c.bench(CLS_TASK)), "--out", str(c.tmp / "o.json"), "--limit", "0",
             *_llm()]),
    Case("bench-negative-limit", "bench", "negative --limit", "p2m bench DIR --out o.json --limit -3",
         "--limit must be at least 1",
         argv=lambda c: ["bench", str(c.bench(CLS_TASK)), "--out", str(c.tmp / "o.json"), "--limit", "-3",
             *_llm()]),
    Case("bench-out-is-folder", "bench", "--out is a folder", "p2m bench DIR --out DIR", "is a directory",
         argv=lambda c: ["bench", str(c.bench(CLS_TASK)), "--out", str(c.tmp), *_llm()]),
    Case("bench-out-under-a-file", "bench", "--out under a regular file", "p2m bench DIR --out a_file/o.json",
         "a folder on its path is a file",
         argv=lambda c: ["bench", str(c.bench(CLS_TASK)), "--out", str(c.blocked() / "o.json"), *_llm()]),
    # index add --------------------------------------------------------------------------------------------
    Case("index-add-missing", "index add", "path that does not exist", "p2m index add nope.csv",
         "does not exist",
         argv=lambda c: ["index", "add", str(c.tmp / "nope.csv")]),
    Case("index-add-empty", "index add", "empty CSV", "p2m index add empty.csv", "is empty; add a header",
         argv=lambda c: ["index", "add", str(c.file("e.csv"))]),
    Case("index-add-header-only", "index add", "CSV with a header and no rows", "p2m index add header.csv",
         "has no rows", argv=lambda c: ["index", "add", str(c.file("h.csv", "text,label\n"))]),
    Case("index-add-latin1", "index add", "CSV in latin-1", "p2m index add latin1.csv", "is not UTF-8 text",
         argv=lambda c: ["index", "add", str(c.file("l.csv", LATIN1))]),
    Case("index-add-utf16", "index add", "JSONL in UTF-16", "p2m index add utf16.jsonl", "is UTF-16 text",
         argv=lambda c: ["index", "add", str(c.file("u.jsonl", UTF16))]),
    Case("index-add-binary-csv", "index add", "binary bytes named .csv", "p2m index add blob.csv",
         "is binary, not text",
         argv=lambda c: ["index", "add", str(c.file("b.csv", BINARY))]),
    Case("index-add-binary-parquet", "index add", "binary bytes named .parquet", "p2m index add blob.parquet",
         "Parquet magic bytes not found", argv=lambda c: ["index", "add", str(c.file("b.parquet", BINARY))]),
    Case("index-add-bad-jsonl", "index add", "JSONL line that is not JSON", "p2m index add bad.jsonl",
         "JSON parse error",
         argv=lambda c: ["index", "add", str(c.file("b.jsonl", '{"text": "a", "label": 1}\n{oops\n'))]),
    Case("index-add-unsupported", "index add", "a .txt file", "p2m index add notes.txt", "unsupported format",
         argv=lambda c: ["index", "add", str(c.file("n.txt", "hello"))]),
    Case("index-add-no-labels", "index add", "CSV without a label column", "p2m index add texts.csv",
         "has no label column",
         argv=lambda c: ["index", "add", str(c.file("t.csv", "text\n" + "some words\n" * 9))]),
    Case("index-add-empty-folder", "index add", "folder without data files", "p2m index add DIR",
         "holds no CSV, TSV, JSONL", argv=lambda c: ["index", "add", str(c.file("d/readme.md", "x").parent)]),
    Case("index-add-mixed-folder", "index add", "folder mixing CSV and JSONL", "p2m index add DIR",
         "mixes formats",
         argv=lambda c: ["index", "add", str(_mixed(c))]),
    Case("index-add-broken-saved", "index add", "broken save_to_disk folder", "p2m index add saved/",
         "is neither a `Dataset` directory", argv=lambda c: ["index", "add", str(_saved_broken(c))]),
    Case("index-add-huge", "index add", "a 250 MB file", "p2m index add huge.csv",
         "is 250 MB; files are limited to 200 MB",
         argv=lambda c: ["index", "add", str(c.sparse("huge.csv", 250))]),
    Case("index-add-bad-limit-env", "index add", "P2M_MAX_UPLOAD_MB that is not a number",
         "P2M_MAX_UPLOAD_MB=lots p2m index add t.csv", "P2M_MAX_UPLOAD_MB must be a positive number",
         argv=lambda c: _index_env(c, "lots")),
    Case("index-add-over-env-limit", "index add", "a file over a lowered limit",
         "P2M_MAX_UPLOAD_MB=0.001 p2m index add",
         "files are limited to 0.001 MB", argv=lambda c: _index_env(c, "0.001")),
    # chat -------------------------------------------------------------------------------------------------
    Case("chat-empty", "chat", "empty message", "(send nothing)", "Your message is empty", call=_say("   ")),
    Case("chat-nul-bytes", "chat", "message of NUL bytes", "\\x00\\x00", "Your message is empty",
         call=_say("\x00\x00")),
    Case("chat-huge-message", "chat", "a 50,000-character message", "(paste a whole file)",
         "I read at most 20,000",
         call=_say("x" * 50_000)),
    Case("chat-unknown-label", "chat", "remove a label the task does not have", "remove the label refund",
         "There is no label 'refund'", call=_say("remove the label refund")),
    Case("chat-unknown-language", "chat", "a language p2m does not know", "write them in Klingon",
         "I did not understand that as a change to the task", call=_say("write them in Klingon")),
    Case("chat-command-while-asked", "chat", "a command while p2m waits for an answer",
         "(asked what one input is) remove the label refund", "There is no label 'refund'",
         call=_say("remove the label refund", asking=True)),
    Case("chat-help-while-asked", "chat", "'help' while p2m waits for an answer",
         "(asked what one input is) help",
         "I build a small classifier", call=_say("help", asking=True)),
    Case("chat-upload-before-task", "chat", "upload before describing the task", "/upload tickets.jsonl",
         "describe the task (with its labels) before uploading",
         call=_upload(lambda c: c.file("t.jsonl", '{"input": "a", "output": "bug"}\n'), task=False)),
    Case("chat-upload-missing", "chat", "file that does not exist", "/upload nope.csv",
         "nope.csv does not exist",
         call=_upload(lambda c: c.tmp / "nope.csv")),
    Case("chat-upload-folder", "chat", "a folder", "/upload DIR", "is a folder; upload one",
         call=_upload(lambda c: c.file("d/x.csv", "a,b\n").parent)),
    Case("chat-upload-empty", "chat", "empty file", "/upload empty.csv", "empty.csv is empty",
         call=_upload(lambda c: c.file("empty.csv"))),
    Case("chat-upload-binary", "chat", "binary file", "/upload blob.csv", "is binary, not text",
         call=_upload(lambda c: c.file("blob.csv", BINARY))),
    Case("chat-upload-nul", "chat", "UTF-8 text with NUL bytes", "/upload nul.csv", "holds NUL bytes",
         call=_upload(lambda c: c.file("nul.csv", "a\x00b,bug\n"))),
    Case("chat-upload-latin1", "chat", "CSV in latin-1", "/upload latin1.csv", "is not UTF-8 text",
         call=_upload(lambda c: c.file("latin1.csv", LATIN1))),
    Case("chat-upload-utf16", "chat", "JSONL in UTF-16", "/upload utf16.jsonl", "is UTF-16 text",
         call=_upload(lambda c: c.file("utf16.jsonl", UTF16))),
    Case("chat-upload-wrong-columns", "chat", "CSV with one column", "/upload one.csv", "holds no examples",
         call=_upload(lambda c: c.file("one.csv", "text\nthe app crashes\n"))),
    Case("chat-upload-not-objects", "chat", "JSONL of lists", "/upload lists.jsonl", "is not a JSON object",
         call=_upload(lambda c: c.file("lists.jsonl", "[1, 2]\n"))),
    Case("chat-upload-unknown-labels", "chat", "examples with labels the task does not have",
         "/upload refunds.jsonl", "have labels that are not in the task: refund",
         call=_upload(lambda c: c.file("r.jsonl", '{"input": "money back", "output": "refund"}\n'))),
    Case("chat-upload-huge", "chat", "a 250 MB file", "/upload huge.jsonl",
         "is 250 MB; files are limited to 200 MB",
         call=_upload(lambda c: c.sparse("huge.jsonl", 250))),
    # ui ---------------------------------------------------------------------------------------------------
    Case("ui-upload-nothing", "ui", "upload event without a file", "(upload, then cancel)", "no file arrived",
         call=_ui_upload(lambda c: None)),
    Case("ui-upload-gone", "ui", "uploaded file removed before it is read", "(upload)", "is not a file",
         call=_ui_upload(lambda c: str(c.tmp / "gone.csv"))),
    Case("ui-upload-huge", "ui", "a 250 MB upload", "(upload huge.csv)",
         "is 250 MB; files are limited to 200 MB",
         call=_ui_upload(lambda c: str(c.sparse("huge.csv", 250)))),
    Case("ui-drop-ids-not-numbers", "ui", "ids that are not numbers", "Drop: 12, abc", "type example ids",
         call=_ui_ids("12, abc")),
    Case("ui-drop-ids-empty", "ui", "no ids", "Drop: (empty)", "not nothing", call=_ui_ids("  ")),
    Case("ui-drop-before-task", "ui", "drop examples before there is a task", "Drop: 3",
         "there is no task yet",
         call=_ui_drop),
    Case("ui-download-no-model", "ui", "download before a model is trained", "Prepare the model folder (zip)",
         "no model yet", call=_ui_download),
    Case("ui-launch-share-no-auth", "ui", "share link without a login", "launch(share=True)",
         "--share makes a public link", call=_ui_launch(share=True)),
    Case("ui-launch-busy-port", "ui", "port in use", "launch(port=PORT)", "cannot listen on",
         call=_ui_launch(port=lambda c: c.busy_port())),
    # retrieve ---------------------------------------------------------------------------------------------
    Case("hub-no-data-files", "retrieve", "Hub data set with no data files", "(a run finds it)",
         "has no CSV, JSONL or Parquet data files", call=_hub({})),
    Case("hub-empty-split", "retrieve", "Hub train split with a header only", "(a run finds it)",
         "has no rows",
         call=_hub({"data/train.csv": "text,label\n"})),
    Case("hub-bad-jsonl", "retrieve", "Hub train file that is not JSONL", "(a run finds it)",
         "JSON parse error",
         call=_hub({"data/train.jsonl": '{"text": "a"\n'})),
    Case("hub-latin1", "retrieve", "Hub CSV in latin-1", "(a run finds it)", "is not UTF-8 text",
         call=_hub({"data/train.csv": LATIN1})),
    Case("hub-wrong-columns", "retrieve", "Hub data without a label column", "(a run finds it)", NOT_MAPPED,
         call=_hub({"data/train.csv": "id,text\n" + "".join(f"{i},words {i}\n" for i in range(30))})),
    Case("hub-one-label", "retrieve", "Hub data whose labels are all one value", "(a run finds it)",
         NOT_MAPPED,
         call=_hub({"data/train.csv": "text,label\n" + "".join(f"crash {i},bug\n" for i in range(30))})),
    Case("hub-unknown-labels", "retrieve", "Hub labels that fit no task label (the LLM says none)",
         "(a run finds it, --llm judges)", NOT_MAPPED,
         call=_hub({"data/train.csv": "text,label\n" + TICKETS.replace("billing", "sport").replace("bug",
             "food")},
                   llm_says="none")),  # fmt: skip
    Case("hub-too-large", "retrieve", "Hub data files above the download limit", "(a run finds it)",
         "data files are larger than",
         call=_hub({"data/train.csv": "text,label\n" + TICKETS}, max_bytes=100)),
    Case("hub-unknown-repo", "retrieve", "Hub data set that is gone", "(a stale index entry)", "cannot load",
         call=lambda c: _use(__import__("p2m.tools.types", fromlist=["Candidate"]).Candidate(
             id="p2m-test/gone", kind="datasets", score=1.0, metadata={"revision": "main"}))),  # fmt: skip
    Case("hub-offline-not-cached", "retrieve", "Hub data set while offline and not cached",
         "(HF_HUB_OFFLINE=1)",
         "not in the local cache and the Hub is offline", call=_offline_candidate),
    Case("local-data-gone", "retrieve", "indexed local file deleted since", "(a run finds it)",
         "does not exist",
         call=_local_candidate(lambda c: c.tmp / "deleted.csv")),
]  # fmt: skip


# docs/errors.md ---------------------------------------------------------------------------------------
_SURFACES = {"cli": "CLI", "bench": "`p2m bench DIR`", "index add": "`p2m index add`", "chat": "chat",
             "ui": "web app (`p2m ui`)", "retrieve": "retrieved data"}  # fmt: skip
_INTRO = """# What p2m says when the input is wrong

Every expected failure is one line that says what failed and what to do: on the command line an
`Error: …` line on stderr and a non-zero exit code (1, or 2 for a malformed command line; 130 after
Ctrl-C), in the chat and the web app a reply or a notice; never a traceback, and nothing is lost (no run
is left marked running, a refused upload adds or drops nothing). A traceback is a bug: please report it.

Retrieved data never stops a run: a data set that cannot be loaded or mapped onto the task is skipped,
and the run records why (`p2m show RUN`, `report.json`). Uploads and `p2m index add` refuse files above
200 MB (`P2M_MAX_UPLOAD_MB` changes the limit); `p2m ui --share` and `p2m serve --share` need
`--auth USER:PASSWORD` (or `P2M_UI_AUTH`).

This table is generated from the catalogue of bad inputs in `tests/bad_inputs.py`, which the tests run
(`tests/test_bad_inputs.py`); "what p2m says" is the part of the message the test checks. Regenerate it
with `python -m tests.bad_inputs --write`; a test fails when it is out of date. Rows marked *(open)* are
known gaps whose fix is under way.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(cases: list[Case] = CASES) -> str:
    """docs/errors.md: the intro and one table row per case, grouped by surface."""
    lines = [_INTRO, "| surface | bad input | how | what p2m says |", "|---|---|---|---|"]
    for surface in _SURFACES:
        for c in (c for c in cases if c.surface == surface):
            says = f"… {_cell(c.expect)} …" + (" *(open)*" if c.owner else "")
            lines.append(f"| {_SURFACES[surface]} | {_cell(c.wrong)} | `{_cell(c.show)}` | {says} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        DOC.write_text(render(), encoding="utf-8")
        print(f"wrote {DOC} ({len(CASES)} cases)")
    else:
        sys.stdout.write(render())
