"""A real browser: the HTML report rendered in headless Chromium (Debian's `chromium` package).

    python -m pytest tests/test_report_browser.py -q

Builds a report from a small transfer-style grid (2 models x 2 training-set sizes x 2 seeds, with every column
the Parquet logger writes, plus one truncated log file), so the per-model panels, the size-effect figure and the
skipped-files list are all on the page. The folder is served by http.server on localhost, so a missing file is a
real 404, and Chromium is driven through the DevTools protocol over --remote-debugging-pipe (JSON messages on
file descriptors 3 and 4: no websocket client, no chromedriver, no extra Python package).

Whatever index.html holds is checked, not a fixed list: the page answers 200 with a title and an <h1>, every
<img> decodes with naturalWidth > 0, every subresource loads, no script throws, and every <a href> answers 200
(a same-page #anchor must name an element; a link leaving the report's server is an error, since the report is
meant to be self-contained and this machine is offline). Two negative tests delete a PNG and a CSV after the
build and expect the check to name them.

Without chromium the tests skip, except under CI (the CI environment variable set), where they fail: .ci/run
installs it. Set CHROMIUM to use another Chromium or Chrome binary.
"""

from __future__ import annotations

import fcntl
import functools
import http.server
import json
import os
import queue
import shutil
import signal
import threading
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.report import build_report

# Flags that keep Chromium quiet on a closed network: without the background-networking ones its connections to
# Google's services are refused, many at a time, and it may stall at start.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--disable-extensions", "--mute-audio", "--hide-scrollbars"]
TIMEOUT = 30.0  # seconds for any single browser step; a healthy run takes a few seconds in all
MODELS, SIZES, SEEDS, EPOCHS = ("resnet50", "vgg19"), (10, 30), (0, 1), 4

# Runs in the page after its load event and returns everything the test asserts on. Lazy images are made eager
# (headless, an image below the fold might never be fetched), then decode() waits for each image to be ready.
INSPECT_JS = r"""
(async () => {
  const nav = performance.getEntriesByType('navigation')[0];
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
    status: nav ? nav.responseStatus : null,
    title: document.title,
    h1: [...document.querySelectorAll('h1')].map(h => h.textContent.trim()),
    imgs: imgs.map(img => ({src: img.getAttribute('src'), complete: img.complete, width: img.naturalWidth})),
    links,
  };
})()
"""


# --- the browser --------------------------------------------------------------------------------------------


def _chromium_path() -> str | None:
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


