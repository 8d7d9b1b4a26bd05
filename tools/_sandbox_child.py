"""The sandbox's child process (layer 2 of tools/sandbox.py) and the policy it enforces at run time.

Run as `python -I -S -B _sandbox_child.py` with no environment, in a throw-away folder, reading one marshalled
`(restrictedpython_dir, cpu_seconds, memory_bytes, code)` from stdin, where `code` is a code object the parent
compiled with RestrictedPython. Before the code runs the process imports all it will ever need, then confines
itself: no network namespace, no filesystem at all (Landlock), no root, and resource limits (address space,
CPU seconds, file size 0, no new processes). The code runs with RestrictedPython's guards, builtins cut down
to pure ones and read-only copies of a few pure modules. One status line goes back on a private pipe:
"ok", "refused: …", "memory_limit" or "runtime_error: <exception type>".

Importable without side effects: tools/sandbox.py reads the policy (`SAFE_MODULES`, `builtin_names`) from here.
"""

from __future__ import annotations

import builtins
import codecs
import collections
import ctypes
import functools
import importlib
import marshal
import operator
import os
import resource
import signal
import string
import sys
import types

__all__ = ["SAFE_MODULES", "DENIED_ATTRIBUTES", "SANDBOX_MODULE", "builtin_names", "main"]

# Pure modules: no I/O, no processes, no introspection. Code sees a copy holding only their public names that
# are not modules (`statistics.sys`, `json.codecs`, `datetime.sys` would open everything) minus the few below.
SAFE_MODULES = ("math", "re", "string", "itertools", "collections", "json", "datetime", "statistics", "functools",
                "fractions", "decimal", "heapq", "bisect", "calendar", "textwrap", "random", "operator")  # fmt: skip
DENIED_ATTRIBUTES = {
    "operator": {"attrgetter", "methodcaller"},  # attribute access by name, around the getattr guard
    # register() evaluates string annotations with typing's unrestricted eval
    "functools": {"singledispatch", "singledispatchmethod"},
    "string": {"Formatter"},  # "{0.__class__}" field lookups
    "calendar": {"main"},  # a command line
}
SANDBOX_MODULE = "sandboxed"  # `__name__` of the code, hence `__module__` of the classes it defines
# Pure builtins besides RestrictedPython's `safe_builtins`; getattr and friends are guarded versions.
_PLAIN_BUILTINS = ("sorted", "sum", "min", "max", "enumerate", "zip", "map", "filter", "any", "all", "list", "dict",
                   "set", "frozenset", "tuple", "reversed", "iter", "next", "format", "bin", "object", "property",
                   "staticmethod", "classmethod")  # fmt: skip
_GUARDED_BUILTINS = ("getattr", "hasattr", "setattr", "delattr")
_INTERNAL_IMPORTS = ("_strptime", "time")  # datetime's strptime and strftime import them when called
_LAZY_IMPORTS = ("copy",)  # collections.UserDict.copy imports it when called
_ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "utf-32", "latin-1", "ascii", "cp1252", "idna")
_INPLACE = {"+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
            "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow, "<<=": operator.ilshift,
            ">>=": operator.irshift, "&=": operator.iand, "^=": operator.ixor, "|=": operator.ior,
            "@=": operator.imatmul}  # fmt: skip


def builtin_names() -> frozenset[str]:
    """The names code may read without defining them (RestrictedPython's safe builtins, ours, `print`)."""
    from RestrictedPython.Guards import safe_builtins

    return frozenset(n for n in safe_builtins if not n.startswith("_")) | {
        *_PLAIN_BUILTINS,
        *_GUARDED_BUILTINS,
        "print",
        "printed",
    }


class Refused(Exception):
    """Raised by a guard; the runner also remembers it, so catching it does not hide the attempt."""


def _module_copies() -> dict[str, types.ModuleType]:
    """Read-only-in-effect copies of `SAFE_MODULES` (imported now: nothing can be imported once confined)."""
    for name in _INTERNAL_IMPORTS + _LAZY_IMPORTS:
        importlib.import_module(name)
    for encoding in _ENCODINGS:
        codecs.lookup(encoding)  # str.encode imports a codec's module on first use
    copies = {}
    for name in SAFE_MODULES:
        module = importlib.import_module(name)
        copy = types.ModuleType(name, module.__doc__)
        for key, value in vars(module).items():
            if not key.startswith("_") and not isinstance(value, types.ModuleType):
                if key not in DENIED_ATTRIBUTES.get(name, ()):
                    setattr(copy, key, value)
        copies[name] = copy
    # update_wrapper's `assigned`/`updated` are attribute names it reads and writes (updated=("__globals__",)
    # would pour a library's globals into the code's own): only the defaults
    copies["functools"].wraps = lambda wrapped: functools.wraps(wrapped)
    copies["functools"].update_wrapper = lambda wrapper, wrapped: functools.update_wrapper(wrapper, wrapped)
    return copies


