"""`p2m show`: what a run did and why — its decisions, its metric trajectory, and a PNG plot of it."""

from __future__ import annotations

import os
from pathlib import Path

import click

from p2m.errors import ConfigError

__all__ = ["register"]


@click.command("show")
@click.argument("run_id")
@click.option("--home", type=click.Path(file_okay=False), help="p2m home folder.")
@click.option("--no-plot", is_flag=True, help="Do not write RUN/trajectory.png.")
def show(run_id: str, home: str | None, no_plot: bool) -> None:
    """Print a run's decision log and metric trajectory, and write RUN/trajectory.png.

    \b
    Example:
      p2m show 20261125-101500-classify-support-tickets
    """
    from p2m.agent.options import open_store
    from p2m.agent.report import trajectory, write_plot

    if home:
        os.environ["P2M_HOME"] = str(Path(home).expanduser())
    store = open_store()
    run = store.get_run(run_id)
    if run is None:
        raise ConfigError(f"no run {run_id!r}; `p2m runs` lists them")
    click.echo(f"run {run_id}  [{run['status']}]  {run['folder']}")
    plan = run["config"].get("plan")
    if plan:
        click.echo(f"planner: target {plan.get('target')}, budget {plan.get('budget_llm_calls') or '∞'} calls, "
                   f"{plan.get('budget_minutes') or '∞'} min, decider {plan.get('decider')}")  # fmt: skip
    click.echo("\ndecisions:")
    for i, d in enumerate(store.decisions(run_id), 1):
        args = {k: v for k, v in (d.get("args") or {}).items() if k != "round"}
        rnd = (d.get("args") or {}).get("round")
        where = f"→ round {rnd} " if rnd is not None else ""
        click.echo(f"{i:>3}. [{d['by']:4s}] {d['action']} {where}{args if args else ''}")
        click.echo(f"       why: {d['reason']}")
    points = trajectory(store, run_id)
    click.echo("\nmodels tried (validation: real rows, then teacher-written rows; speed batched):")
    for p in points:
        real = (
            f"real {p['real']:.3f} on {p['real_rows']:>3}" if p["real"] is not None else "real   —         "
        )
        ms = f"{p['ms_per_example']:.1f} ms/example" if p.get("ms_per_example") is not None else ""
        bar = "█" * int(round(min(p["score"] / (100 if p["score"] > 1 else 1), 1) * 20))
        click.echo(f"  {p['name']:<22s} {real}   teacher-written {p['score']:.3f} {bar:<20s} {ms}"
                   f"  ({p['n_train']} training rows)")  # fmt: skip
    if not points:
        click.echo("  (no experiment yet)")
    led = store.ledger(run_id)
    click.echo(f"\ncost: {led['calls']} LLM calls ({led['cached']} cached), "
               f"{led['prompt_tokens'] + led['completion_tokens']} tokens, {led['seconds']:.0f} s of LLM time")  # fmt: skip
    if points and not no_plot:
        try:
            path = write_plot(store, run_id, Path(run["folder"]) / "trajectory.png")
        except OSError as e:
            raise ConfigError(f"cannot write the plot into {run['folder']} ({e.strerror or e})") from e
        click.echo(f"plot: {path}")


def register(cli: click.Group) -> None:
    cli.add_command(show)
