"""The `p2m` command. Each subcommand parses options, calls one library function, prints.

Expected failures (P2MError) print as one `Error: …` line with exit code 1; Ctrl-C exits 130 and
leaves the run resumable. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click

# p2m draws its own progress bars; the libraries' (loading weights, writing shards) would interleave with them
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from p2m.agent.cli_chat import register as register_chat_commands
from p2m.agent.cli_parse import register as register_parse_commands
from p2m.agent.cli_runs import register as register_run_commands
from p2m.agent.cli_search import register as register_search_commands
from p2m.agent.doctor import register as register_doctor
from p2m.errors import P2MError, RunInterrupted, storage_error
from p2m.tools.generate import GenConfig
from p2m.tools.train import TrainConfig

__all__ = ["main", "cli"]


def _llm_options(f: Any) -> Any:
    f = click.option(
        "--llm",
        "llm_url",
        metavar="URL",
        help="OpenAI-compatible endpoint (…/v1); default: embedded teacher. Env: OPENAI_BASE_URL.",
    )(f)
    f = click.option("--llm-model", metavar="NAME", help="Model name at --llm. Env: P2M_LLM_MODEL.")(f)
    f = click.option(
        "--llm-timeout", type=float, default=120.0, show_default=True, help="Seconds per LLM request."
    )(f)
    return f


def _run_options(f: Any) -> Any:
    f = _llm_options(f)
    f = click.option("--llm-concurrency", type=click.IntRange(min=0), default=0, metavar="N",
                     help="Teacher requests in flight at once (embedded: servers; 0 = one per core, 4 at --llm).")(f)  # fmt: skip
    f = click.option(
        "--examples",
        type=int,
        default=GenConfig.examples,
        show_default=True,
        help="Usable examples to generate, split over labels.",
    )(f)
    f = click.option(
        "--gen-minutes",
        type=float,
        default=GenConfig.minutes,
        show_default=True,
        help="Cap on generation time (0 = none).",
    )(f)
    f = click.option(
        "--budget-llm-calls",
        type=int,
        default=0,
        help="Cap on teacher calls (with the planner: its whole budget; 0 = none).",
    )(f)
    f = click.option(
        "--epochs",
        type=int,
        default=TrainConfig.epochs,
        show_default=True,
        help="Fine-tuning epochs (best kept).",
    )(f)
    f = click.option(
        "--no-finetune", is_flag=True, help="Only the quick trial (embeddings + logistic regression)."
    )(f)
    f = click.option("--student", "students", multiple=True, metavar="NAME",
                     help="A student the first round trains (repeat for several; default: the task kind's, e.g. "
                     "quick-trial and finetune; lora-16L = SmolLM2 cut to 16 layers). The planner may switch.")(f)  # fmt: skip
    f = click.option("--max-latency-ms", type=float, metavar="MS",
                     help="The deployed student's bound, ms per example (batched): the planner switches to a faster "
                     "student when it is missed.")(f)  # fmt: skip
    f = click.option("--seed", type=int, default=0, show_default=True)(f)
    f = click.option("--no-retrieve", is_flag=True, help="Do not search the index for labelled data.")(f)
    f = click.option(
        "--retrieve-max", type=int, default=1000, show_default=True, help="At most N retrieved rows."
    )(f)
    f = click.option(
        "--chroma-url",
        metavar="URL",
        help="Search a Chroma server instead of P2M_HOME/index. Env: P2M_CHROMA_URL.",
    )(f)
    return f


def _plan_options(f: Any) -> Any:
    f = click.option("--max-rounds", type=int, default=3, show_default=True,
                     help="At most N training rounds (1 = the fixed recipe: generate, train, deploy).")(f)  # fmt: skip
    f = click.option("--decider", type=click.Choice(["auto", "llm", "rule"]), default="auto", show_default=True,
                     help="Planner decisions: the LLM (checked by a guard) or the rule policy; auto = LLM if --llm.")(f)  # fmt: skip
    f = click.option(
        "--planner", "use_planner", is_flag=True, hidden=True, help="(The planner always runs.)"
    )(f)
    f = click.option(
        "--budget-minutes", type=float, default=0.0, help="Planner: stop after this much work (0 = none)."
    )(f)
    f = click.option("--target", type=float,
                     help="Stop when this validation score is reached (e.g. 0.9; judged on real rows when ≥ 10).")(f)  # fmt: skip
    return f


def _plan(kw: dict[str, Any]) -> Any:
    """The planner's options (every run goes through the planner)."""
    from p2m.agent.planner import PlanOptions

    return PlanOptions(target=kw["target"], budget_minutes=kw["budget_minutes"], budget_llm_calls=kw["budget_llm_calls"],
                       max_rounds=kw["max_rounds"], decider=kw["decider"])  # fmt: skip


