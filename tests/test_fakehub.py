"""The fake Hub (tests/fakehub.py) driven by the real huggingface_hub 2.4 client, offline and fast.

What it takes for huggingface_hub 2.4 to talk to a FakeHub inside a pytest process:

* `HF_HUB_OFFLINE`: conftest sets it to 1 and huggingface_hub reads it once, at import, into
  `huggingface_hub.constants.HF_HUB_OFFLINE`; the request hook checks that constant, so set the env var to "0"
  AND monkeypatch `constants.HF_HUB_OFFLINE = False` (see the `online` fixture).
* `HF_HUB_CACHE` is likewise frozen at import into `constants.HF_HUB_CACHE` (the default `cache_dir` of
  `hf_hub_download`): patch the constant too, or pass `cache_dir=`.
* Endpoint: pass `endpoint=hub.url` to `HfApi(...)` and `hf_hub_download(...)`; nothing else is needed.
  `HF_ENDPOINT` set after import has no effect: it was read at import into `constants.ENDPOINT` and
  `constants.HUGGINGFACE_CO_URL_TEMPLATE`. Patching `constants.ENDPOINT` alone is enough for `HfApi()` but NOT
  for `hf_hub_download()` without `endpoint=` (it builds URLs from the template), so patch both (see
  `test_patched_constants_without_endpoint_argument`). A fresh process with `HF_ENDPOINT` set works unchanged.
* Timeouts: pagination (`list_datasets`, `list_models`, `list_repo_tree`) sends every request with an explicit
  `timeout=None`, so a stalled Hub hangs it, and a client-level `httpx2.Client(timeout=...)` is overridden.
  What works: `huggingface_hub.set_client_factory(...)` with a request event hook that sets
  `request.extensions["timeout"]` (see `short_timeout`). `hf_hub_download` has its own timeouts
  (`etag_timeout=`, and `constants.HF_HUB_ETAG_TIMEOUT` / `HF_HUB_DOWNLOAD_TIMEOUT`, ints read at import);
  `dataset_info`/`model_info` take `timeout=`. Listing errors 429/5xx and timeouts are retried 5 times with
  1-8 s sleeps (`huggingface_hub.utils._http.time.sleep`); the tests stub that sleep.
* huggingface_hub 2.4's `list_datasets`/`list_models` have no `direction` argument (TypeError); the Hub sorts
  descending.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import HfApi, ModelCardData, constants, hf_hub_download, hf_hub_url, set_client_factory
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError
from huggingface_hub.utils import _http

from tests.fakehub import FakeHub, default_snapshot

SNAPSHOT = default_snapshot()
needs_snapshot = pytest.mark.skipif(not SNAPSHOT.is_dir(), reason=f"no hub snapshot at {SNAPSHOT}")

README = "---\nlicense: mit\ntask_categories:\n- text-classification\n---\n# Toy reviews\nTiny review set.\n"
REVIEWS = (("great film", 1), ("dull plot", 0), ("loved it", 1))
TRAIN = "".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in REVIEWS).encode()


def _rows(name: str, n: int) -> list[dict]:
    with (SNAPSHOT / name).open(encoding="utf-8") as f:
        return [json.loads(next(f)) for _ in range(n)]


def _parquet() -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"text": ["a", "b"], "label": [0, 1]}), sink)
    return sink.getvalue().to_pybytes()


def _pages(hub: FakeHub, kind: str) -> int:
    return hub.requests.count(("GET", f"/api/{kind}"))


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Lift conftest's offline mode for huggingface_hub and point its cache at tmp_path; returns the cache."""
    cache = tmp_path / "hf_cache"
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Stub huggingface_hub's retry back-off sleeps (only in its http module); returns the waits asked for."""
    waits: list[float] = []
    monkeypatch.setattr(_http, "time", SimpleNamespace(sleep=waits.append))
    return waits


@pytest.fixture
def hub(online: Path) -> Iterator[FakeHub]:
    with FakeHub(max_datasets=120, max_models=130, page_size=50) as fake:
        fake.add_dataset_files(
            "p2m-test/toy-reviews",
            {"README.md": README, "data/train.jsonl": TRAIN, "data/test.csv": "text,label\nok,1\n"},
        )
        fake.add_dataset_files("p2m-test/toy-reviews", {"data/extra.parquet": _parquet()})
        yield fake


