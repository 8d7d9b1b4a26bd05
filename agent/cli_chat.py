"""`p2m chat` and `p2m ui`: talk to the agent about a task, in the terminal or in a browser."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

__all__ = ["register"]

_PROMPT_HELP = """Type a task description to start — a classifier, extractive QA, data-to-text, code or text —
then refine it in plain words ('add a label refund', 'make the answers shorter', 'use a formal tone',
'write them in Spanish', 'why did you do that?', 'stop and deploy'). Paste several lines (examples)
between two lines of three double quotes; '/upload FILE' adds examples from a file (every third is kept
to check the model on); '/quit' (or Ctrl-D) leaves — the session is kept: `p2m chat --session ID`
continues it."""


def _read_message() -> str | None:
    """One message from the terminal: a line, or a block between two lines of three double quotes."""
    try:
        line = input("you> ")
    except EOFError:
        return None
    if line.strip() != '"""':
        return line
    lines = []
    while True:
        try:
            more = input("... ")
        except EOFError:
            break
        if more.strip() == '"""':
            break
        lines.append(more)
    return "\n".join(lines)


def register(cli: click.Group, run_options: Callable, options: Callable[[dict[str, Any]], Any]) -> None:
    """Add `chat` and `ui` to the CLI (the run options and their parser come from cli.py)."""

    @cli.command("chat")
    @run_options
    @click.option("--session", metavar="RUN_ID", help="Continue an earlier chat session.")
    @click.option(
        "-m", "--message", "messages", multiple=True, help="Send this message and leave (repeatable)."
    )
    @click.option("--home", type=click.Path(file_okay=False), help="p2m home folder.")
    def chat(session: str | None, messages: tuple[str, ...], home: str | None, **kw: Any) -> None:
        """Build and refine a model by conversation in the terminal, for any task kind.

        \b
        Example:
          p2m chat --examples 120
          you> Classify support tickets as billing, bug or other.
          you> add a label refund
          you> stop and deploy
        \b
          you> Answer the question with a span of the passage. Passage: … Question: … Answer: …
          you> make the answers shorter
          you> /upload my_questions.jsonl
        """
        from p2m.agent.chat import ChatSession

        if home:
            os.environ["P2M_HOME"] = str(Path(home).expanduser())
        show = lambda text: click.echo(f"\np2m> {text}\n")  # noqa: E731
        if session:
            s = ChatSession.attach(session, on_reply=show)
            click.echo(f"session {session}: {len(s.messages())} messages, {len(s.versions)} versions")
        else:
            s = ChatSession(options=options(kw), on_reply=show)
        try:
            if messages:
                for m in messages:
                    s.handle(m)
                return
            click.echo(_PROMPT_HELP)
            while (m := _read_message()) is not None:
                if m.strip() in ("/quit", "/exit"):
                    break
                try:
                    if m.strip().startswith("/upload "):
                        s.handle("", files=[m.strip()[8:].strip()])
                    else:
                        s.handle(m)
                except KeyboardInterrupt:  # stops the work, not the session
                    click.echo(
                        "\n(stopped; what was done is kept — say 'retrain' to train the current version)"
                    )
        finally:
            s.close()
            if s.run_id:
                click.echo(f"session {s.run_id} kept; continue with `p2m chat --session {s.run_id}`")

    @cli.command("ui")
    @run_options
    @click.option(
        "--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default)."
    )
    @click.option("--port", type=int, default=None, help="Default: the first free port from 7860.")
    @click.option(
        "--share", is_flag=True, help="Also open a public Gradio share link (needs network and --auth)."
    )
    @click.option(
        "--auth", metavar="USER:PASSWORD", envvar="P2M_UI_AUTH", help="Ask for this login. Env: P2M_UI_AUTH."
    )
    @click.option("--session", metavar="RUN_ID", help="Open this session (default: the latest one).")
    @click.option("--home", type=click.Path(file_okay=False), help="p2m home folder.")
    def ui(host: str, port: int | None, share: bool, auth: str | None, session: str | None, home: str | None,
           **kw: Any) -> None:  # fmt: skip
        """Open the web app: chat with the agent, watch runs, fix data, try and download the model.

        \b
        Example:
          p2m ui --examples 120            # then open http://127.0.0.1:7860
          p2m ui --llm http://127.0.0.1:11434/v1 --llm-model llama3.1 --port 8080
          p2m ui --share --auth ana:long-secret   # a public link, behind a login
        """
        from p2m.agent.ui import launch
        from p2m.tools.web import parse_auth

        if home:
            os.environ["P2M_HOME"] = str(Path(home).expanduser())
        launch(options(kw), host=host, port=port, share=share, session=session, auth=parse_auth(auth))
