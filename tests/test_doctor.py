"""`p2m doctor`: one line per check, exit 0 only when all pass; each check fails for its own reason."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from p2m.agent import doctor
from p2m.agent.cli import main

FAKE = str(Path(__file__).with_name("fakes.py"))
QUICK = ["--skip", "teacher", "--skip", "embedder"]  # the two that load models; tested apart below


def _doctor(capsys, *args: str) -> tuple[int, list[str]]:
    with pytest.raises(SystemExit) as done:
        main(["doctor", *args])
        raise SystemExit(0)
    out = capsys.readouterr().out
    return done.value.code or 0, [line for line in out.splitlines() if line.strip()]


@pytest.fixture
def chromium(tmp_path, monkeypatch):
    """A `chromium` on PATH (the check looks for the executable, it does not start it)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "chromium"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return exe


def test_all_pass_one_line_each_and_exit_0(capsys, chromium):
    code, lines = _doctor(capsys, *QUICK)
    assert code == 0, lines
    checks = [line for line in lines if line.startswith(("ok", "FAIL"))]
    assert [line.split()[1] for line in checks] == ["p2m", "disk", "llama.cpp", "index", "chromium"]
    assert all(line.startswith("ok ") for line in checks), checks
    assert lines[-1] == "5 of 5 checks passed"
    assert "GB free" in checks[1] and "AVX2" in checks[2] and "empty" in checks[3]


def test_missing_chromium_fails_with_what_to_do(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    code, lines = _doctor(capsys, *QUICK)
    assert code == 1
    assert any(line.startswith("FAIL  chromium") and "apt-get install chromium" in line for line in lines), (
        lines
    )
    assert lines[-1] == "4 of 5 checks passed; failed: chromium"


def test_unwritable_home_and_little_disk_fail(capsys, tmp_path, monkeypatch, chromium):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("P2M_HOME", str(blocker / "home"))  # no folder can be made under a file, even as root
    monkeypatch.setattr(doctor, "MIN_FREE_GB", 10**9)
    code, lines = _doctor(capsys, *QUICK, "--skip", "index")
    assert code == 1
    home = next(line for line in lines if "p2m home" in line)
    disk = next(line for line in lines if " disk " in line)
    assert home.startswith("FAIL") and "cannot write" in home, home
    assert disk.startswith("FAIL") and "free some space" in disk, disk


@pytest.mark.parametrize(
    ("info", "flags", "expected"),
    [
        ("CPU : AVX = 1 | AVX2 = 1 | AMX_INT8 = 1 | ", "avx avx2 amx_int8", "AMX_INT8 crashes where the OS withholds it"),
        ("CPU : AVX = 1 | AVX2 = 1 | AVX512 = 1 | ", "avx avx2 fma", "this CPU lacks AVX512"),
    ],
)  # fmt: skip
def test_a_build_for_another_cpu_fails(capsys, monkeypatch, chromium, info, flags, expected):
    import llama_cpp

    monkeypatch.setattr(llama_cpp, "llama_print_system_info", lambda: info.encode())
    monkeypatch.setattr(doctor, "_cpu_flags", lambda: set(flags.split()))
    code, lines = _doctor(capsys, *QUICK)
    line = next(x for x in lines if "llama.cpp" in x)
    assert code == 1 and line.startswith("FAIL") and expected in line and "make setup" in line, line


def test_a_teacher_that_dies_on_its_first_request_fails_the_check(capsys, monkeypatch, chromium):
    from p2m.tools.llm_server import EmbeddedServer

    monkeypatch.setattr(EmbeddedServer, "_command",
                        lambda self: [sys.executable, FAKE, "--port", str(self.port), "--die-on-chat", "SIGILL"])  # fmt: skip
    code, lines = _doctor(capsys, "--skip", "embedder", "--skip", "index")
    line = next(x for x in lines if " teacher " in x)
    assert code == 1 and line.startswith("FAIL"), line
    assert "killed by SIGILL (illegal instruction)" in line and "make setup" in line


def test_json_lines(capsys, chromium):
    import json

    code, lines = _doctor(capsys, *QUICK, "--json")
    rows = [json.loads(line) for line in lines]
    assert code == 0 and {r["name"] for r in rows} == {"p2m home", "disk", "llama.cpp", "index", "chromium"}
    assert all(r["ok"] is True and r["detail"] for r in rows)


@pytest.mark.slow
def test_the_real_teacher_and_embedder(capsys, chromium):
    code, lines = _doctor(capsys)
    assert code == 0, lines
    teacher = next(x for x in lines if " teacher " in x)
    assert "tok/s" in teacher and "349-token" in teacher, teacher
    assert any(" embedder " in x and "384 dims" in x for x in lines)
