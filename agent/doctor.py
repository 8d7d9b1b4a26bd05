"""`p2m doctor`: checks the installation the way `brew doctor` and `flutter doctor` do.

One line per check — the p2m home is writable, there is disk to spare under it, llama.cpp was built for
this CPU, the embedded teacher answers a real chat request (and how fast), the embedder loads, the
search index opens, Chromium is there for the UI's browser tests — and exit 0 only when all pass.
Each check is a plain function returning a `Check`; a check that raises is a failed check, not a crash.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from p2m.errors import P2MError

__all__ = ["Check", "CHECKS", "run_checks", "teacher_speed", "register", "MIN_FREE_GB"]

MIN_FREE_GB = 2.0  # a generative run writes ~1 GB of models (candidates, the deployed one, checkpoints)


@dataclass
class Check:
    """One line of the report: `ok`, the check's name and what was found (or what to do)."""

    name: str
    ok: bool
    detail: str


def _home() -> Path:
    return Path(os.environ.get("P2M_HOME") or Path.home() / ".p2m").expanduser()


def check_home() -> Check:
    """P2M_HOME exists (or can be made) and files can be written in it."""
    from p2m.memory.home import ensure_writable

    home = _home()
    ensure_writable(home)
    return Check("p2m home", True, f"{home} is writable")


def check_disk() -> Check:
    """Enough free disk under P2M_HOME for a run's models."""
    home = _home()
    where = next((p for p in [home, *home.parents] if p.exists()), Path("/"))
    free = shutil.disk_usage(where).free / 1e9
    ok = free >= MIN_FREE_GB
    todo = (
        ""
        if ok
        else f"; free some space or set P2M_HOME to a bigger disk (a run needs about {MIN_FREE_GB:g} GB)"
    )
    return Check("disk", ok, f"{free:.1f} GB free under {where}{todo}")


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    m = re.search(r"^flags\s*:(.*)$", text, re.M)
    return set(m.group(1).split()) if m else set()


# llama.cpp's names for what its CPU backend was compiled with → /proc/cpuinfo flags the CPU needs
_NEEDS = {"AVX": "avx", "AVX2": "avx2", "FMA": "fma", "F16C": "f16c", "BMI2": "bmi2", "AVX512": "avx512f",
          "AVX512_VBMI": "avx512vbmi", "AVX512_VNNI": "avx512_vnni", "AVX512_BF16": "avx512_bf16",
          "AVX_VNNI": "avx_vnni", "AMX_INT8": "amx_int8", "AMX_BF16": "amx_bf16"}  # fmt: skip