class Chromium:
    """Headless Chromium driven over --remote-debugging-pipe: we write to its fd 3, it answers on its fd 4,
    one JSON message per NUL-terminated record (the transport Puppeteer and Playwright use)."""

    def __init__(self, exe: str, workdir: Path):
        self.log_path = workdir / "chromium.log"
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # Lift the child's ends above any fd the dup2s below write to, so that they cannot clobber each other.
        child_in, child_out = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_chrome_r, from_chrome_w))
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        argv = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={workdir / 'profile'}", "--remote-debugging-pipe",
                "about:blank"]
        try:
            # posix_spawn instead of Popen: Popen cannot put a pipe on a chosen fd without preexec_fn, which is
            # unsafe once threads (the http server's) are running. setsid: its helpers share one process group.
            self.pid = os.posix_spawn(exe, argv, os.environ, setsid=True, file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, log_fd, 1), (os.POSIX_SPAWN_DUP2, log_fd, 2),
                (os.POSIX_SPAWN_DUP2, child_in, 3), (os.POSIX_SPAWN_DUP2, child_out, 4)])
        finally:
            for fd in (child_in, child_out, log_fd):
                os.close(fd)
        self._inbox: queue.Queue = queue.Queue()
        self._next_id = 0
        self.events: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buf = b""
        while chunk := os.read(self._from_chrome, 1 << 16):
            buf += chunk
            *messages, buf = buf.split(b"\0")
            for m in messages:
                self._inbox.put(json.loads(m))
        os.close(self._from_chrome)
        self._inbox.put(None)  # EOF: the browser has gone

    def log_tail(self) -> str:
        lines = self.log_path.read_text(errors="replace").splitlines() if self.log_path.exists() else []
        return "\n".join(lines[-15:])

    def _next_message(self, deadline: float, waiting_for: str) -> dict:
        try:
            msg = self._inbox.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError(f"chromium: no {waiting_for} within {TIMEOUT:g} s; its log:\n{self.log_tail()}")
        if msg is None:
            raise RuntimeError(f"chromium exited while waiting for {waiting_for}; its log:\n{self.log_tail()}")
        return msg

    def call(self, method: str, session: str | None = None, **params):
        """Send one command and return its result; events that arrive meanwhile are kept in self.events."""
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        while True:
            reply = self._next_message(deadline, method)
            if reply.get("id") != self._next_id:
                self.events.append(reply)
                continue
            if "error" in reply:
                raise RuntimeError(f"chromium: {method} failed: {reply['error']}")
            return reply.get("result", {})

    def wait_event(self, method: str, session: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        if any(e.get("method") == method and e.get("sessionId") == session for e in self.events):
            return
        while True:
            msg = self._next_message(deadline, method)
            self.events.append(msg)
            if msg.get("method") == method and msg.get("sessionId") == session:
                return

    def inspect(self, url: str) -> tuple[dict, list[dict]]:
        """Load url in a fresh tab, wait for its load event, run INSPECT_JS; return its result and the tab's
        events (network responses and failures, script exceptions)."""
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        try:
            for domain in ("Page", "Network", "Runtime"):
                self.call(f"{domain}.enable", session)
            nav = self.call("Page.navigate", session, url=url)
            if nav.get("errorText"):
                return {"error": f"navigation to {url} failed: {nav['errorText']}"}, []
            self.wait_event("Page.loadEventFired", session)
            out = self.call("Runtime.evaluate", session, expression=INSPECT_JS, awaitPromise=True,
                            returnByValue=True, timeout=TIMEOUT * 1000)
            if "exceptionDetails" in out:
                raise RuntimeError(f"inspection script failed: {out['exceptionDetails']}")
            return out["result"]["value"], [e for e in self.events if e.get("sessionId") == session]
        finally:
            self.call("Target.closeTarget", targetId=target)

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (OSError, RuntimeError, TimeoutError):
            pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and os.waitpid(self.pid, os.WNOHANG) == (0, 0):
            time.sleep(0.05)
        try:
            os.killpg(self.pid, signal.SIGKILL)  # our own process group (setsid above): stragglers only
        except ProcessLookupError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        os.close(self._to_chrome)


def problems(page: dict, events: list[dict]) -> list[str]:
    """Everything wrong with one inspected page, one line each; empty when the page is fine."""
    if "error" in page:
        return [page["error"]]
    bad = []
    if page["status"] != 200:
        bad.append(f"page: HTTP {page['status']}")
    if not page["title"].strip():
        bad.append("page: empty <title>")
    if not any(page["h1"]):
        bad.append("page: no <h1> with text")
    for img in page["imgs"]:
        if not (img["complete"] and img["width"] > 0):
            bad.append(f"image {img['src']!r} did not load (complete={img['complete']}, naturalWidth={img['width']})")
    for link in page["links"]:
        if link["status"] != 200:
            status = link["status"]
            bad.append(f"link {link['href']!r}: " + (status if isinstance(status, str) else f"HTTP {status}"))
    urls = {}
    for e in events:
        method, p = e.get("method"), e.get("params", {})
        if method == "Network.requestWillBeSent":
            urls[p["requestId"]] = p["request"]["url"]
        elif method == "Network.responseReceived" and p["type"] != "Fetch":  # fetches are the link checks above
            if p["response"]["status"] >= 400 and not p["response"]["url"].endswith("/favicon.ico"):
                bad.append(f"resource {p['response']['url']}: HTTP {p['response']['status']}")
        elif method == "Network.loadingFailed" and p.get("type") != "Fetch" and not p.get("canceled"):
            url = urls.get(p["requestId"], "?")
            if not url.endswith("/favicon.ico"):
                bad.append(f"resource {url}: {p['errorText']}")
        elif method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            bad.append(f"script error: {d.get('exception', {}).get('description') or d.get('text')}")
    return list(dict.fromkeys(bad))  # a 404 image shows twice on purpose: as an image and as a resource


# --- the report and its server -------------------------------------------------------------------------------


def _write_logs(logs: Path) -> None:
    """One Parquet file per trial with the Parquet logger's columns, and one truncated file to be listed."""
    logs.mkdir(parents=True)
    rng = np.random.default_rng(3)
    epochs = np.arange(1, EPOCHS + 1)
    for model in MODELS:
        for size in SIZES:
            for seed in SEEDS:
                acc = np.sort(np.round(rng.uniform(0.3, 0.95, EPOCHS), 4))
                loss = np.sort(np.round(rng.uniform(0.1, 2.0, EPOCHS), 4))[::-1]
                tid = f"{model}-{size}-{seed}"
                pd.DataFrame({
                    "trial_id": tid, "epoch": epochs,
                    "train_loss": loss * 0.8, "train_acc": np.minimum(acc + 0.03, 1.0),
                    "test_loss": loss, "test_acc": acc, "epoch_seconds": 1.5, "lr": 0.001,
                    "status": ["running"] * (EPOCHS - 1) + ["terminated"],
                    "stop_reason": [None] * (EPOCHS - 1) + ["max_epochs"], "error": None, "failures": 0,
                    "cpus": 1.0, "gpus": 0.25,
                    "config/seed": seed, "config/lr": 0.001, "config/model": model, "config/train_per_class": size,
                    "config/batch_size": 4, "config/epochs": EPOCHS, "test_acc/clean": acc,
                }).to_parquet(logs / f"{tid}.parquet", index=False)
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


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    exe = _chromium_path()
    if not exe:
        reason = ("chromium is not installed (Debian: apt-get install chromium; .ci/run does it), "
                  "or set CHROMIUM to a Chromium binary")
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"CI is set but {reason}", pytrace=False)
        pytest.skip(reason)
    chrome = Chromium(exe, tmp_path_factory.mktemp("chromium"))
    try:
        chrome.call("Browser.getVersion")
        yield chrome
    finally:
        chrome.close()


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


