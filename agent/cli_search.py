"""`p2m index …`, `p2m search …` and the search benchmarks: the CLI group for the Hub/local data index."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import click

from p2m.errors import ConfigError

__all__ = ["register"]


def _index(home: str | None, chroma_url: str | None) -> Any:
    from p2m.memory.vectors import open_index

    if home:
        os.environ["P2M_HOME"] = str(Path(home).expanduser())
    return open_index(chroma_url or os.environ.get("P2M_CHROMA_URL"))


def _common(f: Any) -> Any:
    f = click.option("--home", type=click.Path(file_okay=False), help="p2m home folder.")(f)
    f = click.option(
        "--chroma-url", metavar="URL", help="Use a Chroma server (`chroma run`). Env: P2M_CHROMA_URL."
    )(f)
    return f


def _parse_size(text: str | None) -> float | None:
    if text is None:
        return None
    mult = {"k": 1e3, "m": 1e6, "g": 1e9, "b": 1e9}
    t = text.strip().lower()
    try:
        size = float(t[:-1]) * mult[t[-1]] if t and t[-1] in mult else float(t)
    except ValueError as e:
        raise click.BadParameter(f"{text!r} is not a size such as 100K, 500M or 2G") from e
    if not size > 0:
        raise click.BadParameter(f"--max-size must be positive, not {text!r}; e.g. 100K, 500M or 2G")
    return size


@click.group("index")
def index_group() -> None:
    """Build and inspect the search index of Hub datasets, Hub models and your own data."""


@index_group.command("build")
@click.option(
    "--snapshot",
    type=click.Path(file_okay=False),
    help="A Hub metadata folder (datasets.jsonl, models.jsonl).",
)
@click.option(
    "--hub", is_flag=True, help="List the live Hub (HF_ENDPOINT, HF_TOKEN); incremental by last modified."
)
@click.option("--cache", "from_cache", is_flag=True, help="Index what is in the local Hugging Face cache.")
@click.option("--what", type=click.Choice(["datasets", "models", "both"]), default="both", show_default=True)
@click.option("--limit", type=int, default=None, help="At most N entries per kind from the Hub.")
@_common
@click.option("-q", "--quiet", is_flag=True)
def index_build(snapshot: str | None, hub: bool, from_cache: bool, what: str, limit: int | None, home: str | None,
                chroma_url: str | None, quiet: bool) -> None:  # fmt: skip
    """Fill the index. Idempotent: entries already indexed with the same content are skipped,
    so re-running resumes an interrupted build and a refresh only embeds what changed.

    \b
    Examples:
      p2m index build --snapshot ../shared/hub-snapshot
      HF_ENDPOINT=https://huggingface.co p2m index build --hub --what datasets --limit 5000
      p2m index build --cache
    """
    from p2m.tools import hubindex, hubsources
    from p2m.tools.embed import embed

    if not (snapshot or hub or from_cache):
        raise click.UsageError(
            "say what to index: --snapshot DIR, --hub or --cache (or use `p2m index add PATH`)"
        )
    # a wrong folder fails before any work
    snap = hubindex.snapshot_entries(Path(snapshot)) if snapshot else {}
    index = _index(home, chroma_url)
    start = time.perf_counter()
    kinds = ("datasets", "models") if what == "both" else (what,)
    results: dict[str, Any] = {}
    # the models p2m ships with are always there: the student choice is local-first
    results["local models"] = hubindex.build(index, "models", hubsources.local_model_entries(), embed)
    if snapshot:
        for kind, (total, entries) in snap.items():
            if kind in kinds:
                results[f"snapshot {kind}"] = hubindex.build(index, kind, entries, embed, total=total,
                                                             progress=not quiet, desc=f"snapshot {kind}")  # fmt: skip
    if from_cache:
        entries = list(hubsources.cache_entries())
        for kind in kinds:
            results[f"cache {kind}"] = hubindex.build(
                index, kind, [e for e in entries if e.kind == kind], embed
            )
    if hub:
        for kind in kinds:
            results[f"hub {kind}"] = hubsources.build_from_hub(
                index, kind, embed, limit=limit, progress=not quiet
            )
    for name, stats in results.items():
        click.echo(
            f"{name:18s} added {stats['added']:>6}  updated {stats['updated']:>6}  unchanged {stats['unchanged']:>6}"
        )
    click.echo(f"{_status_line(index)} (this build: {time.perf_counter() - start:.1f} s)")


def _status_line(index: Any) -> str:
    counts = {k: index.count(k) for k in ("datasets", "models", "local")}
    return f"index {index.chroma_url or index.folder}: {counts['datasets']} datasets, {counts['models']} models, " \
           f"{counts['local']} local data sets"  # fmt: skip


@index_group.command("add")
@click.argument("path", type=click.Path(exists=True))
@click.option("--name", help="Name in the index (default: the folder or file name).")
@click.option(
    "--license", "license_", default="user", show_default=True, help="Licence recorded with its examples."
)
@_common
def index_add(path: str, name: str | None, license_: str, home: str | None, chroma_url: str | None) -> None:
    """Add your own labelled data (CSV, JSONL, Parquet, or a `datasets` save_to_disk folder) to the index,
    so runs can find and use it.

    \b
    Example:
      p2m index add ~/data/tickets.csv
    """
    from p2m.tools import hubindex
    from p2m.tools.embed import embed
    from p2m.tools.retrieve import local_entry

    entry = local_entry(Path(path), name=name, license=license_)  # a bad file fails before the index opens
    index = _index(home, chroma_url)
    stats = hubindex.build(index, "local", [entry], embed)
    m = entry.meta
    state = "added" if stats["added"] else "updated" if stats["updated"] else "already indexed"
    click.echo(f"{state}: {entry.id} ({m['rows']} rows, columns {m['columns']}) from {m['path']}")


@index_group.command("status")
@_common
def index_status(home: str | None, chroma_url: str | None) -> None:
    """How many entries the index holds."""
    click.echo(_status_line(_index(home, chroma_url)))


def _search_command(kind: str) -> Any:
    @click.command(kind)
    @click.argument("query")
    @click.option("-k", type=int, default=10, show_default=True, help="How many results.")
    @click.option("--json", "as_json", is_flag=True, help='Print a JSON list of {"id", "score", "reasons"}.')
    @click.option("--license", "license_", help="Licence prefix, e.g. apache-2.0, mit, cc-by.")
    @click.option("--language", help="ISO language code, e.g. en.")
    @click.option("--task-type", type=click.Choice(["classification", "extractive_qa", "text_to_code",
                                                    "data_to_text", "text_generation"]))  # fmt: skip
    @click.option("--max-size", help="Max rows (datasets) or bytes (models), e.g. 100K, 500M.")
    @click.option(
        "--mode", type=click.Choice(["dense", "fused", "rerank"]), default="rerank", show_default=True
    )
    @_common
    def command(query: str, k: int, as_json: bool, license_: str | None, language: str | None,
                task_type: str | None, max_size: str | None, mode: str, home: str | None,
                chroma_url: str | None) -> None:  # fmt: skip
        from p2m.tools.search import SearchFilters, search

        if not query.strip():
            raise click.UsageError('the query is empty; describe the task, e.g. "classify movie reviews"')
        if k < 1:
            raise click.BadParameter("-k must be at least 1")
        filters = SearchFilters(license=license_, language=language, task_type=task_type,
                                max_size=_parse_size(max_size))  # fmt: skip
        cands = search(
            _index(home, chroma_url), query, kind, k=k, filters=filters, mode=mode, task_type=task_type
        )
        if as_json:
            click.echo(json.dumps([{"id": c.id, "score": c.score, "reasons": c.reasons,
                                    **({"duplicates": c.duplicates} if c.duplicates else {})} for c in cands]))  # fmt: skip
            return
        if not cands:
            click.echo("no match; loosen the filters or build the index with more sources")
        for r, c in enumerate(cands, 1):
            m = c.metadata
            facts = [m.get("task_type") if m.get("task_type") != "unknown" else None, m.get("license"),
                     m.get("languages") or None, f"{m['downloads']} downloads" if m.get("downloads") else None,
                     "local" if c.kind == "local" or m.get("local") else None]  # fmt: skip
            click.echo(f"{r:>2}. {c.id}  score {c.score:.4f}  [{', '.join(f for f in facts if f)}]")
            why = ", ".join(f"{k} {v:g}" for k, v in c.reasons.items())
            click.echo(f"    why: {why}")
            if c.duplicates:
                click.echo(f"    also (mirrors folded in): {', '.join(c.duplicates[:5])}")

    command.__doc__ = f"""Search {kind} for a task description; each result says why it ranks there.

    \b
    Example:
      p2m search {kind} "classify movie reviews as positive or negative" -k 5
    """
    return command


@click.group("search")
def search_group() -> None:
    """Find Hub datasets (and your own indexed data) or models for a task."""


search_group.add_command(_search_command("datasets"))
search_group.add_command(_search_command("models"))


@click.command("bench-search")
@click.argument("queries", type=click.Path(dir_okay=False))
@click.option("--out", "out_file", type=click.Path(dir_okay=False), help="Write the full result as JSON.")
@_common
def bench_search(queries: str, out_file: str | None, home: str | None, chroma_url: str | None) -> None:
    """recall@5 and MRR of dense, fused and fused+rerank ranking on labelled queries
    (JSONL lines {"query", "relevant": [dataset ids], "task_type"}).

    \b
    Example:
      p2m bench-search bench/search_queries.jsonl --out bench/out/search.json
    """
    from p2m.agent.bench_search import load_queries, retrieval_bench

    result = retrieval_bench(_index(home, chroma_url), load_queries(Path(queries)))
    if out_file:
        _write_json(out_file, result)
    click.echo(f"{result['n_queries']} queries")
    for mode, r in result["modes"].items():
        by = ", ".join(f"{t} {v:.2f}" for t, v in r["recall@5_by_task_type"].items())
        click.echo(
            f"{mode:7s} recall@5 {r['recall@5']:.3f}  MRR {r['mrr']:.3f}  {r['ms_per_query']:.0f} ms/query  ({by})"
        )


@click.command("bench-index")
@click.option("--entries", type=int, default=1_000_000, show_default=True)
@click.option("--queries", type=int, default=1000, show_default=True)
@click.option(
    "--folder", type=click.Path(file_okay=False), help="Where to build it (default: P2M_HOME/scale-bench)."
)
@click.option("--keep", is_flag=True, help="Keep the collection afterwards (it is large).")
@click.option("--out", "out_file", type=click.Path(dir_okay=False))
@click.option("--home", type=click.Path(file_okay=False))
def bench_index(entries: int, queries: int, folder: str | None, keep: bool, out_file: str | None,
                home: str | None) -> None:  # fmt: skip
    """Build a synthetic collection of N entries and time it: build, size on disk, filtered top-10 latency.

    \b
    Example:
      p2m bench-index --entries 1000000 --out bench/out/index_scale.json
    """
    import shutil

    from p2m.agent.bench_search import scale_bench
    from p2m.memory import home_dir

    if home:
        os.environ["P2M_HOME"] = str(Path(home).expanduser())
    if entries < 10 or queries < 1:
        raise click.BadParameter("--entries must be ≥ 10 and --queries ≥ 1")
    where = Path(folder) if folder else home_dir() / "scale-bench"
    try:
        result = scale_bench(where, entries, n_queries=queries, progress=True)
    finally:
        if not keep:
            shutil.rmtree(where, ignore_errors=True)
    if out_file:
        _write_json(out_file, result)
    click.echo(json.dumps(result, indent=1))


def _write_json(path: str, data: Any) -> None:
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=1) + "\n")
    except OSError as e:
        raise ConfigError(f"cannot write {path} ({e.strerror or e})") from e


def register(cli: click.Group) -> None:
    for cmd in (index_group, search_group, bench_search, bench_index):
        cli.add_command(cmd)
