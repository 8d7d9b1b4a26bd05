"""The sandbox for generated code: known escapes are refused or contained, legitimate snippets run.

Every test runs in its own empty working folder and checks afterwards that the folder is still empty, that
no canary file appeared in /tmp and that no process of the sandbox's sessions is left.
"""

from __future__ import annotations

import ctypes
import glob
import os
import subprocess
import sys

import pytest

from p2m.tools import sandbox
from p2m.tools.sandbox import _run_compiled, run_untrusted
from p2m.tools.seq_checks import check_code, run_snippet

CANARY = f"/tmp/p2m_pwned_{os.getpid()}"
LINUX = sys.platform.startswith("linux")


def _session_members(leader: int) -> list[int]:
    """Live processes in the session `leader` started (the sandbox's child leads its own)."""
    members = []
    for entry in os.listdir("/proc") if LINUX else ():
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[3] == str(leader):
            members.append(int(entry))
    return members


@pytest.fixture
def spawned(tmp_path, monkeypatch) -> list[int]:
    """The pids of the sandbox children a test starts; the checks run when the test ends."""
    pids: list[int] = []

    class Recording(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            pids.append(self.pid)

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sandbox.subprocess, "Popen", Recording)
    yield pids
    assert list(cwd.iterdir()) == []
    assert glob.glob(CANARY + "*") == []
    assert [p for pid in pids for p in _session_members(pid)] == []


# (code, the reason's start): each refused by the policy, refused by a run-time guard or contained
ESCAPES = [
    # underscore and module attributes of allowlisted modules
    (f"import random; random._os.system('touch {CANARY}')", "refused"),
    ("import random\ngetattr(random, '_' + 'os')", "refused"),
    (f"import json\njson.codecs.open('{CANARY}', 'w')", "refused"),
    (f"import statistics\nstatistics.sys.modules['os'].system('touch {CANARY}')", "refused"),
    ("from statistics import sys", "refused"),
    ("import datetime\nm = datetime.sys.modules", "refused"),
    ("import re\nre.enum", "refused"),
    ("from collections import abc", ""),
    ("import math\nmath.sqrt.__self__", "refused"),
    ("getattr(sorted, '__se' + 'lf__')", "refused"),
    # dunder chains
    ("().__class__.__bases__[0].__subclasses__()", "refused"),
    ("[].__class__.__mro__[-1].__subclasses__()", "refused"),
    ("(lambda: 0).__globals__['__builtins__']", "refused"),
    ("f = lambda: 0\nc = f.__code__", "refused"),
    ("__builtins__['open']('x', 'w')", "refused"),
    ("__import__('os').system('true')", "refused"),
    ("getattr((), '_' + '_class__')", "refused"),
    ("c = getattr(getattr(1, '__cl' + 'ass__'), '__ba' + 'ses__')", "refused"),
    ("setattr(1, '__cl' + 'ass__', str)", "refused"),
    ("x = 1\nx.__class__ += 1", "refused"),
    ("import json\njson.dumps += 1", "runtime_error"),  # a module is not written to
    # caught, still refused
    ("try:\n    getattr(1, '__cl' + 'ass__')\nexcept Exception:\n    pass", "refused"),
    # attribute access by name, around the guard
    ("import operator\noperator.attrgetter('__class__')(1)", "refused"),
    ("import operator\noperator.methodcaller('__reduce_ex__', 2)(1)", "refused"),
    ("import functools\nfunctools.partial(getattr, 1)('__cl' + 'ass__')", "refused"),
    ("list(map(getattr, [1], ['__cl' + 'ass__']))", "refused"),
    ("import json\njson.loads('{}', object_hook=lambda d: getattr(d, '__cl' + 'ass__'))", "refused"),
    # library functions that take attribute names or evaluate strings: update_wrapper(updated=("__globals__",))
    # would pour a library's globals (real builtins) into the code's; singledispatch evaluates annotations
    (
        "import functools\ndef f():\n    pass\nfunctools.update_wrapper(f, print, updated=('__globals__',))\n"
        "g = lambda: getattr(1, '__cl' + 'ass__')\ng()",
        "",
    ),
    (
        "import functools\nf = functools.singledispatch(print)\ndef g(x: '().__class__'):\n    pass\nf.register(g)",
        "refused",
    ),
    # str.format field lookups
    ("'{0.__class__.__mro__}'.format(1)", "refused"),
    ("'{x.__class__}'.format_map({'x': 1})", "refused"),
    ("import collections\ncollections.UserString('{0.__class__}').format(1)", "refused"),
    ("str.format('{0.__class__}', 1)", "refused"),
    ("'{0:{1.__class__}}'.format(1, 2)", "refused"),
    ("import string\nstring.Formatter().format('{0.__class__}', 1)", "refused"),
    ("f'{(1).__class__}'", "refused"),
    # namespaces and introspection builtins
    ("vars()", "refused"),
    ("globals()['__builtins__']", "refused"),
    ("locals()", "refused"),
    ("dir(1)", "refused"),
    ("type(1).mro()", "refused"),
    ("class M(type):\n    pass", "refused"),
    ("class A(metaclass=abs):\n    pass", "refused"),
    # decorators, lambdas and methods that smuggle calls
    ("def deco(f):\n    return getattr(f, '__glob' + 'als__')\n@deco\ndef g():\n    pass", "refused"),
    ("f = lambda g=getattr: g(1, '__cl' + 'ass__')\nf()", "refused"),
    ("class A:\n    def __eq__(self, o):\n        return getattr(o, '__cl' + 'ass__')\nA() == 1", "refused"),
    # frames: generators, tracebacks
    ("g = (x for x in [1])\ng.gi_frame.f_back.f_globals", "refused"),
    ("g = (x for x in [1])\nf = getattr(g, 'gi_' + 'frame')", "refused"),
    ("g = (x for x in [1])\nc = getattr(getattr(g, 'gi_code'), 'co_code')", "refused"),
    ("try:\n    1 / 0\nexcept Exception as e:\n    t = getattr(e, '__trace' + 'back__')", "refused"),
    # code execution and imports
    ("exec('import os')", "refused"),
    ("eval('1 + 1')", "refused"),
    ("compile('1', 'x', 'eval')", "refused"),
    ("open('/etc/passwd').read()", "refused"),
    ("import importlib", "refused"),
    ("import sys\nsys.modules['os']", "refused"),
    ("import os.path", "refused"),
    ("from os import system", "refused"),
    ("from . import sandbox", "refused"),
    ("import ctypes", "refused"),
    ("import socket\nsocket.create_connection(('127.0.0.1', 22))", "refused"),
    # processes: fork and thread bombs
    ("import os\nwhile True:\n    os.fork()", "refused"),
    ("import subprocess\nsubprocess.run(['true'])", "refused"),
    ("import multiprocessing", "refused"),
    ("import threading\nwhile True:\n    threading.Thread(target=lambda: None).start()", "refused"),
    ("import _thread", "refused"),
    # writes through the allowlist, interactive builtins
    (f"import json\njson.dump({{}}, open('{CANARY}', 'w'))", "refused"),
    (f"print('x', file=open('{CANARY}', 'w'))", "refused"),
    ("help()", "refused"),
    ("breakpoint()", "refused"),
    ("input()", "refused"),
    ("exit(0)", "refused"),
    # resources
    ("'a' * 10**10", "memory_limit"),
    ("x = [0] * 10**9", "memory_limit"),
    ("def f(n):\n    return f(n + 1)\nf(0)", "runtime_error: RecursionError"),
    ("raise SystemExit(0)", "runtime_error: SystemExit"),  # leaving early is not running cleanly
    ("import calendar\ncalendar.prmonth(2024, 1)\n1 / 0", "runtime_error: ZeroDivisionError"),  # prints
]
HANGS = ["while True:\n    pass", "import re\nre.match('(a+)+$', 'a' * 64 + 'b')"]  # Python loop, C loop