def _restricted_globals(copies: dict[str, types.ModuleType], refusals: list[str]) -> dict[str, object]:
    """The globals the restricted code runs with: RestrictedPython's hooks bound to guards that refuse
    underscore and frame attributes, real modules, field lookups in str.format and imports off the list."""
    from RestrictedPython.Guards import (
        full_write_guard,
        guarded_iter_unpack_sequence,
        guarded_unpack_sequence,
        raise_,
        safe_builtins,
        safer_getattr,
    )
    from RestrictedPython.PrintCollector import PrintCollector
    from RestrictedPython.transformer import INSPECT_ATTRIBUTES

    allowed_modules = {id(m) for m in copies.values()}

    def refuse(what: str) -> None:
        refusals.append(what)
        raise Refused(what)

    def check_fields(fmt: str) -> None:
        try:
            fields = list(string.Formatter().parse(fmt))
        except ValueError:
            return  # the real call raises the same error
        for _, field, spec, _ in fields:
            if field and ("." in field or "[" in field):
                refuse(f"format field {field!r}")
            if spec:
                check_fields(spec)

    def checked_format(text: str, name: str) -> object:
        method = getattr(text, name)

        def call(*args: object, **kwargs: object) -> str:
            check_fields(text)
            return method(*args, **kwargs)

        return call

    def guarded_getattr(obj: object, name: str, *default: object) -> object:
        if type(name) is not str:
            raise TypeError("attribute name must be a str")
        if name.startswith("_") or name in INSPECT_ATTRIBUTES:
            refuse(f"attribute {name!r}")
        if name in ("format", "format_map"):
            if isinstance(obj, str | collections.UserString):
                return checked_format(obj if isinstance(obj, str) else obj.data, name)
            if isinstance(obj, type) and issubclass(obj, str | collections.UserString):
                refuse(f"str.{name} on the class")
        if isinstance(obj, types.ModuleType):
            if id(obj) not in allowed_modules:
                refuse("a module off the list")
            if not hasattr(obj, name) and hasattr(sys.modules[obj.__name__], name):
                refuse(f"{obj.__name__}.{name}")
        value = safer_getattr(obj, name, *default) if default else safer_getattr(obj, name, raise_)
        if isinstance(value, types.ModuleType) and id(value) not in allowed_modules:
            refuse(f"module attribute {name!r}")
        return value

    def guarded_hasattr(obj: object, name: str) -> bool:
        try:
            guarded_getattr(obj, name)
        except AttributeError:
            return False
        return True

    def guarded_write(obj: object) -> object:
        # code may change its own objects and those of library classes (decimal.getcontext().prec = 50),
        # never a module or a class it did not define
        if isinstance(obj, types.ModuleType) or (isinstance(obj, type) and obj.__module__ != SANDBOX_MODULE):
            return full_write_guard(obj)
        return obj

    def guarded_setattr(obj: object, name: str, value: object) -> None:
        if type(name) is not str or name.startswith("_"):
            refuse(f"setattr {name!r}")
        setattr(guarded_write(obj), name, value)

    def guarded_delattr(obj: object, name: str) -> None:
        if type(name) is not str or name.startswith("_"):
            refuse(f"delattr {name!r}")
        delattr(guarded_write(obj), name)

    def guarded_import(name: str, globals=None, locals=None, fromlist=(), level=0) -> types.ModuleType:  # noqa: A002
        if level == 0 and name in _INTERNAL_IMPORTS and not fromlist:
            return None  # datetime's C code imports through the frame's builtins, then reads sys.modules
        if level != 0 or name not in copies:
            refuse(f"import of {name!r}")
        module = copies[name]
        for item in fromlist or ():
            if not hasattr(module, item):
                if hasattr(sys.modules[name], item):
                    refuse(f"{name}.{item}")
                raise ImportError(f"cannot import name {item!r} from {name!r}")
        return module

    def inplace_item(obj: object, key: object, op: str, value: object) -> None:
        guarded_write(obj)[key] = _INPLACE[op](obj[key], value)

    def inplace_attr(obj: object, name: str, op: str, value: object) -> None:
        guarded_setattr(obj, name, _INPLACE[op](guarded_getattr(obj, name), value))

    box = {n: v for n, v in safe_builtins.items() if n not in ("_getattr_", "setattr", "delattr")}
    box.update({n: getattr(builtins, n) for n in _PLAIN_BUILTINS})
    box.update(getattr=guarded_getattr, hasattr=guarded_hasattr, setattr=guarded_setattr)
    box.update(delattr=guarded_delattr, __import__=guarded_import)
    return {
        "__builtins__": box,
        "__name__": SANDBOX_MODULE,
        "__metaclass__": type,
        "_getattr_": guarded_getattr,
        "_getitem_": lambda obj, key: obj[key],
        "_getiter_": iter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_write_": guarded_write,
        "_inplacevar_": lambda op, x, y: _INPLACE[op](x, y),
        "_inplace_item_": inplace_item,  # tools/sandbox.py's policy: counts[w] += 1
        "_inplace_attr_": inplace_attr,  # self.n += 1
        "_apply_": lambda f, *args, **kwargs: f(*args, **kwargs),
        "_print_": PrintCollector,
    }