def _options(kw: dict[str, Any], eval_file: str | None = None, out: str | None = None) -> Any:
    from p2m.agent.options import RunOptions
    from p2m.tools.generate import GenConfig
    from p2m.tools.llm import LLMConfig
    from p2m.tools.train import TrainConfig

    return RunOptions(
        llm=LLMConfig.from_env(
            kw["llm_url"], kw["llm_model"], timeout=kw["llm_timeout"], concurrency=kw["llm_concurrency"]
        ),  # fmt: skip
        gen=GenConfig(
            examples=kw["examples"],
            minutes=kw["gen_minutes"],
            max_calls=kw["budget_llm_calls"],
            seed=kw["seed"],
        ),
        train=TrainConfig(epochs=kw["epochs"], seed=kw["seed"]),
        finetune=not kw["no_finetune"],
        students=list(kw["students"]) or None,
        max_latency_ms=kw["max_latency_ms"],
        eval_file=eval_file,
        out=out,
        retrieve=not kw["no_retrieve"],
        retrieve_max=kw["retrieve_max"],
        chroma_url=kw["chroma_url"] or os.environ.get("P2M_CHROMA_URL"),
    )


def _home(home: str | None) -> None:
    if home:
        os.environ["P2M_HOME"] = str(Path(home).expanduser())


def _estimates_lines(rep: dict[str, Any]) -> list[str]:
    """Both validation estimates, real rows first (the teacher-written ones flatter the student)."""
    from p2m.tools.validation import Estimate

    est = rep.get("estimates") or {}
    lines = []
    for source in ("real", "teacher"):
        e = est.get(source)
        if e:
            lines.append(f"  validation, {Estimate(**e).text()}")
        elif source == "real":
            lines.append("  validation on real rows: none (add examples to the prompt, or --eval FILE)")
    return lines


def _print_result(res: Any) -> None:
    rep = res.report
    st = rep["student"]
    ms = f", {st['ms_per_example']:.1f} ms/example" if st.get("ms_per_example") else ""
    click.echo(f"\nrun {res.run_id}: {res.spec.task_type}, student {st['selected']} ({st['base']}{ms})")
    for line in _estimates_lines(rep):
        click.echo(line)
    if rep.get("user_eval"):
        u = rep["user_eval"]
        click.echo(f"  on the --eval file alone: {u['metric']} {u['score']:.3f} ({u['n']} rows)")
    planner = rep.get("planner") or {}
    click.echo(f"planner: {planner.get('rounds', 1)} round(s) of at most {planner.get('max_rounds', 1)}; decisions "
               f"(`p2m show {res.run_id}` for all):")  # fmt: skip
    for d in rep.get("decisions") or []:
        rnd = (d.get("args") or {}).get("round")
        if rnd is not None and not d["action"].startswith("rejected"):
            click.echo(f"  → round {rnd}: {d['action']} ({d['by']}) — {d['reason'][:160]}")
    sel = [d for d in rep.get("decisions") or [] if d["action"] == "select"]
    if sel:
        click.echo(f"  kept: {sel[-1]['reason'][:200]}")
    cost = rep["cost"]
    failed = ", ".join(f"{n} {kind}" for kind, n in sorted((cost.get("failures") or {}).items()))
    click.echo(
        f"teacher: {cost['calls']} calls ({cost['cached']} cached), {cost['prompt_tokens'] + cost['completion_tokens']} tokens"
        + (f"; failed attempts: {failed} (retried, restarted or stepped over)" if failed else "")
    )
    click.echo(
        f'model: {res.folder / "model"}\ncard:  {res.folder / "README.md"}\ntry:   p2m predict {res.run_id} "some text"   |   p2m serve {res.run_id}'
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="p2m")
def cli() -> None:
    """p2m: describe a task, get a small, fast, deployed model. Offline by default.

    \b
    Example:
      p2m run "Classify support tickets as billing, bug or other."
    """