LEGIT = [
    "print(sum(range(1, 11)))",
    "print([x * x for x in range(10) if x % 2])",
    "print(sorted(['bb', 'a', 'ccc'], key=lambda s: -len(s)))",
    "s = 'Hello World'\nprint(s.lower().split(), '-'.join(s.split()), s.upper().count('L'))",
    "print('{} and {:.2f} {name}'.format('x', 3.14159, name='n'), '{0}-{1}'.format(1, 2))",
    "w = 8\nprint(f'{3.5!r:>{w}}')",
    "d = {'a': 1, 'b': 2}\nd['c'] = 3\nprint({k: v for k, v in d.items() if v > 1})",
    "import math\nprint(math.sqrt(16), math.pi, math.factorial(10))",
    "import re\nprint(re.sub(r'\\s+', ' ', 'a   b'), re.findall(r'\\d+', 'a1b22'))",
    "from collections import Counter, defaultdict\nprint(Counter('hello').most_common(1), defaultdict(int))",
    "import json\nprint(json.dumps({'a': [1, 2]}), json.loads('[1]'))",
    "import datetime\nd = datetime.date(2024, 1, 1) + datetime.timedelta(days=40)\nprint(d.isoformat())",
    "from datetime import datetime as dt\nprint(dt.strptime('2024-01-02', '%Y-%m-%d').year)",
    "import functools, itertools, operator\n"
    "print(functools.reduce(operator.mul, range(1, 6)), list(itertools.chain([1], [2])))",
    "import heapq, bisect, statistics\nprint(heapq.nsmallest(2, [3, 1, 2]), bisect.bisect([1, 3], 2), "
    "statistics.mean([1, 2, 3]))",
    "import random\nrandom.seed(1)\nprint(random.choice([1, 2, 3]), random.randint(1, 6))",
    "import decimal, fractions\ndecimal.getcontext().prec = 50\nprint(decimal.Decimal(1) / 7, fractions.Fraction(1, 3))",
    "import textwrap, string\nprint(textwrap.wrap('a b c d', 3), string.Template('$x').substitute(x=1))",
    "import operator\nprint(sorted([(1, 'b'), (0, 'a')], key=operator.itemgetter(1)))",
    "class Stack:\n    def __init__(self):\n        self.items = []\n    def push(self, x):\n"
    "        self.items.append(x)\ns = Stack()\ns.push(1)\nprint(s.items)",
    "import functools\ndef deco(g):\n    @functools.wraps(g)\n    def w(*a):\n        return g(*a)\n    return w\n"
    "@deco\ndef h(x):\n    return x\nprint(h(1), functools.lru_cache(maxsize=None)(abs)(-2))",
    "n = 0\nwhile n < 10:\n    n += 1\na, b = 1, 2\nfor i, (j, k) in enumerate([(1, 2)]):\n    n += i + j + k",
    "counts = {}\nfor w in 'a b a'.split():\n    counts[w] = counts.get(w, 0)\n    counts[w] += 1\n"
    "assert counts == {'a': 2, 'b': 1}",
    "class C:\n    def __init__(self):\n        self.n = 0\n    def inc(self):\n        self.n += 2\nc = C()\nc.inc()\n"
    "assert c.n == 2",
    "try:\n    int('x')\nexcept ValueError as e:\n    print('bad', e.args)",
    "print(max([3, 1]), min(1, 2), abs(-1), round(2.5), len('ab'), any([0, 1]), all([]), list(zip('ab', 'cd')))",
    "print(isinstance(1, int), tuple(reversed([1, 2])), set('aab'), bool(0), float('1.5'), str(1))",
]