def _syscall(*args: int | object) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.syscall(*(ctypes.c_long(a) if isinstance(a, int) else a for a in args))


def _no_network() -> None:
    """A new, empty network namespace: as root directly, else inside a new user namespace where allowed."""
    libc = ctypes.CDLL(None, use_errno=True)
    clone_newnet, clone_newuser = 0x40000000, 0x10000000
    if libc.unshare(clone_newnet) != 0:
        libc.unshare(clone_newnet | clone_newuser)


def _no_filesystem() -> None:
    """Landlock: from here on no file or folder can be read, written, created or executed, no TCP port bound
    or connected (ABI 4+), no signal sent outside the process (ABI 6+). Silently nothing on older kernels."""
    create, restrict, version = 444, 446, 1  # the same syscall numbers on every architecture
    abi = _syscall(create, None, 0, version)
    if abi < 1:
        return
    fs = (1 << 13) - 1  # ABI 1: execute, write, read, read dir, remove and make anything
    fs |= (1 << 13 if abi >= 2 else 0) | (1 << 14 if abi >= 3 else 0) | (1 << 15 if abi >= 5 else 0)
    attr = (ctypes.c_uint64 * 3)(fs, 3 if abi >= 4 else 0, 3 if abi >= 6 else 0)
    fd = _syscall(create, ctypes.byref(attr), 8 if abi < 4 else 16 if abi < 6 else 24, 0)
    if fd < 0:
        return
    no_new_privs = 38  # PR_SET_NO_NEW_PRIVS, which Landlock requires of a process without CAP_SYS_ADMIN
    ctypes.CDLL(None).prctl(ctypes.c_int(no_new_privs), *(ctypes.c_ulong(a) for a in (1, 0, 0, 0)))
    _syscall(restrict, fd, 0)
    os.close(fd)


def _confine(cpu_seconds: int, memory_bytes: int) -> None:
    """Every layer the platform allows, each best-effort: network, filesystem, root, resource limits."""
    for step in (_no_network, _no_filesystem) if sys.platform.startswith("linux") else ():
        try:
            step()
        except (OSError, AttributeError, TypeError):
            pass
    if os.getuid() == 0:  # root ignores RLIMIT_NPROC; nobody does not
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
        except OSError:
            pass
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write then fails with an error instead of a kill
    limits = [
        (resource.RLIMIT_AS, memory_bytes, memory_bytes),
        (resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 1),
        (resource.RLIMIT_FSIZE, 0, 0),
        (resource.RLIMIT_NPROC, 0, 0),
        (resource.RLIMIT_CORE, 0, 0),
        (resource.RLIMIT_NOFILE, 16, 16),
    ]
    for what, soft, hard in limits:
        try:
            resource.setrlimit(what, (soft, hard))
        except (ValueError, OSError):
            pass  # e.g. RLIMIT_AS on macOS


def _execute(code: types.CodeType, env: dict[str, object], refusals: list[str]) -> str:
    try:
        exec(code, env)  # noqa: S102 - compiled by RestrictedPython, guarded globals, confined process
    except MemoryError:
        return "memory_limit"
    except BaseException as e:  # noqa: BLE001 - SystemExit and KeyboardInterrupt are the code's errors too
        error = type(e).__name__
    else:
        error = None
    if refusals:
        return f"refused: {refusals[0]}"
    return "ok" if error is None else f"runtime_error: {error}"


def main() -> None:
    """Read the payload, prepare, confine, run, report on the private pipe and leave at once (no exit hooks)."""
    rp_dir, cpu_seconds, memory_bytes, code = marshal.loads(sys.stdin.buffer.read())
    sys.path.append(rp_dir)  # -I -S: RestrictedPython's guards are not on the path otherwise
    refusals: list[str] = []
    env = _restricted_globals(_module_copies(), refusals)
    status = os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # stdin closed; a library's print (calendar.prmonth) cannot fake the status
        os.dup2(null, fd)
    _confine(cpu_seconds, memory_bytes)
    report = _execute(code, env, refusals)
    os.write(status, report.replace("\n", " ")[:300].encode("utf-8", "replace"))
    os._exit(0)


if __name__ == "__main__":
    main()