@cli.command()
@click.argument("prompt", required=False)
@click.option(
    "-f",
    "--prompt-file",
    type=click.Path(dir_okay=False),
    help="Read the task description from a file ('-' = stdin).",
)
@_run_options
@click.option(
    "--eval",
    "eval_file",
    type=click.Path(),
    help="JSONL {input, output} file to report on (never trained on).",
)
@click.option("--out", type=click.Path(file_okay=False), help="Run folder (default: P2M_HOME/runs/RUN_ID).")
@click.option(
    "--home", type=click.Path(file_okay=False), help="p2m home folder (default: P2M_HOME or ~/.p2m)."
)
@_plan_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def run(prompt: str | None, prompt_file: str | None, eval_file: str | None, out: str | None, home: str | None,
        quiet: bool, **kw: Any) -> None:  # fmt: skip
    """Build a model from a task description, end to end.

    \b
    Example:
      p2m run "Decide whether a review is positive or negative.
      Input: loved it
      Output: positive"
      p2m run -f examples/support_tickets.txt --eval my_tickets.jsonl
    """
    from p2m.agent.planner import run_planner

    _home(home)
    if prompt_file:
        if prompt:
            raise click.UsageError("give the task as PROMPT or with --prompt-file, not both")
        try:
            prompt = sys.stdin.read() if prompt_file == "-" else Path(prompt_file).read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            why = f"not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8"
            raise click.ClickException(f"cannot read the prompt file {prompt_file}: {why}") from e
        except OSError as e:
            why = f"{e.strerror or e}; give the path of a UTF-8 text file, or '-' for stdin"
            raise click.ClickException(f"cannot read the prompt file {prompt_file}: {why}") from e
    _print_result(run_planner(prompt or "", _options(kw, eval_file, out), _plan(kw), progress=not quiet))


@cli.command()
@click.argument("run_id")
@click.option("--home", type=click.Path(file_okay=False), help="p2m home folder.")
@click.option("-q", "--quiet", is_flag=True)
def resume(run_id: str, home: str | None, quiet: bool) -> None:
    """Continue a stopped, failed or killed run, reusing what it had done.

    \b
    Example:
      p2m resume 20261125-101500-classify-support-tickets
    """
    from p2m.agent.planner import run_planner

    _home(home)
    _print_result(run_planner(resume=run_id, progress=not quiet))


@cli.command()
@click.option("--home", type=click.Path(file_okay=False), help="p2m home folder.")
def runs(home: str | None) -> None:
    """List runs, newest last."""
    import time

    from p2m.agent.options import open_store

    _home(home)
    rows = open_store().list_runs()
    if not rows:
        click.echo('no runs yet; start one with `p2m run "…"`')
    for r in rows:
        click.echo(
            f"{r['id']:<48} {r['status']:<12} {r['stage']:<10} {time.strftime('%Y-%m-%d %H:%M', time.localtime(r['created']))}"
        )