def test_report_renders_in_chromium(browser, site):
    root, base = site
    page, events = browser.inspect(f"{base}/run/report/index.html")
    found = problems(page, events)
    assert not found, "index.html in Chromium:\n" + "\n".join(found)
    pngs = {p.name for p in (root / "run" / "report").glob("*.png")}
    shown = {img["src"] for img in page["imgs"]}
    # this grid varies model and train_per_class: the curve plots and the size-effect figure must be on the page
    assert {"test_acc.png", "test_loss.png", "size_effect.png"} <= shown
    reachable = shown | {link["href"] for link in page["links"]}
    assert pngs <= reachable, f"PNGs written but neither shown nor linked: {sorted(pngs - reachable)}"
    assert any(link["href"].endswith(".csv") for link in page["links"])


def test_a_deleted_png_is_caught(browser, site):
    root, base = site
    path, png = _broken_copy(root, "no-png", lambda refs: next(s for s in refs.imgs if s.endswith(".png")))
    found = problems(*browser.inspect(base + path))
    assert any(f"image {png!r} did not load" in p for p in found), found
    assert any(p.startswith("resource ") and png in p and "404" in p for p in found), found


def test_a_deleted_csv_link_is_caught(browser, site):
    root, base = site
    path, csv = _broken_copy(root, "no-csv", lambda refs: next(h for h in refs.links if h.endswith(".csv")))
    assert problems(*browser.inspect(base + path)) == [f"link {csv!r}: HTTP 404"]


def test_a_missing_page_is_caught(browser, site):
    _, base = site
    found = problems(*browser.inspect(f"{base}/run/report/no-such-page.html"))
    assert "page: HTTP 404" in found
