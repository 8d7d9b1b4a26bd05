"""`p2m ui`: the chat session in a browser (Gradio Blocks on 127.0.0.1).

The page is thin: every message goes to the same `ChatSession` the terminal uses, in a background
thread per session, and the page polls the run store once a second (conversation, stage, progress,
both scores of each version — real rows first, then teacher-written rows —, cost, data). Every task
kind works the same way; the demo takes an input (and a question, for extractive QA). A reload — or
a second tab — re-attaches to the session by its id (`?session=RUN_ID`, or the session this server
worked on last). Conversions between store
records and what the widgets show are the pure functions of agent/ui_views.py (re-exported here);
gradio is imported only in `build_app`.
"""

from __future__ import annotations

import queue
import shutil
import threading
import traceback
from pathlib import Path
from typing import Any

from p2m.agent.chat import ChatSession
from p2m.agent.options import RunOptions, open_store
from p2m.agent.ui_views import (
    DATA_COLUMNS,
    HISTORY_COLUMNS,
    chat_view,
    data_rows,
    history_rows,
    parse_ids,
    plot_path,
    status_view,
    upload_path,
)
from p2m.agent.versions import VERSION_HEADERS, version_cells
from p2m.errors import ConfigError, P2MError
from p2m.memory import RunStore

__all__ = ["SessionManager", "build_app", "launch", "chat_view", "status_view", "data_rows", "parse_ids",
           "history_rows", "upload_path", "plot_path", "DATA_COLUMNS", "HISTORY_COLUMNS"]  # fmt: skip


# sessions ---------------------------------------------------------------------------------------
class SessionManager:
    """The sessions this server holds, by id; each session's messages are worked on, in order, by its own
    background thread, so the page never waits for a run."""

    def __init__(self, options: RunOptions, store: RunStore | None = None, llm: Any = None) -> None:
        self.options, self.store, self.llm = options, store or open_store(), llm
        self.sessions: dict[str, ChatSession] = {}
        self.drafts: dict[str, ChatSession] = {}  # sessions before their first task, by page token
        self.last: str | None = None
        self._queues: dict[int, queue.Queue] = {}  # per session: messages for its worker thread
        self._lock = threading.Lock()

    def get(self, sid: str | None, token: str = "") -> ChatSession:
        """The session `sid` (re-attached from the store if needed), or this page's draft when sid is empty."""
        with self._lock:
            if sid:
                if sid not in self.sessions:
                    self.sessions[sid] = ChatSession.attach(sid, self.store, llm=self.llm)
                return self.sessions[sid]
            if token not in self.drafts:
                import copy

                self.drafts[token] = ChatSession(self.store, copy.deepcopy(self.options), llm=self.llm)
            return self.drafts[token]

    def promote(self, token: str) -> str | None:
        """The id of this page's draft once its task made it a run (it is then a session like any other)."""
        self.adopt()
        with self._lock:
            return next(
                (sid for sid, s in self.sessions.items() if getattr(s, "_token", None) == token), None
            )

    def adopt(self) -> None:
        """Drafts whose first message made a run become sessions (a page reloaded meanwhile finds them)."""
        with self._lock:
            for token, s in list(self.drafts.items()):
                if s.run_id:
                    s._token = token
                    self.sessions[s.run_id] = self.drafts.pop(token)
                    self.last = s.run_id

    def submit(self, s: ChatSession, message: str, files: list[str] | None = None) -> None:
        """Work on a message in the background; a session already busy answers at once that it is."""
        if s.busy:
            s.handle(message, files)
            return
        with self._lock:
            work = self._queues.get(id(s))
            if work is None:
                # One long-lived thread per session: the embedded teacher's servers die with the thread that
                # started them (PR_SET_PDEATHSIG), so that thread must live as long as the session.
                work = self._queues[id(s)] = queue.Queue()
                threading.Thread(target=self._loop, args=(s, work), daemon=True, name="p2m-chat").start()
        work.put((message, files))

    def _loop(self, s: ChatSession, work: queue.Queue) -> None:
        while (item := work.get()) is not None:
            self._work(s, *item)

    def _work(self, s: ChatSession, message: str, files: list[str] | None) -> None:
        try:
            s.handle(message, files)
        except Exception as e:  # a bug: keep the traceback in the server log, say so in the chat
            traceback.print_exc()
            if s.run_id:
                self.store.add_chat_message(s.run_id, "assistant", f"Internal error ({type(e).__name__}: {e}); "
                                            "the session is kept — please report this.")  # fmt: skip
        self.adopt()

    def session_ids(self) -> list[str]:
        return [r["id"] for r in self.store.list_runs() if self.store.chat_messages(r["id"])]

    def close(self) -> None:
        for work in self._queues.values():
            work.put(None)
        for s in [*self.sessions.values(), *self.drafts.values()]:
            s.close()