@cli.command()
@click.argument("run_id")
@click.argument("texts", nargs=-1, required=True)
@click.option("--home", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines {input, label}.")
def predict(run_id: str, texts: tuple[str, ...], home: str | None, as_json: bool) -> None:
    """Run a run's model (RUN_ID or a run folder) on TEXTS: labels, answers, code or text.

    \b
    Example:
      p2m predict RUN_ID "I was charged twice this month"
      p2m predict QA_RUN "Passage: Ada moved to Leeds in 1990.
      Question: Where did Ada move?"
    """
    from p2m.tools.deploy import load_run_model

    _home(home)
    student, spec = load_run_model(run_id)
    key = "label" if spec.get("task_type", "classification") == "classification" else "output"
    for text, label in zip(texts, student.predict(list(texts)), strict=True):
        click.echo(json.dumps({"input": text, key: label}, ensure_ascii=False) if as_json else label)


@cli.command()
@click.argument("run_id")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=None, help="Default: the first free port from 7860.")
@click.option(
    "--share", is_flag=True, help="Also open a public Gradio share link (needs network and --auth)."
)
@click.option(
    "--auth", metavar="USER:PASSWORD", envvar="P2M_UI_AUTH", help="Ask for this login. Env: P2M_UI_AUTH."
)
@click.option("--home", type=click.Path(file_okay=False))
def serve(run_id: str, host: str, port: int | None, share: bool, auth: str | None, home: str | None) -> None:
    """Open a web demo of a run's model (Gradio, 127.0.0.1 by default).

    \b
    Example:
      p2m serve RUN_ID --port 7860
      p2m serve RUN_ID --share --auth ana:long-secret
    """
    from p2m.tools.deploy import serve as serve_run
    from p2m.tools.web import parse_auth

    _home(home)
    serve_run(run_id, host=host, port=port, share=share, auth=parse_auth(auth))


@cli.command()
@click.argument("task_dir", type=click.Path(file_okay=False))
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False),
    required=True,
    help="Where to write the JSON result.",
)
@click.option("--limit", type=int, default=300, show_default=True, help="Score the first N test rows.")
@click.option("--no-ceiling", is_flag=True, help="Skip training the student on train.jsonl.")
@click.option(
    "--no-teacher", is_flag=True, help="Skip the teacher's zero-shot baseline (when already measured)."
)
@_run_options
@_plan_options
@click.option("--home", type=click.Path(file_okay=False))
@click.option("-q", "--quiet", is_flag=True)
def bench(task_dir: str, out_file: str, limit: int, no_ceiling: bool, no_teacher: bool, home: str | None,
          quiet: bool, **kw: Any) -> None:  # fmt: skip
    """Run the pipeline on a bench task's prompt alone, then score it on the task's test rows.

    Compares the student with the teacher zero-shot on the same rows and, where the task has
    train.jsonl, with the same student trained on that real data.

    \b
    Example:
      p2m bench ../shared/bench-data/sst2 --out bench/out/sst2.json
    """
    from p2m.agent.bench import format_result, run_bench

    _home(home)
    result = run_bench(task_dir, out_file, _options(kw), limit=limit, target=kw["target"], ceiling=not no_ceiling,
                       teacher=not no_teacher, progress=not quiet, plan=_plan(kw))  # fmt: skip
    click.echo(format_result(result))


register_search_commands(cli)
register_run_commands(cli)
register_parse_commands(cli, _llm_options)
register_doctor(cli)
register_chat_commands(cli, _run_options, _options)


def _sigterm_as_ctrl_c(signum: int, frame: Any) -> None:
    """SIGTERM behaves like Ctrl-C: the run is marked interrupted and the teacher server stopped."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Entry point: one readable line for expected failures, exit 130 on Ctrl-C."""
    signal.signal(signal.SIGTERM, _sigterm_as_ctrl_c)
    try:
        cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.UsageError as e:  # one line too, not click's usage block; exit code 2 as click's
        where = " ".join(["p2m", *e.ctx.command_path.split()[1:]]) if e.ctx else "p2m"
        msg = " ".join(e.format_message().split())
        click.echo(f"Error: {msg} (`{where} --help` lists the options)", err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except P2MError as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(130 if isinstance(e, RunInterrupted) else 1)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception as e:  # a full disk is the user's to fix, not a bug; anything else keeps its traceback
        full = storage_error(e)
        if full is None:
            raise
        click.echo(f"Error: {full}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