@needs_snapshot
def test_list_datasets_paginates_whole_catalog_newest_first(hub: FakeHub) -> None:
    items = list(HfApi(endpoint=hub.url).list_datasets(full=True, sort="last_modified"))
    rows = {r["id"]: r for r in _rows("datasets.jsonl", 120)}
    assert [i.id for i in items] == ["p2m-test/toy-reviews", *reversed(list(rows))]  # added repo is newest
    assert _pages(hub, "datasets") == 3  # 121 entries in pages of 50
    stamps = [i.last_modified for i in items]
    assert stamps == sorted(stamps, reverse=True) and len(set(stamps)) == len(stamps)
    by_id = {i.id: i for i in items}
    ag = by_id["ag_news"]
    assert ag.card_data.task_categories == rows["ag_news"]["task_categories"] == ["text-classification"]
    assert "task_categories:text-classification" in ag.tags
    assert ag.description == rows["ag_news"]["description"] and len(ag.sha) == 40
    assert [s.rfilename for s in ag.siblings] == [".gitattributes", "README.md"]
    assert by_id["p2m-test/toy-reviews"].card_data.license == "mit"


@needs_snapshot
def test_list_models_paginates_with_card_data(hub: FakeHub) -> None:
    api = HfApi(endpoint=hub.url)
    items = list(api.list_models(full=True, cardData=True, sort="last_modified"))
    rows = _rows("models.jsonl", 130)
    assert sorted(i.id for i in items) == sorted(r["id"] for r in rows) and _pages(hub, "models") == 3
    by_id = {i.id: i for i in items}
    for row in rows:
        info = by_id[row["id"]]
        card = info.card_data or ModelCardData()  # the Hub sends no cardData for a card without metadata
        assert card.license == (row["license"] or None) and (card.datasets or []) == row["datasets"]
        assert info.pipeline_tag == row["pipeline_tag"] and info.downloads == (row["downloads"] or 0)
        assert info.safetensors is None and info.last_modified is not None
        assert all(f"dataset:{d}" in info.tags for d in row["datasets"])
    assert len(list(api.list_models(sort="downloads", limit=70))) == 70 and _pages(hub, "models") == 5
    assert list(api.list_models(limit=3))[0].card_data is None  # no cardData unless asked


@needs_snapshot
def test_search_filter_and_limit(hub: FakeHub) -> None:
    api = HfApi(endpoint=hub.url)
    found = [d.id for d in api.list_datasets(search="QA")]
    assert found and all("qa" in i.lower() for i in found)
    tagged = {d.id for d in api.list_datasets(task_categories="text-classification")}
    assert {"ag_news", "p2m-test/toy-reviews"} <= tagged
    assert len(list(api.list_datasets(limit=7))) == 7


def test_dataset_info_siblings_and_tree(hub: FakeHub) -> None:
    api = HfApi(endpoint=hub.url)
    info = api.dataset_info("p2m-test/toy-reviews", files_metadata=True)
    files = [".gitattributes", "README.md", "data/extra.parquet", "data/test.csv", "data/train.jsonl"]
    assert [s.rfilename for s in info.siblings] == files
    assert {s.rfilename: s.size for s in info.siblings}["data/train.jsonl"] == len(TRAIN)
    assert info.card_data.task_categories == ["text-classification"] and info.description.startswith("# Toy")
    assert api.dataset_info("p2m-test/toy-reviews", revision=info.sha).sha == info.sha
    assert api.list_repo_files("p2m-test/toy-reviews", repo_type="dataset") == files
    top = {e.path: type(e).__name__ for e in api.list_repo_tree("p2m-test/toy-reviews", repo_type="dataset")}
    assert top == {".gitattributes": "RepoFile", "README.md": "RepoFile", "data": "RepoFolder"}
    sub = api.list_repo_tree("p2m-test/toy-reviews", "data", repo_type="dataset")
    assert sorted(e.path for e in sub) == files[2:]


def test_hf_hub_download_fills_cache_and_loads(hub: FakeHub, online: Path, tmp_path: Path) -> None:
    sha = HfApi(endpoint=hub.url).dataset_info("p2m-test/toy-reviews").sha
    path = hf_hub_download("p2m-test/toy-reviews", "data/train.jsonl", repo_type="dataset", endpoint=hub.url)
    repo_dir = online / "datasets--p2m-test--toy-reviews"
    assert Path(path) == repo_dir / "snapshots" / sha / "data" / "train.jsonl"
    assert Path(path).read_bytes() == TRAIN and (repo_dir / "refs" / "main").read_text() == sha
    resolve = "/datasets/p2m-test/toy-reviews/resolve/main/data/train.jsonl"
    assert [m for m, p in hub.requests if p == resolve] == ["HEAD", "GET"]
    again = hf_hub_download("p2m-test/toy-reviews", "data/train.jsonl", repo_type="dataset", endpoint=hub.url)
    assert again == path and [m for m, p in hub.requests if p == resolve] == ["HEAD", "GET", "HEAD"]

    import datasets

    rows = datasets.load_dataset("json", data_files=path, cache_dir=str(tmp_path / "ds"))["train"]
    assert rows.num_rows == 3 and rows[0] == {"text": "great film", "label": 1}
    parquet = hf_hub_download(
        "p2m-test/toy-reviews", "data/extra.parquet", repo_type="dataset", endpoint=hub.url
    )
    assert pq.read_table(parquet).column("label").to_pylist() == [0, 1]