def _download(s: ChatSession) -> str:
    """A zip of the run's model folder, card, report and data."""
    if not s.folder or not (s.folder / "model").is_dir():
        raise ConfigError("no model yet; describe a task and let it train first")
    stage = s.folder / "download" / s.run_id
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    from p2m.tools.deploy import copy_model

    copy_model(s.folder / "model", stage / "model")
    if (s.folder / "data").is_dir():
        shutil.copytree(s.folder / "data", stage / "data")
    for name in ("README.md", "report.json", "task.json", "trajectory.png"):
        if (s.folder / name).is_file():
            shutil.copy2(s.folder / name, stage / name)
    archive = shutil.make_archive(str(s.folder / "download" / f"{s.run_id}-model"), "zip", stage)
    shutil.rmtree(stage)
    return archive


class _Predictor:
    """The current model of a session, reloaded when its folder changes."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[float, Any, str]] = {}

    def predict(self, folder: Path, text: str, question: str = "") -> str:
        """The model's output for `text` (for extractive QA: the passage, with `question`, or a
        'Passage: … Question: …' text)."""
        from p2m.tools.deploy import demo_fn, load_run_model
        from p2m.tools.parse import qa_parts

        stamp = (folder / "report.json").stat().st_mtime if (folder / "report.json").exists() else 0.0
        hit = self._cache.get(str(folder))
        if hit is None or hit[0] != stamp:
            student, spec = load_run_model(folder)
            hit = (stamp, student, spec.get("task_type", "classification"))
            self._cache[str(folder)] = hit
        _, student, task_type = hit
        if task_type == "extractive_qa":
            parts = (text, question) if question.strip() else qa_parts(text) or (text, "")
            return demo_fn(student, task_type)(*parts)
        return student.predict([text])[0]


# the app ----------------------------------------------------------------------------------------
def build_app(manager: SessionManager) -> Any:
    """The Gradio Blocks app over `manager`'s sessions."""
    import uuid

    import gradio as gr

    predictor = _Predictor()

    def _session(sid: str, token: str) -> ChatSession:
        return manager.get(sid or None, token)

    def on_load(request: gr.Request) -> tuple[str, str]:
        wanted = (request.query_params.get("session") or "").strip() if request else ""
        manager.adopt()
        sid = wanted if wanted and manager.store.get_run(wanted) else (manager.last or "")
        return sid, uuid.uuid4().hex

    def refresh(sid: str, token: str, seen: str) -> tuple[Any, ...]:
        if not sid:
            sid = manager.promote(token) or ""
        s = _session(sid, token)
        run = manager.store.get_run(s.run_id) if s.run_id else None
        ledger = manager.store.ledger(s.run_id) if s.run_id else {"calls": 0, "cached": 0, "prompt_tokens": 0,
                                                                    "completion_tokens": 0, "seconds": 0}  # fmt: skip
        messages = s.messages()
        exps = manager.store.experiments(s.run_id) if s.run_id else []
        status, _ = status_view(run, ledger, s.versions, s.busy, s.working_on, s.generated())
        n_rows = len(manager.store.examples(s.run_id, kept=None)) if s.run_id else 0
        png = plot_path(s.folder)
        stamp = png.stat().st_mtime if png else 0
        key = f"{sid}|{len(messages)}|{len(exps)}|{n_rows}|{stamp}|{status}"
        if key == seen:
            return (sid, seen, *([gr.skip()] * 5))
        versions = [version_cells(v) for v in s.versions]
        png = plot_path(s.folder)
        plot = str(png) if png and exps else None
        table = data_rows(manager.store.examples(s.run_id, kept=None)) if s.run_id else []
        return sid, key, chat_view(messages), status, plot, table, versions

    def send(message: str, sid: str, token: str) -> tuple[str, Any]:
        s = _session(sid, token)
        shown = s.messages()
        manager.submit(s, message or "")
        if (message or "").strip():  # shown at once; the timer brings the stored turn and the replies
            shown = [*shown, {"role": "user", "content": message}]
        return "", chat_view(shown)

    def upload(file: Any, sid: str, token: str) -> Any:
        s = _session(sid, token)
        try:
            path = upload_path(file)
        except P2MError as e:  # shown at once as a notice; the session never sees the file
            gr.Warning(f"Error: {e}")
            return gr.skip()
        manager.submit(s, "", [path])
        return gr.skip()

    def drop(ids_text: str, sid: str, token: str) -> tuple[str, str]:
        s = _session(sid, token)
        try:
            return "", s.drop_examples(parse_ids(ids_text))
        except P2MError as e:
            return ids_text, f"Error: {e}"

    def pick(ids_text: str, data: Any, evt: gr.SelectData) -> str:
        row = evt.index[0] if isinstance(evt.index, list | tuple) else evt.index
        try:
            value = data.iloc[row, 0] if hasattr(data, "iloc") else data[row][0]
        except (IndexError, KeyError, TypeError):
            return ids_text
        return f"{ids_text} {int(value)}".strip()

    def classify(text: str, question: str, sid: str, token: str) -> str:
        s = _session(sid, token)
        if not (text or "").strip():
            return "Type some text first."
        if not s.folder or not (s.folder / "model").is_dir():
            return "No model yet: describe a task in the chat first."
        try:
            return predictor.predict(s.folder, text.strip(), (question or "").strip())
        except P2MError as e:
            return f"Error: {e}"

    def download(sid: str, token: str) -> tuple[Any, str]:
        try:
            return _download(
                _session(sid, token)
            ), "Ready: the zip holds model/, the card, the report and the data."
        except P2MError as e:
            return None, f"Error: {e}"

    def sessions() -> tuple[Any, list[list[Any]]]:
        ids = manager.session_ids()
        return gr.update(choices=ids), history_rows(manager.store, ids)

    def switch(choice: str) -> tuple[str, str]:
        return (choice or ""), ""

    # gradio injects these by annotation, which it cannot resolve as strings (`from __future__ import annotations`)
    on_load.__annotations__["request"] = gr.Request
    pick.__annotations__["evt"] = gr.SelectData

    with gr.Blocks(title="p2m") as app:
        sid, token, seen = gr.State(""), gr.State(""), gr.State("")
        gr.Markdown("## p2m — describe a task, get a small fast model")
        status = gr.Markdown("Loading …", elem_id="status")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                with gr.Row():
                    with gr.Column(scale=3):
                        chat = gr.Chatbot(label="Conversation", height=460, elem_id="chat", sanitize_html=True,
                                          allow_tags=False, feedback_options=None)  # fmt: skip
                        with gr.Row():
                            box = gr.Textbox(placeholder="Describe your task, or refine it: 'add a label refund' …",
                                             show_label=False, lines=2, max_lines=12, scale=5, elem_id="message")  # fmt: skip
                            send_btn = gr.Button("Send", variant="primary", scale=1, elem_id="send")
                        up = gr.UploadButton("Upload examples (.jsonl, .csv, .txt)", file_types=[".jsonl", ".json",
                                             ".csv", ".tsv", ".txt"], elem_id="upload")  # fmt: skip
                    with gr.Column(scale=2):
                        plot = gr.Image(label="Score per version: real rows (90% interval), then teacher-written "
                                        "rows", type="filepath", height=300, interactive=False, elem_id="plot")  # fmt: skip
                        versions = gr.Dataframe(headers=VERSION_HEADERS, interactive=False, wrap=True,
                                                column_widths=["9%", "22%", "11%", "24%", "24%", "10%"],
                                                label="Versions: scores on real rows first", elem_id="versions")  # fmt: skip
            with gr.Tab("Data", id="data"):
                gr.Markdown("Every example with its provenance. Click a row (or type ids) to drop bad examples, "
                            "then say 'retrain' in the chat.")  # fmt: skip
                with gr.Row():
                    ids = gr.Textbox(label="Example ids to drop", scale=4, elem_id="drop-ids")
                    drop_btn = gr.Button("Drop", scale=1, elem_id="drop")
                drop_msg = gr.Markdown(elem_id="drop-msg")
                table = gr.Dataframe(headers=DATA_COLUMNS, interactive=False, wrap=True, elem_id="data-table",
                                     datatype=["number", "str", "str", "str", "str", "str", "str"])  # fmt: skip
            with gr.Tab("Demo", id="demo"):
                demo_in = gr.Textbox(label="Try the current model: an input (for extractive QA, the passage)",
                                     lines=3, elem_id="demo-in")  # fmt: skip
                demo_q = gr.Textbox(label="Question (extractive QA only)", lines=1, elem_id="demo-question")
                demo_btn = gr.Button("Run the model", variant="primary", elem_id="classify")
                demo_out = gr.Textbox(
                    label="Model output (a label, an answer, code or text)", elem_id="demo-out"
                )
            with gr.Tab("Download & history", id="history"):
                dl_btn = gr.Button("Prepare the model folder and card (zip)", elem_id="prepare-download")
                dl_msg = gr.Markdown()
                dl_file = gr.File(label="Download", elem_id="download")
                new_btn = gr.Button("New session", elem_id="new-session")
                pick_session = gr.Dropdown(
                    label="Re-attach to a session", choices=[], allow_custom_value=True
                )
                reload_btn = gr.Button("List sessions")
                runs = gr.Dataframe(headers=HISTORY_COLUMNS, interactive=False, wrap=True, label="Run history",
                                    elem_id="runs")  # fmt: skip

        outputs = [sid, seen, chat, status, plot, table, versions]
        app.load(on_load, None, [sid, token]).then(refresh, [sid, token, seen], outputs)
        gr.Timer(1.0).tick(refresh, [sid, token, seen], outputs, show_progress="hidden")
        # "multiple": a message sent while the last one's event is still pending is not ignored
        send_btn.click(send, [box, sid, token], [box, chat], trigger_mode="multiple")
        box.submit(send, [box, sid, token], [box, chat], trigger_mode="multiple")
        up.upload(upload, [up, sid, token], None)
        table.select(pick, [ids, table], ids)
        drop_btn.click(drop, [ids, sid, token], [ids, drop_msg])
        demo_btn.click(classify, [demo_in, demo_q, sid, token], demo_out)
        demo_in.submit(classify, [demo_in, demo_q, sid, token], demo_out)
        demo_q.submit(classify, [demo_in, demo_q, sid, token], demo_out)
        dl_btn.click(download, [sid, token], [dl_file, dl_msg])
        reload_btn.click(sessions, None, [pick_session, runs])
        app.load(sessions, None, [pick_session, runs])
        pick_session.input(switch, pick_session, [sid, seen])
        new_btn.click(lambda: ("", uuid.uuid4().hex, ""), None, [sid, token, seen])
    return app


def launch(options: RunOptions, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           session: str | None = None, llm: Any = None,
           auth: tuple[str, str] | None = None) -> None:  # fmt: skip
    """Start the app and block until Ctrl-C; `share` needs `auth` (user, password).

    Raises:
        ConfigError: `share` without `auth`, a port in use or out of range, or an unknown session.
    """
    import os

    from p2m.tools.web import launch_kwargs

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing but loopback at run time
    manager = SessionManager(options, llm=llm)
    if session:
        if manager.store.get_run(session) is None:
            raise ConfigError(f"no session {session!r}; `p2m runs` lists them")
        manager.last = session
    else:
        ids = manager.session_ids()
        manager.last = ids[-1] if ids else None
    kwargs = launch_kwargs(host, port, share, auth)  # before the app is built: nothing to undo
    app = build_app(manager)
    try:
        from p2m.memory import home_dir

        app.queue(default_concurrency_limit=8).launch(**kwargs, quiet=False, show_error=True,
                                                      allowed_paths=[str(home_dir())])  # fmt: skip
    finally:
        manager.close()
