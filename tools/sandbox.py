"""Run untrusted generated code (a teacher's snippets) without trusting it: one function, `run_untrusted`.

Two layers, each meant to hold without the other:

1. A compile policy from a well-kept library, RestrictedPython: no name or attribute starting with "_", no
   frame or generator internals, no exec/eval; here also no import off `SAFE_MODULES` and no builtin off the
   pure ones (`SAFE_BUILTINS`: no open, type, vars, input, help, breakpoint…). What it refuses never runs.
   (`_Policy` adds only `counts[w] += 1` and `self.n += 1`, through the same guards as `x[k] = x[k] + 1`.)
2. What it compiles runs in a child process (tools/_sandbox_child.py) with RestrictedPython's run-time guards,
   copies of the pure modules without their module attributes (`random._os`, `statistics.sys`) or name-based
   getters (`operator.attrgetter`), and confined where the platform allows: `python -I -S -B`, no environment,
   a throw-away folder, stdin closed, no network (a new namespace), no filesystem (Landlock), not root, limits
   on address space, CPU seconds, file size (0) and processes (0), and a wall-clock timeout that kills the
   child's whole process group.
"""

from __future__ import annotations

import ast
import builtins
import marshal
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import RestrictedPython
from RestrictedPython import RestrictingNodeTransformer, compile_restricted_exec
from RestrictedPython.transformer import INSPECT_ATTRIBUTES, IOPERATOR_TO_STR, copy_locations

from p2m.tools._sandbox_child import SAFE_MODULES, builtin_names

__all__ = ["SAFE_MODULES", "SAFE_BUILTINS", "MEMORY_LIMIT", "policy_refusal", "run_untrusted"]

SAFE_BUILTINS = builtin_names()
MEMORY_LIMIT = 512 * 2**20  # address space of the child, bytes
_MAX_CODE = 100_000  # characters
_CHILD = Path(__file__).with_name("_sandbox_child.py")
_RP_DIR = str(Path(RestrictedPython.__file__).resolve().parent.parent)
_DENIED_BUILTINS = frozenset(dir(builtins)) - SAFE_BUILTINS


class _Policy(RestrictingNodeTransformer):
    """RestrictedPython's policy, plus what it refuses only for want of a hook: augmented assignment of an
    item or attribute (`counts[w] += 1`, `self.n += 1`) becomes one call of a guarded helper, which reads
    and writes through the same guards as `counts[w] = counts[w] + 1` (the target is evaluated once)."""

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        target = node.target
        if isinstance(target, ast.Name) or (
            isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Slice)
        ):
            return super().visit_AugAssign(node)
        if isinstance(target, ast.Attribute):
            if target.attr.startswith("_") or target.attr in INSPECT_ATTRIBUTES:
                self.error(node, f'"{target.attr}" is an invalid attribute name.')
            helper, key = "_inplace_attr_", ast.Constant(target.attr)
        else:
            helper, key = "_inplace_item_", self.visit(target.slice)
        op = ast.Constant(IOPERATOR_TO_STR[type(node.op)])
        call = ast.Call(
            ast.Name(helper, ast.Load()), [self.visit(target.value), key, op, self.visit(node.value)], []
        )
        new = ast.Expr(call)
        copy_locations(new, node)
        return ast.fix_missing_locations(new)


def _short(message: str) -> str:
    return re.sub(r"^Line \d+: ", "", message).replace("\n", " ")[:200]


def _compile(code: str) -> tuple[object | None, str | None]:
    """(code object, None) when RestrictedPython's policy compiles `code`, else (None, the reason)."""
    if len(code) > _MAX_CODE:
        return None, "refused: code too long"
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        return None, f"syntax_error: {type(e).__name__}"
    try:
        result = compile_restricted_exec(tree, filename="<untrusted>", policy=_Policy)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        return None, f"refused: {type(e).__name__}"
    if result.errors:
        return None, f"refused: {_short(result.errors[0])}"
    return result.code, None


def policy_refusal(code: str) -> str | None:
    """Why RestrictedPython's compile policy refuses `code` ("refused: …": underscore names or attributes,
    frame internals, exec/eval, async), None when it compiles. Imports and builtins are not judged here."""
    return _compile(code)[1]


def _off_the_list(tree: ast.AST) -> str | None:
    """A refusal for an import off `SAFE_MODULES` or a builtin off `SAFE_BUILTINS` the code does not define."""
    stored = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            bad = [n for n in names if node.__dict__.get("level") or n not in SAFE_MODULES]
            if bad:
                return f"refused: import of {bad[0]!r}"
            stored.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            stored.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            stored.add(node.name)
        elif isinstance(node, ast.arg):
            stored.add(node.arg)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in _DENIED_BUILTINS and node.id not in stored:
            return f"refused: name {node.id!r} is not available"
    return None


def _kill_group(proc: subprocess.Popen) -> None:
    try:  # the child leads its own session and process group: this kills it and anything it started
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _run_compiled(code: object, timeout: float) -> str | None:
    """Run a compiled code object in the confined child (layer 2 alone: tests pass it unrestricted code)."""
    payload = marshal.dumps((_RP_DIR, max(1, math.ceil(timeout)), MEMORY_LIMIT, code))
    with tempfile.TemporaryDirectory(prefix="p2m_sandbox_") as tmp:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", str(_CHILD)], cwd=tmp, env={}, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, close_fds=True,
        )  # fmt: skip
        try:
            out, err = proc.communicate(payload, timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            return "timeout"
        except BaseException:
            _kill_group(proc)
            proc.communicate()
            raise
    status = out.decode("utf-8", "replace").strip()
    if proc.returncode == 0 and status:
        return None if status == "ok" else status
    if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return "timeout"  # the CPU-seconds limit
    tail = err.decode("utf-8", "replace").strip().splitlines()[-1:]
    return _short(f"crashed: exit {proc.returncode} {' '.join(tail)}".strip())


def run_untrusted(code: str, timeout: float = 3.0) -> str | None:
    """Run untrusted Python source in the sandbox; None when it ran cleanly, else a short reason.

    Args:
        code: The source, e.g. a generated one-liner.
        timeout: Wall-clock seconds for the whole run (and the child's CPU-seconds limit, rounded up).

    Returns:
        None, or a reason whose first word groups it: "refused: …" (the policy; nothing ran),
        "syntax_error: …", "timeout", "memory_limit", "runtime_error: ZeroDivisionError", "crashed: …".
    """
    compiled, reason = _compile(code)
    if reason:
        return reason
    reason = _off_the_list(ast.parse(code))
    if reason:
        return reason
    return _run_compiled(compiled, timeout)
