"""A real browser: the HTML report rendered in headless Chromium (Debian's `chromium` package), driven by Playwright.

    python -m pytest tests/test_report_browser.py -q

Builds a report from a small transfer-style grid (2 models x 2 training-set sizes x 2 seeds, written through the
real ParquetLogger by tests/helpers.py, plus one truncated log file), so the per-model panels, the size-effect
figure and the skipped-files list are all on the page. The folder is served by http.server on 127.0.0.1, so a
missing file is a real 404. Playwright's Python package drives Debian's Chromium through `executable_path`: no
browser is downloaded (never run `playwright install` for this test).

Whatever index.html holds is checked, not a fixed list: the page answers 200 with a title and an <h1>, every
<img> answers 200 and decodes with naturalWidth > 0, every other subresource loads, no script throws, and every
<a href> answers 200 (a same-page #anchor must name an element; a link leaving the report's server is an error,
since the report is meant to be self-contained and this machine is offline). Negative tests delete a PNG and a CSV
from a copy of the report, and ask for a page that does not exist, and expect the check to name what is wrong.

Without Chromium or without playwright the tests skip, except under CI (the CI environment variable set), where
test_the_browser_is_there fails, once, saying what is missing: .ci/run installs both. Set CHROMIUM to use another
Chromium or Chrome binary (default /usr/bin/chromium).
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from helpers import LogTrial, epoch_metrics, write_logs

from analysis.report import build_report

# This sandbox runs as root (so no setuid sandbox) on a closed network: without the background-networking flags
# Chromium's connections to Google's services are refused, many at a time, and it may stall at start. Containers
# often have a small /dev/shm: --disable-dev-shm-usage keeps shared memory in /tmp.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage"]
TIMEOUT_MS = 30_000  # for any single browser step; a healthy run takes a few seconds in all
MODELS, SIZES, SEEDS, EPOCHS = ("resnet50", "vgg19"), (10, 30), (0, 1), 4

# Runs in the page after its load event and returns what the test asserts on. Lazy images are made eager
# (headless, an image below the fold might never be fetched), then decode() waits for each image to be ready.
# Links are checked from the page itself, so they resolve exactly as a click would.
INSPECT_JS = r"""
async () => {
  const imgs = [...document.images];
  imgs.forEach(img => { img.loading = 'eager'; });
  await Promise.all(imgs.map(img => img.decode().catch(() => null)));
  const here = location.href.split('#')[0];
  const links = await Promise.all([...document.querySelectorAll('a[href]')].map(async a => {
    const href = a.getAttribute('href');
    const url = new URL(a.href);
    let status;
    if (url.href.split('#')[0] === here && url.hash) {
      const id = decodeURIComponent(url.hash.slice(1));
      status = (document.getElementById(id) || document.getElementsByName(id)[0]) ? 200 : 'no element with that id';
    } else if (url.origin !== location.origin) {
      status = 'leaves the report (' + url.origin + '): cannot be checked offline';
    } else {
      try { status = (await fetch(url.href, {cache: 'no-store'})).status; } catch (e) { status = String(e); }
    }
    return {href, status};
  }));
  return {
    title: document.title,
    h1: [...document.querySelectorAll('h1')].map(h => h.textContent.trim()),
    imgs: imgs.map(img => ({src: img.getAttribute('src'), url: img.currentSrc || img.src,
                            complete: img.complete, width: img.naturalWidth})),
    links,
  };
}
"""


# --- the browser --------------------------------------------------------------------------------------------


def _chromium() -> str:
    return os.environ.get("CHROMIUM") or "/usr/bin/chromium"


def _missing() -> str | None:
    """Why this machine cannot run the browser tests, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    exe = _chromium()
    if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        return (f"no Chromium at {exe}: as root, apt-get install chromium (.ci/run does it), "
                "or set CHROMIUM to a Chromium binary")
    return None


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module, and one context (profile) in it: each inspection opens a tab. Tabs
    share the HTTP cache, which cannot hide a deleted file: every test loads URLs no earlier test loaded."""
    if reason := _missing():
        pytest.skip(reason)  # under CI, test_the_browser_is_there fails instead, once
    from playwright.sync_api import sync_playwright

    exe = _chromium()
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_FLAGS, timeout=TIMEOUT_MS)
        try:
            context = chromium.new_context()
            context.set_default_timeout(TIMEOUT_MS)
            yield context
        finally:
            chromium.close()


def inspect(browser, url: str) -> dict:
    """Load url in a new tab, wait for its load event, run INSPECT_JS; return its result plus the page's HTTP
    status, the status of every response other than the links' fetches, failed requests and script errors."""
    page = browser.new_page()
    responses: dict[str, int] = {}  # URL -> HTTP status, subresources only
    failures: list[str] = []

    def on_response(response) -> None:
        request = response.request
        page_itself = request.is_navigation_request() and request.frame == page.main_frame  # reported as status
        if request.resource_type != "fetch" and not page_itself:
            responses[response.url] = response.status

    def on_request_failed(request) -> None:
        # fetches are the link checks (INSPECT_JS reports them); ERR_ABORTED is a load the page itself cancelled
        if request.resource_type != "fetch" and request.failure != "net::ERR_ABORTED" \
                and not request.url.endswith("/favicon.ico"):
            failures.append(f"resource {request.url}: {request.failure}")

    page.on("response", on_response)
    page.on("requestfailed", on_request_failed)
    page.on("pageerror", lambda error: failures.append(f"script error: {error}"))
    try:
        response = page.goto(url, wait_until="load")
        found = page.evaluate(INSPECT_JS)
    finally:
        page.close()
    return {**found, "status": response.status if response else None, "responses": responses, "failures": failures}