@pytest.mark.parametrize(("code", "expected"), ESCAPES)
def test_escapes_are_refused_or_contained(code, expected, spawned):
    reason = run_untrusted(code, timeout=3)
    assert reason is not None and reason.startswith(expected), reason


@pytest.mark.parametrize("code", HANGS)
def test_hangs_are_killed_at_the_timeout(code, spawned):
    assert run_untrusted(code, timeout=1.5) == "timeout"
    assert spawned  # it did start a process, and the fixture checks it is gone


def test_growing_memory_stops_at_the_limit(spawned):
    # touching 512 MB takes about a second: a generous timeout, so a busy machine still hits the limit first
    assert run_untrusted("x = []\nwhile True:\n    x.append('a' * 10**7)", timeout=15) == "memory_limit"


def test_at_least_thirty_escapes():
    assert len(ESCAPES) >= 30


@pytest.mark.parametrize("code", LEGIT)
def test_legitimate_snippets_run(code, spawned):
    assert run_untrusted(code) is None


def test_policy_refusals_start_no_process(spawned):
    assert run_untrusted("import os").startswith("refused: import of 'os'")
    assert run_untrusted("x = ().__class__").startswith('refused: "__class__"')
    assert run_untrusted("open('f')") == "refused: name 'open' is not available"
    assert run_untrusted("x = (1,").startswith("syntax_error")
    assert spawned == []


def test_check_code_does_not_run_the_random_os_escape(spawned):
    code = 'import random; random._os.system("touch pwned")'
    assert check_code(code, request="make random system file") == ("refused", False)
    assert spawned == []  # refused by the policy, never started


def test_run_snippet_gives_short_tokens(spawned):
    assert run_snippet("print(1 / 0)") == "runtime_error"
    assert run_snippet("import os") == "refused"
    assert run_snippet("'a' * 10**10") == "memory_limit"
    assert run_snippet("print(1)") is None


# layer 2 alone: unrestricted code that already escaped the policy (the classic subclass walk to os)

_OS = "[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close'][0].__init__.__globals__"


def _landlock() -> bool:
    version_query = (ctypes.c_long(444), None, ctypes.c_long(0), ctypes.c_long(1))
    return LINUX and ctypes.CDLL(None).syscall(*version_query) >= 1


def _escaped(body: str) -> str | None:
    return _run_compiled(compile(f"os = {_OS}\n{body}", "<escaped>", "exec"), timeout=3)


@pytest.mark.skipif(not LINUX, reason="process limits are checked on Linux")
@pytest.mark.parametrize(
    "body",
    [
        "os['fork']()",  # RLIMIT_NPROC 0, and not root
        f"assert os['system']('touch {CANARY}') == 0",
        "os['sys'].modules['_thread'].start_new_thread(print, ())",  # threads count as processes too
    ],
)
def test_the_process_holds_when_the_policy_is_bypassed(body, spawned):
    assert _escaped(body).startswith("runtime_error"), body


@pytest.mark.skipif(not _landlock(), reason="needs Landlock (Linux 5.13+)")
@pytest.mark.parametrize(
    "body",
    [
        f"os['open']('{CANARY}', os['O_CREAT'] | os['O_WRONLY'])",
        "os['open']('here', os['O_CREAT'] | os['O_WRONLY'])",
        "os['open']('/etc/passwd', os['O_RDONLY'])",
        "os['listdir']('/')",
        "os['__builtins__']['__import__']('socket')",  # no new module can even be read
        "os['kill'](os['getppid'](), 0)",
    ],
)
def test_no_filesystem_when_the_policy_is_bypassed(body, spawned):
    assert _escaped(body).startswith("runtime_error"), body