def check_llama_build() -> Check:
    """llama-cpp-python is built for any x86-64 with AVX2: no instruction this CPU lacks, no AMX."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode(errors="replace")
    built = [k for k, v in re.findall(r"(\w+) = (\d)", info) if v == "1" and k in _NEEDS]
    flags = _cpu_flags()
    missing = [k for k in built if flags and _NEEDS[k] not in flags]
    amx = [k for k in built if k.startswith("AMX")]
    what = f"llama-cpp-python {llama_cpp.__version__}, built with {' '.join(built) or 'no x86 extensions'}"
    if missing or amx:
        why = (
            f"this CPU lacks {' '.join(missing)}"
            if missing
            else f"{' '.join(amx)} crashes where the OS withholds it"
        )
        return Check("llama.cpp", False, f"{what}: {why}; rebuild the portable one with `make setup`")
    extra = [k for k in built if k.startswith("AVX512")]
    note = " (AVX-512: runs only on CPUs that have it; `make setup` builds the portable one)" if extra else ""
    return Check("llama.cpp", True, what + note)


# A prompt of its own (llama.cpp reuses the longest common prefix with the previous request, so the self
# test's prompt would be served from its cache), asking for a long answer.
_SPEED_PROMPT = "Doctor's check {i}. Copy every note below on its own line, word for word.\n"


def teacher_speed(server: object, rounds: int = 5, max_tokens: int = 64) -> dict[str, float]:
    """Median prompt and generation tokens/s of a started EmbeddedServer over `rounds` requests.

    Each round sends a fresh prompt of 200+ tokens for one token (prompt processing), then the same
    prompt for `max_tokens` (llama.cpp keeps the prompt, so that time is generation).
    """
    from p2m.tools.llm_server import SELF_TEST_PROMPT

    prompt_rates, gen_rates, tokens = [], [], 0
    for i in range(rounds):
        prompt = _SPEED_PROMPT.format(i=i) + SELF_TEST_PROMPT
        first = server.chat(prompt, max_tokens=1)
        second = server.chat(prompt, max_tokens=max_tokens)
        tokens = first["prompt_tokens"]
        prompt_rates.append(first["prompt_tokens"] / max(first["seconds"], 1e-9))
        gen_rates.append(second["completion_tokens"] / max(second["seconds"], 1e-9))
    return {"prompt_tokens": tokens, "prompt_tps": statistics.median(prompt_rates),
            "generation_tps": statistics.median(gen_rates)}  # fmt: skip


def check_teacher() -> Check:
    """The embedded teacher starts, answers a 200+-token chat request, and how fast it is."""
    from p2m.tools.llm import EMBEDDED_MODEL
    from p2m.tools.llm_server import EmbeddedServer

    t0 = time.perf_counter()
    with EmbeddedServer(n_threads=1) as server:  # as runs use it: one server per core, one thread each
        started = time.perf_counter() - t0
        speed = teacher_speed(server)
    return Check("teacher", True, f"{EMBEDDED_MODEL.split(' (')[0]} answered {speed['prompt_tokens']}-token chat "
                 f"requests: prompt {speed['prompt_tps']:.0f} tok/s, generation {speed['generation_tps']:.1f} tok/s "
                 f"(one server, 1 thread, as each of a run's {os.cpu_count() or 1}; up in {started:.1f} s)")  # fmt: skip


def check_embedder() -> Check:
    """all-MiniLM-L6-v2 loads from site-packages and embeds a sentence."""
    from p2m.tools.embed import default_student_path, embed

    t0 = time.perf_counter()
    vec = embed(["p2m doctor checks the embedder"])
    return Check("embedder", True, f"all-MiniLM-L6-v2 from {default_student_path()} ({vec.shape[1]} dims, "
                 f"{time.perf_counter() - t0:.1f} s)")  # fmt: skip


def check_index() -> Check:
    """The Chroma index opens; an empty one is fine (runs work without it)."""
    from p2m.memory.vectors import open_index

    url = os.environ.get("P2M_CHROMA_URL")
    index = open_index(url)
    counts = {k: index.count(k) for k in ("datasets", "models", "local")}
    where = url or str(_home() / "index")
    if not any(counts.values()):
        return Check(
            "index", True, f"empty at {where} (optional: `p2m index build --snapshot DIR` or `--hub`)"
        )
    return Check("index", True, ", ".join(f"{n:,} {k}" for k, n in counts.items()) + f" at {where}")


def check_chromium() -> Check:
    """Chromium for the UI's browser tests (`make test` installs it as root)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not found:
        return Check(
            "chromium", False, "not found; the UI's browser tests need it: `apt-get install chromium`"
        )
    return Check("chromium", True, found)


CHECKS: dict[str, Callable[[], Check]] = {
    "home": check_home,
    "disk": check_disk,
    "llama": check_llama_build,
    "teacher": check_teacher,
    "embedder": check_embedder,
    "index": check_index,
    "chromium": check_chromium,
}

_LABELS = {"home": "p2m home", "llama": "llama.cpp"}  # the other checks' lines use their key


def run_checks(skip: tuple[str, ...] = (), on_check: Callable[[Check], None] | None = None) -> list[Check]:
    """Every check not in `skip`, in order; one that raises becomes a failed check naming the error."""
    out = []
    for name, fn in CHECKS.items():
        if name in skip:
            continue
        try:
            check = fn()
        except Exception as e:  # noqa: BLE001 (a broken part is what the doctor reports)
            what = str(e) if isinstance(e, P2MError) else f"{type(e).__name__}: {e}"
            check = Check(_LABELS.get(name, name), False, what[:800])
        out.append(check)
        if on_check:
            on_check(check)
    return out


@click.command("doctor")
@click.option(
    "--skip", multiple=True, type=click.Choice(list(CHECKS)), help="Leave out a check (repeatable)."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per check.")
@click.option("--home", type=click.Path(file_okay=False), help="p2m home folder.")
def doctor(skip: tuple[str, ...], as_json: bool, home: str | None) -> None:
    """Check the installation: home, disk, llama.cpp build, teacher (with tokens/s), embedder, index, Chromium.

    Exits 0 only when every check passes.

    \b
    Example:
      p2m doctor
      p2m doctor --skip chromium
    """
    import json

    if home:
        os.environ["P2M_HOME"] = str(Path(home).expanduser())

    def show(c: Check) -> None:
        if as_json:
            click.echo(json.dumps(asdict(c), ensure_ascii=False))
        else:
            click.echo(f"{'ok' if c.ok else 'FAIL':<5} {c.name:<10} {c.detail}")

    checks = run_checks(skip, on_check=show)
    failed = [c.name for c in checks if not c.ok]
    if not as_json:
        click.echo(
            f"\n{len(checks) - len(failed)} of {len(checks)} checks passed"
            + (f"; failed: {', '.join(failed)}" if failed else "")
        )
    if failed:
        raise SystemExit(1)


def register(cli: click.Group) -> None:
    cli.add_command(doctor)
