"""The web app in a real browser: Playwright drives Chromium against `p2m ui` on a free loopback port.

The UI process talks to the loopback fake teacher with tiny budgets, so a run finishes in seconds; for
a task that writes text (data-to-text), the UI process trains the memorising stand-in students of
tests/test_pipeline_seq.py instead of SmolLM2 (the real ones are tested in tests/test_train_seq.py).
Screenshots are saved as artifacts under artifacts/screenshots/ (git-ignored), or under $P2M_SCREENSHOTS:
`P2M_SCREENSHOTS=docs/screenshots pytest tests/test_ui_browser.py` refreshes the walkthrough's pictures.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.fakes import FakeOpenAIServer, default_reply
from tests.helpers import closed_port
from tests.test_chat_cli import MEMO_P2M
from tests.test_generate_seq import D2T_PROMPT

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(
    os.environ.get("P2M_SCREENSHOTS") or Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
)
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]  # fmt: skip
TASK = "Classify customer support tickets as billing, bug or other.\n\nInput: I was charged twice\nOutput: billing"
SLOW = 120_000  # ms: a run on 2 shared cores
ROOT = Path(__file__).resolve().parents[1]


def _noisy(messages, params):
    """A teacher whose 'other' examples sometimes read like billing ones: scores below 1 that move."""
    reply = default_reply(messages, params)
    if "Write a new other" in messages[-1][1] and (params.get("seed") or 0) % 3 == 0:
        return json.dumps({"text": json.loads(reply)["text"] + " invoice charged payment"})
    return reply


@contextlib.contextmanager
def _ui(tmp_path: Path, memo: bool = False):
    """`p2m ui` on a free port against the loopback fake teacher; yields its URL."""
    pytest.importorskip("playwright", reason="pip install -e '.[dev]' installs playwright")
    if not Path(CHROMIUM).exists():
        pytest.skip(
            "Chromium is not installed (`make test` installs it when run as root: apt-get install chromium)"
        )
    with FakeOpenAIServer(responder=_noisy) as teacher:
        port = closed_port()
        env = {**os.environ, "P2M_HOME": str(tmp_path / "home"), "GRADIO_ANALYTICS_ENABLED": "False",
               "PYTHONPATH": str(ROOT)}  # fmt: skip
        log = open(tmp_path / "ui.log", "w")  # noqa: SIM115
        start = [sys.executable, "-c", MEMO_P2M] if memo else [sys.executable, "-m", "p2m.agent.cli"]
        proc = subprocess.Popen(
            [*start, "ui", "--port", str(port), "--llm", teacher.url, "--llm-model", "fake", "--examples", "30",
             "--gen-minutes", "0", "--no-finetune", "--no-retrieve"],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}/"
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    log.close()
                    pytest.fail("p2m ui did not start:\n" + (tmp_path / "ui.log").read_text()[-3000:])
                time.sleep(0.5)
        try:
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
            print((tmp_path / "ui.log").read_text()[-3000:])


@pytest.fixture
def ui_url(tmp_path):
    with _ui(tmp_path) as url:
        yield url


@pytest.fixture
def seq_ui_url(tmp_path):
    with _ui(tmp_path, memo=True) as url:
        yield url


def test_chat_refine_demo_and_data_in_a_browser(ui_url, tmp_path) -> None:
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        chat = page.locator("#chat")

        def shot(name: str) -> None:
            page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

        def say(text: str) -> None:
            page.locator("#message textarea").fill(text)
            page.locator("#send").click()
            expect(page.locator("#message textarea")).to_have_value("", timeout=30_000)  # sent

        page.goto(ui_url)
        expect(page.locator("#status")).to_contain_text("No task yet", timeout=30_000)
        page.locator("#message textarea").fill(TASK)
        shot("01-describe-the-task")
        page.locator("#send").click()
        expect(chat).to_contain_text("Version 1 trained", timeout=SLOW)
        expect(page.locator("#status")).to_contain_text("v1 — accuracy", timeout=30_000)
        expect(page.locator("#status")).to_contain_text("teacher-written rows")
        shot("02-first-version")
        page.evaluate("""() => { for (const e of document.querySelectorAll('#chat *'))
                                   if (e.scrollHeight > e.clientHeight + 20) e.scrollTop = 0; }""")
        shot("02b-restated-task-and-sample")

        say("add a label refund")
        expect(chat).to_contain_text("Version 2 trained", timeout=SLOW)
        expect(chat).to_contain_text("F1 refund")
        expect(page.locator("#status")).to_contain_text("v2 — accuracy", timeout=30_000)
        expect(page.locator("#versions")).to_contain_text("added refund", timeout=30_000)
        page.evaluate("""() => { for (const e of document.querySelectorAll('#chat *'))
                                   if (e.scrollHeight > e.clientHeight + 20) e.scrollTop = e.scrollHeight; }""")
        shot("03-refined-add-a-label")

        # markup in a message is shown as text and never runs
        say('<img src=x onerror="window.__xss=1"><script>window.__xss=2</script> <b>bold?</b>')
        expect(chat).to_contain_text("<script>window.__xss=2</script>", timeout=30_000)
        expect(chat).to_contain_text("I did not understand", timeout=30_000)
        expect(chat).to_contain_text("text -> label lines")  # the help shows arrows as typed, not as entities
        assert page.evaluate("window.__xss") is None and not dialogs

        # an empty message, markup in data, a malformed upload: clear replies, nothing runs, nothing is lost
        say("   ")
        expect(chat).to_contain_text("Your message is empty", timeout=30_000)
        say("<script>window.__xss=3</script> money back please -> refund")
        expect(chat).to_contain_text("Version 3 trained", timeout=SLOW)
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"input": "no output here"}\n')
        page.locator("#upload input[type=file], input[type=file]").first.set_input_files(str(bad))
        expect(chat).to_contain_text("Error: bad.jsonl line 1 is not a JSON object", timeout=30_000)
        assert page.evaluate("window.__xss") is None and not dialogs

        page.get_by_role("tab", name="Demo").click()
        page.locator("#demo-in textarea").fill("please refund the payment on my card")
        page.locator("#classify").click()
        expect(page.locator("#demo-out textarea")).not_to_have_value("", timeout=30_000)
        assert page.locator("#demo-out textarea").input_value() in ("billing", "bug", "other", "refund")
        shot("04-demo")

        page.get_by_role("tab", name="Data").click()
        table = page.locator("#data-table")
        expect(table).to_contain_text("generated:", timeout=30_000)
        table.locator("[role=gridcell]", has_text="generated:").first.click()
        expect(page.locator("#drop-ids textarea, #drop-ids input").first).not_to_have_value(
            "", timeout=10_000
        )
        page.locator("#drop").click()
        expect(page.locator("#drop-msg")).to_contain_text("Dropped 1 example", timeout=30_000)
        expect(table).to_contain_text("user: dropped by hand", timeout=30_000)
        expect(table).to_contain_text(
            "<script>window.__xss=3</script> money back please"
        )  # data shown as text
        assert page.evaluate("window.__xss") is None
        shot("05-data-drop-an-example")

        # a reload and a second tab re-attach to the same session; nothing is lost
        page.reload()
        expect(chat).to_contain_text("Version 2 trained", timeout=30_000)
        other = browser.new_page(viewport={"width": 1400, "height": 1000})
        other.goto(ui_url)
        expect(other.locator("#chat")).to_contain_text("Dropped 1 example", timeout=30_000)
        other.close()

        page.get_by_role("tab", name="Download & history").click()
        page.locator("#prepare-download").click()
        expect(page.locator("#download")).to_contain_text(".zip", timeout=60_000)
        page.locator("button", has_text="List sessions").click()
        expect(page.locator("#runs")).to_contain_text("classify-customer-support", timeout=30_000)
        shot("06-download-and-history")
        browser.close()


def test_a_data_to_text_task_in_a_browser(seq_ui_url, tmp_path) -> None:
    """A task that writes text: chat, a style, the user's examples held out as real rows, both estimates
    (real rows first) in the status, the version table and the plot, and the demo."""
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        chat, status, versions = page.locator("#chat"), page.locator("#status"), page.locator("#versions")

        def say(text: str) -> None:
            page.locator("#message textarea").fill(text)
            page.locator("#send").click()
            expect(page.locator("#message textarea")).to_have_value("", timeout=30_000)

        page.goto(seq_ui_url)
        expect(status).to_contain_text("No task yet", timeout=30_000)
        say(D2T_PROMPT)
        expect(chat).to_contain_text("Task v1: data to text", timeout=30_000)
        expect(chat).to_contain_text("Version 1 trained", timeout=SLOW)
        expect(status).to_contain_text("v1 — chrF++", timeout=30_000)
        text = status.inner_text()
        assert text.index("real rows") < text.index("teacher-written rows") and "90%" in text
        expect(versions).to_contain_text("chrF++", timeout=30_000)
        expect(page.locator("#plot img")).to_be_visible(timeout=30_000)

        say("use a formal tone")
        expect(chat).to_contain_text("Use a formal tone.", timeout=30_000)
        expect(chat).to_contain_text("Version 2 trained", timeout=SLOW)
        expect(versions).to_contain_text("style: Use a formal tone.", timeout=30_000)

        mine = tmp_path / "records.jsonl"
        rows = [("name[Cotto], food[Thai], area[riverside]", "Cotto serves Thai food by the river."),
                ("name[Loch Fyne], eatType[pub]", "Loch Fyne is a pub."),
                ("name[Strada], area[city centre]", "Strada is in the city centre.")]  # fmt: skip
        mine.write_text("\n".join(json.dumps({"input": x, "output": y}) for x, y in rows))
        page.locator("#upload input[type=file], input[type=file]").first.set_input_files(str(mine))
        expect(chat).to_contain_text("I keep 1 of them to check the model on", timeout=30_000)
        expect(chat).to_contain_text("Version 3 trained", timeout=SLOW)
        expect(status).to_contain_text(
            "on 3 real rows", timeout=30_000
        )  # two demonstrations and the held-out one
        expect(versions).to_contain_text("3 rows; 90%", timeout=30_000)
        page.screenshot(path=str(SHOTS / "07-data-to-text-versions.png"), full_page=True)

        page.get_by_role("tab", name="Data").click()
        expect(page.locator("#data-table")).to_contain_text("user:records.jsonl", timeout=30_000)
        expect(page.locator("#data-table")).to_contain_text("validation")

        page.get_by_role("tab", name="Demo").click()
        page.locator("#demo-in textarea").fill("name[Cotto], food[Thai], area[riverside]")
        page.locator("#classify").click()
        expect(page.locator("#demo-out textarea")).to_have_value("Cotto serves Thai food by the river.",
                                                                  timeout=30_000)  # fmt: skip
        page.screenshot(path=str(SHOTS / "08-data-to-text-demo.png"), full_page=True)
        browser.close()
