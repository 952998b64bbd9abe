"""The search page in a real browser: the app served by uvicorn on loopback, driven by Chromium.

A tiny shapes collection is embedded with a saved ``tiny`` model and indexed; the test types a
query, checks that result thumbnails actually load, clicks a result and checks that the page
switches to an image->image search led by the clicked item, then searches by uploading a file.
Uses Debian's ``/usr/bin/chromium`` through Playwright (never ``playwright install``); skipped
when that browser is absent.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import clipforge
from clipforge.data.shapes import write_shapes
from clipforge.search.embed import embed_collection
from clipforge.search.index import build_index
from clipforge.search.server import create_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
TIMEOUT_MS = 20_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (apt-get install chromium)"
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Embed 24 shapes images, index them, and serve two indices over them with uvicorn."""
    import uvicorn

    base = tmp_path_factory.mktemp("web")
    torch.manual_seed(0)
    model = clipforge.save_model(clipforge.create_model("tiny"), base / "model")
    write_shapes(base / "shapes", 24, format="csv")
    embed_collection([str(base / "shapes" / "captions.csv")], base / "emb", model=str(model),
                     num_workers=0, batch_size=16, progress=False)  # fmt: skip
    build_index(base / "emb", base / "index", kind="flat")
    config = {"indices": {"shapes": {"index": str(base / "index")},
                          "shapes-again": {"index": str(base / "index")}}}  # fmt: skip
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the search server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, server_url: str) -> Iterator[object]:
    """A fresh page on the search UI that records failures and any request off the server."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    tab.problems = []
    tab.on("pageerror", lambda err: tab.problems.append(f"page error: {err}"))
    tab.on("console", lambda m: m.type == "error" and tab.problems.append(f"console: {m.text}"))
    tab.on("response", lambda r: r.status >= 400
           and tab.problems.append(f"HTTP {r.status}: {r.url}"))  # fmt: skip
    tab.on("request", lambda r: r.url.startswith(server_url)
           or tab.problems.append(f"external request: {r.url}"))  # fmt: skip
    tab.goto(server_url)
    yield tab
    context.close()


def _result_ids(page) -> list[int]:
    return [
        int(i)
        for i in page.eval_on_selector_all("#results .result", "b => b.map(x => x.dataset.id)")
    ]


def _wait_for_results(page, kind: str) -> None:
    page.wait_for_function(
        "kind => document.querySelector('#results').dataset.queryKind === kind"
        " && document.querySelectorAll('#results .result').length > 0",
        arg=kind,
    )


def _wait_for_thumbnails(page) -> None:
    """Every thumbnail has finished loading and decoded to a real image (naturalWidth > 0)."""
    page.wait_for_function(
        "Array.from(document.querySelectorAll('#results img'))"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )


def test_text_search_then_click_a_result_for_image_search(page) -> None:
    page.wait_for_selector("#index-select option >> nth=1", state="attached")
    assert page.is_visible("#index-field")  # two indices: the selector shows
    assert page.eval_on_selector_all("#index-select option", "o => o.length") == 2
    page.fill("#k", "6")
    page.fill("#query", "a large red circle on the left")
    page.click("#search-button")
    _wait_for_results(page, "text")
    assert len(_result_ids(page)) == 6
    _wait_for_thumbnails(page)
    assert page.inner_text("#results .result .caption >> nth=0").strip()
    assert "6 results" in page.inner_text("#status")
    text_ids = _result_ids(page)

    clicked = text_ids[3]
    page.click(f'#results .result[data-id="{clicked}"]')
    _wait_for_results(page, "id")
    image_ids = _result_ids(page)
    assert image_ids[0] == clicked
    assert image_ids != text_ids
    _wait_for_thumbnails(page)
    assert page.problems == []


def test_upload_a_file_to_search_by_image(page, tmp_path: Path, server_url: str) -> None:
    import httpx

    page.wait_for_selector("#index-select option >> nth=1", state="attached")
    page.select_option("#index-select", "shapes-again")
    image = tmp_path / "query.jpg"
    image.write_bytes(httpx.get(f"{server_url}/images/7?index=shapes-again").content)
    page.set_input_files("#image-file", str(image))
    _wait_for_results(page, "image")
    assert _result_ids(page)[0] == 7
    _wait_for_thumbnails(page)
    assert page.problems == []


def test_empty_query_says_what_to_do(page) -> None:
    # The page un-hides the selector when /indices answers; hide it only after that has happened.
    page.wait_for_selector("#index-select option >> nth=1", state="attached")
    page.evaluate("document.getElementById('index-field').hidden = true")
    assert not page.is_visible("#index-field")  # as with one index: the stylesheet honours hidden
    page.click("#search-button")
    page.wait_for_selector("#status.error")
    assert "Type something" in page.inner_text("#status")
    assert _result_ids(page) == []


def test_docs_page_lists_the_routes_when_offline(browser, server_url: str) -> None:
    """Swagger UI's assets come from a CDN; with every outside request refused the page falls
    back to a list of the routes read from /openapi.json."""
    context = browser.new_context()
    try:
        tab = context.new_page()
        tab.set_default_timeout(TIMEOUT_MS)
        tab.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server_url)
                  else route.abort())  # fmt: skip
        assert tab.goto(f"{server_url}/docs").status == 200
        tab.wait_for_selector("#fallback-routes li")
        routes = tab.inner_text("#fallback-routes")
        assert "POST /search" in routes and "GET /images/{item_id}" in routes
    finally:
        context.close()