@needs_snapshot
def test_snapshot_repos_serve_their_readme(hub: FakeHub) -> None:
    model = _rows("models.jsonl", 1)[0]
    text = Path(hf_hub_download(model["id"], "README.md", endpoint=hub.url)).read_text()
    assert model["card_front_matter"] in text and text.endswith(model["description"])
    card = HfApi(endpoint=hub.url).model_info(model["id"]).card_data
    assert card.license == model["license"] and card.datasets == model["datasets"]


def test_unknown_repo_and_file(hub: FakeHub) -> None:
    api = HfApi(endpoint=hub.url)
    with pytest.raises(RepositoryNotFoundError):
        api.dataset_info("nobody/nothing")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("nobody/nothing")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("nobody/nothing", "README.md", repo_type="dataset", endpoint=hub.url)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("p2m-test/toy-reviews", "missing.csv", repo_type="dataset", endpoint=hub.url)
    with pytest.raises(TypeError):  # huggingface_hub 2.4 dropped `direction`
        api.list_datasets(direction=-1)  # type: ignore[call-arg]


def test_patched_constants_without_endpoint_argument(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    assert HfApi().dataset_info("p2m-test/toy-reviews").id == "p2m-test/toy-reviews"
    assert hf_hub_url("a/b", "f", repo_type="dataset").startswith(
        constants._HF_DEFAULT_ENDPOINT
    )  # not enough
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    path = hf_hub_download("p2m-test/toy-reviews", "data/train.jsonl", repo_type="dataset")
    assert Path(path).read_bytes() == TRAIN


def test_hf_endpoint_env_in_fresh_process(hub: FakeHub, tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        from huggingface_hub import HfApi, hf_hub_download
        print(len(list(HfApi().list_datasets(search="toy"))))
        print(open(hf_hub_download("p2m-test/toy-reviews", "data/train.jsonl", repo_type="dataset")).read())
        """
    )
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HUB_CACHE": str(tmp_path / "c")}
    env.pop("TRANSFORMERS_OFFLINE", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"1\n{TRAIN.decode()}\n"


@needs_snapshot
def test_listing_error_mid_way(hub: FakeHub, sleeps: list[float]) -> None:
    hub.fail_listing_after(pages=1, status=500)
    seen = []
    with pytest.raises(HfHubHTTPError) as err:
        for item in HfApi(endpoint=hub.url).list_datasets(full=True):
            seen.append(item.id)
    assert err.value.response.status_code == 500 and len(seen) == 50
    assert _pages(hub, "datasets") == 1 + 6 and len(sleeps) == 5  # first page, then 1 try + 5 retries


@needs_snapshot
def test_listing_error_recovers_after_retry(hub: FakeHub, sleeps: list[float]) -> None:
    hub.fail_listing_after(pages=2, status=503, times=1)
    assert len(list(HfApi(endpoint=hub.url).list_datasets())) == 121 and len(sleeps) == 1


def _cap_timeout(request: httpx2.Request) -> None:
    """Request hook: a 0.2 s timeout, even where huggingface_hub passes `timeout=None` (pagination does)."""
    request.extensions = {**request.extensions, "timeout": httpx2.Timeout(0.2).as_dict()}


@pytest.fixture
def short_timeout() -> Iterator[None]:
    """huggingface_hub's shared client with a 0.2 s timeout on every request, restored afterwards."""
    hooks = {"request": [_http.hf_request_event_hook, _cap_timeout]}
    set_client_factory(lambda: httpx2.Client(event_hooks=hooks, follow_redirects=True, timeout=None))
    yield
    set_client_factory(_http.default_client_factory)


@needs_snapshot
def test_listing_stall_times_out(hub: FakeHub, sleeps: list[float], short_timeout: None) -> None:
    hub.delay_listing_after(pages=1, seconds=30)
    seen = []
    with pytest.raises(httpx2.TimeoutException):
        for item in HfApi(endpoint=hub.url).list_models(full=True, cardData=True):
            seen.append(item.id)
    assert len(seen) == 50 and _pages(hub, "models") == 1 + 6 and len(sleeps) == 5