def problems(page: dict) -> list[str]:
    """Everything wrong with one inspected page, one line each; empty when the page is fine."""
    bad = []
    if page["status"] != 200:
        bad.append(f"page: HTTP {page['status']}")
    if not page["title"].strip():
        bad.append("page: empty <title>")
    if not any(page["h1"]):
        bad.append("page: no <h1> with text")
    for img in page["imgs"]:
        status = page["responses"].get(img["url"], "no response") if img["url"].startswith("http") else 200
        if status != 200 or not (img["complete"] and img["width"] > 0):
            bad.append(f"image {img['src']!r} did not load: "
                       + (f"HTTP {status}" if isinstance(status, int) else status) + f", naturalWidth {img['width']}")
    for link in page["links"]:
        if link["status"] != 200:
            status = link["status"]
            bad.append(f"link {link['href']!r}: " + (status if isinstance(status, str) else f"HTTP {status}"))
    images = {img["url"] for img in page["imgs"]}
    for url, status in page["responses"].items():
        if status >= 400 and url not in images and not url.endswith("/favicon.ico"):
            bad.append(f"resource {url}: HTTP {status}")
    bad += page["failures"]
    return list(dict.fromkeys(bad))


# --- the report and its server -------------------------------------------------------------------------------


def _write_logs(logs: Path) -> None:
    """The grid's trials through the real ParquetLogger, and one truncated file for the skipped-files list."""
    rng = np.random.default_rng(3)
    trials = []
    for model in MODELS:
        for size in SIZES:
            for seed in SEEDS:
                accs = np.sort(np.round(rng.uniform(0.3, 0.95, EPOCHS), 4))
                config = {"seed": seed, "lr": 0.001, "model": model, "train_per_class": size, "batch_size": 4,
                          "epochs": EPOCHS}
                trials.append(LogTrial(f"{model}-{size}-{seed}", config, epochs=[
                    epoch_metrics(float(acc), seconds=1.5, lr=0.001, **{"test_acc/clean": float(acc)})
                    for acc in accs]))
    write_logs(logs, trials, resources={"cpu": 1, "gpu": 0.25})
    whole = (logs / f"{MODELS[0]}-{SIZES[0]}-{SEEDS[0]}.parquet").read_bytes()
    (logs / "truncated.parquet").write_bytes(whole[: len(whole) // 2])


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """(folder served, base URL): the folder holds run/logs and run/report, built once for the module."""
    root = tmp_path_factory.mktemp("site")
    _write_logs(root / "run" / "logs")
    build_report(root / "run")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_QuietHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _Refs(HTMLParser):
    """The img src and a href values of a page, to choose what the negative tests break."""

    def __init__(self):
        super().__init__()
        self.imgs, self.links = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img" and a.get("src"):
            self.imgs.append(a["src"])
        elif tag == "a" and a.get("href"):
            self.links.append(a["href"])


def _broken_copy(root: Path, name: str, pick) -> tuple[str, str]:
    """Copy run/report to a new folder, delete the file that pick(refs) names, return (URL path, deleted ref)."""
    copy = root / name
    shutil.copytree(root / "run" / "report", copy)
    refs = _Refs()
    refs.feed((copy / "index.html").read_text(encoding="utf-8"))
    ref = pick(refs)
    (copy / ref).unlink()
    return f"/{name}/index.html", ref


# --- the tests ----------------------------------------------------------------------------------------------


def test_the_browser_is_there():
    """Without Chromium or playwright the other tests skip; under CI (the CI variable set) this one fails."""
    if reason := _missing():
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"CI is set but {reason}", pytrace=False)
        pytest.skip(reason)


def test_report_renders_in_chromium(browser, site):
    root, base = site
    page = inspect(browser, f"{base}/run/report/index.html")
    found = problems(page)
    assert not found, "index.html in Chromium:\n" + "\n".join(found)
    pngs = {p.name for p in (root / "run" / "report").glob("*.png")}
    shown = {img["src"] for img in page["imgs"]}
    # this grid varies model and train_per_class: the curve plots and the size-effect figure must be on the page
    assert {"test_acc.png", "test_loss.png", "size_effect.png"} <= shown
    assert all(page["responses"][img["url"]] == 200 for img in page["imgs"])  # each image came over http
    reachable = shown | {link["href"] for link in page["links"]}
    assert pngs <= reachable, f"PNGs written but neither shown nor linked: {sorted(pngs - reachable)}"
    assert any(link["href"].endswith(".csv") for link in page["links"])


def test_a_deleted_png_is_caught(browser, site):
    root, base = site
    path, png = _broken_copy(root, "no-png", lambda refs: next(s for s in refs.imgs if s.endswith(".png")))
    found = problems(inspect(browser, base + path))
    assert f"image {png!r} did not load: HTTP 404, naturalWidth 0" in found, found
    assert all(png in p for p in found), found  # nothing else is reported (the PNG may also be linked)


def test_a_deleted_csv_link_is_caught(browser, site):
    root, base = site
    path, csv = _broken_copy(root, "no-csv", lambda refs: next(h for h in refs.links if h.endswith(".csv")))
    assert problems(inspect(browser, base + path)) == [f"link {csv!r}: HTTP 404"]


def test_a_missing_page_is_caught(browser, site):
    _, base = site
    found = problems(inspect(browser, f"{base}/run/report/no-such-page.html"))
    assert "page: HTTP 404" in found, found
