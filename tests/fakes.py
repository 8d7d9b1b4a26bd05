"""Test doubles behind the real interfaces: a scripted chat model and a loopback OpenAI-compatible server.

Both answer with `default_reply`, which plays a teacher that writes label-specific text, so the whole
pipeline runs offline in seconds and a student can actually learn from what it writes.
"""

from __future__ import annotations

import json
import random
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

# Words a fake teacher uses for each label: distinct enough for a student to separate them.
VOCAB = {
    "positive": "wonderful delightful moving superb charming brilliant loved joyful",
    "negative": "boring dull awful tedious messy painful hated clumsy",
    "billing": "invoice charged refund payment card subscription price receipt",
    "bug": "crash error broken freeze button fails exception glitch",
    "other": "office hours hello partnership question careers visit feedback",
}
_FILLER = "the this a my our today really very again now".split()


def label_text(label: str, seed: int) -> str:
    rng = random.Random(f"{label}-{seed}")
    words = VOCAB.get(label.lower(), f"{label} {label}ish {label}y").split()
    picked = (
        rng.sample(words, k=min(3, len(words))) + rng.sample(_FILLER, k=3) + [f"item{rng.randint(0, 10**6)}"]
    )
    rng.shuffle(picked)
    return " ".join(picked)


def default_reply(messages: list[tuple[str, str]], params: dict[str, Any]) -> str:
    """What the fake teacher says: JSON when a schema is asked for, text otherwise."""
    user = next((c for r, c in reversed(messages) if r == "user"), "")
    fmt = params.get("response_format") or {}
    schema = fmt.get("schema") or (fmt.get("json_schema") or {}).get("schema") or {}
    props = schema.get("properties", {})
    if "answer" in props:  # constrained choice
        options = props["answer"]["enum"]
        hit = next((o for o in options for w in VOCAB.get(o, "").split() if w in user.lower()), options[0])
        return json.dumps({"answer": hit})
    seq = _seq_reply(user, props, params.get("seed") or 0)
    if seq is not None:
        return seq
    if "text" in props:  # generation: "Write a new {label} {kind}."
        m = re.search(r"Write a new (.+?) [a-z][\w -]*\.", user)
        label = m.group(1) if m else "other"
        return json.dumps({"text": label_text(label, params.get("seed") or 0)})
    if "task_type" in props:
        return json.dumps({"task_type": "classification", "labels": []})
    return "ok"


_NAMES = (
    "Alder Birch Cedar Dover Elm Fenwick Garnet Holm Ivy Juniper Kestrel Linden Marlow Norton Oakley".split()
)
_VALUES = {
    "food": ["French", "Japanese", "fitness"],
    "eat type": ["restaurant", "fees"],
    "area": ["city centre"],
}
_OPS = ("add {n} to every number in xs", "print the sum of the numbers from 1 to {n}", "repeat the string s {n} times",
        "print {n} squared", "keep the words of text longer than {n} letters")  # fmt: skip
_CODE = ("ys = [x + {n} for x in xs]", "print(sum(range(1, {n} + 1)))", "r = s * {n}", "print({n} ** 2)",
         "long = [w for w in text.split() if len(w) > {n}]")  # fmt: skip


def _seq_reply(user: str, props: dict[str, Any], seed: int) -> str | None:
    """The fake teacher's answers to the QA, code, data-to-text and text-generation requests (None: not one)."""
    rng = random.Random(seed)
    if "Some values of the field" in user:  # {"values": [...]} for one field of a record
        field = re.search(r'field "([^"]+)"', user).group(1)
        return json.dumps(
            {"values": _VALUES.get(field, ["fitness", "love"])}
        )  # a 135M teacher's off-topic ones
    if "passage" in props:
        town, person = rng.sample(_NAMES, 2)
        year, n = rng.randint(1500, 1990), rng.randint(2, 900)
        return json.dumps({"passage": f"The town of {town} was founded in {year} by a farmer. Its market has {n} stalls"
                           f" and is run by {person} Smith. Visitors come every summer for the music festival."})  # fmt: skip
    if "question" in props:  # 'Passage: … / … whose answer is exactly "X".'
        m = re.search(r'answer is exactly "(.+)"', user)
        answer = m.group(1) if m else ""
        passage = user.split("\n")[0].removeprefix("Passage: ")
        sentence = next((x for x in re.split(r"(?<=\.) ", passage) if answer and answer in x), passage)
        return json.dumps({"question": sentence.replace(answer, "what").rstrip(".") + "?"})
    if "request" in props:  # a code request
        return json.dumps({"request": _OPS[seed % len(_OPS)].format(n=seed % 97 + 2)})
    if props:
        return None
    # plain completions: "… Write one more input like these …" or "… Input: X [hint] Output:"
    if "Write one more input like these:" in user:  # a text-generation input
        return label_text("item", seed)
    inputs = re.findall(r"Input: (.+)", user)
    if not inputs or not user.rstrip().endswith("Output:"):
        return None
    last = inputs[-1].strip()
    if "Write one fluent sentence that includes" in user:  # data to text: "Input: name[X], area[Y]"
        rec = re.findall(r"(\w[\w ]*?)\[([^\]]*)\]", last)
        words = [re.sub(r"([a-z])([A-Z])", r"\1 \2", f).lower() + " " + v for f, v in rec]
        return "The place has " + ", ".join(words) + ".\nInput: more"
    for op, code in zip(_OPS, _CODE, strict=True):
        m = re.fullmatch(re.escape(op).replace(r"\{n\}", r"(\d+)"), last)
        if m:
            return code.format(n=m.group(1)) + "\n\nRequest: next"
    return " ".join(last.split()[:3][::-1])


class FakeChatModel(BaseChatModel):
    """A LangChain chat model with scripted replies and a record of every request.

    `enqueue(text)` queues exact replies; after the queue, `responder(messages, params)` answers.
    """

    responder: Callable[[list[tuple[str, str]], dict[str, Any]], str] = default_reply
    queue: list[str] = Field(default_factory=list)
    history: list[dict[str, Any]] = Field(default_factory=list)

    def enqueue(self, *texts: str) -> None:
        self.queue.extend(texts)

    @property
    def _llm_type(self) -> str:
        return "fake"

    def _generate(
        self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        pairs = [
            ({"system": "system", "human": "user", "ai": "assistant"}[m.type], str(m.content))
            for m in messages
        ]
        self.history.append({"messages": pairs, "params": kwargs})
        text = self.queue.pop(0) if self.queue else self.responder(pairs, kwargs)
        msg = AIMessage(
            content=text, usage_metadata={"input_tokens": 20, "output_tokens": 10, "total_tokens": 30}
        )
        return ChatResult(generations=[ChatGeneration(message=msg)])


FAULTS = ("http_500", "timeout", "cut_body", "invalid_json", "empty")


class FakeOpenAIServer:
    """An OpenAI-compatible chat server on 127.0.0.1 (a free port) answering with `default_reply`.

    `delay` slows every answer (for interrupt tests); `requests` counts chat requests; `responder`
    replaces `default_reply`; `answered` holds a digest of each request body answered in full.
    `fail_rate` makes that share of requests fail, drawn from a seeded generator, in turn as each of
    FAULTS: HTTP 500 (with `Retry-After: 0`), no answer for `hang` seconds (a client timeout), a body cut
    short, a truncated JSON answer, an empty answer; `faults` counts them by kind. `die_on_chat` (a
    signal) makes the whole process kill itself with it on a chat request (a crashing llama.cpp build).
    """

    def __init__(self, delay: float = 0.0, responder: Callable[..., str] | None = None, *, port: int = 0,
                 fail_rate: float = 0.0, hang: float = 3.0, seed: int = 0, die_on_chat: int | None = None) -> None:  # fmt: skip
        import hashlib
        import os
        import time
        from collections import Counter

        outer = self
        self.delay = delay
        self.responder = responder or default_reply
        self.requests = 0
        self.answered: list[str] = []
        self.faults: Counter[str] = Counter()
        rng, lock = random.Random(seed), threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def _send(self, code: int, body: dict[str, Any], headers: dict[str, str] | None = None,
                      cut: bool = False) -> None:  # fmt: skip
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data[: len(data) // 2] if cut else data)
                if cut:
                    self.close_connection = True

            def do_GET(self) -> None:  # noqa: N802
                self._send(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}"
                body = json.loads(raw)
                with lock:
                    outer.requests += 1
                    fault = (
                        FAULTS[sum(outer.faults.values()) % len(FAULTS)] if rng.random() < fail_rate else None
                    )
                    if fault:
                        outer.faults[fault] += 1
                if die_on_chat:
                    os.kill(os.getpid(), die_on_chat)
                    time.sleep(5)  # the signal ends the process before an answer leaves
                if outer.delay:
                    time.sleep(outer.delay)
                if fault == "http_500":
                    self._send(500, {"error": {"message": "overloaded", "type": "server_error", "code": None}},
                               {"Retry-After": "0"})  # fmt: skip
                    return
                if fault == "timeout":
                    time.sleep(hang)
                    return
                pairs = [(m["role"], m["content"]) for m in body.get("messages", [])]
                text = outer.responder(pairs, body)
                if fault == "invalid_json":
                    text = (text or "")[: max(1, len(text or "") // 2)]
                elif fault == "empty":
                    text = ""
                self._send(200, {
                    "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": body.get("model", "fake"),
                    # a truncated answer is what a server sends when max_tokens cuts it: finish_reason "length"
                    "choices": [{"index": 0, "finish_reason": "length" if fault == "invalid_json" else "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30},
                }, cut=fault == "cut_body")  # fmt: skip
                if fault != "cut_body":
                    with lock:
                        outer.answered.append(hashlib.sha1(raw).hexdigest())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def main() -> None:
    """`python tests/fakes.py --port N [--delay S] [--die-on-chat SIGILL] [--fail-rate 0.3]`: the fake server
    as a process, for tests of the embedded server's start, death and restart (tools/llm_server.py) and for
    fault-injection runs of `p2m bench --llm` (bench/RESULTS.md)."""
    import argparse
    import signal

    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--die-on-chat", choices=["SIGILL", "SIGSEGV", "SIGKILL"])
    ap.add_argument("--exit-at-start", type=int)
    ap.add_argument("--fail-rate", type=float, default=0.0, help="share of requests that fail (see FAULTS)")
    ap.add_argument(
        "--hang", type=float, default=3.0, help="seconds a 'timeout' failure keeps the client waiting"
    )
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.exit_at_start is not None:
        print("fake llama.cpp: cannot load the model", flush=True)
        raise SystemExit(a.exit_at_start)
    die = getattr(signal, a.die_on_chat) if a.die_on_chat else None
    print(f"fake llama.cpp server on port {a.port}", flush=True)
    FakeOpenAIServer(delay=a.delay, port=a.port, die_on_chat=die, fail_rate=a.fail_rate, hang=a.hang,
                     seed=a.seed).httpd.serve_forever()  # fmt: skip


if __name__ == "__main__":
    main()
