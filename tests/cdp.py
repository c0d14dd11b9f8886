"""A tiny Chrome DevTools Protocol client: open a local page in headless Chromium, collect console errors, evaluate
JavaScript, take a screenshot. Only websocket-client is needed (no browser download: Debian's ``chromium``).

Usable from the command line too: ``python -m tests.cdp PAGE.html OUT.png`` prints the page's problems and saves a
screenshot (how docs/report-screenshot.png is made).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import websocket

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars", "--disable-dev-shm-usage",
    "--remote-allow-origins=*", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
)


def find_chromium() -> str | None:
    """``$BASEWATCH_CHROMIUM``, else chromium / chromium-browser / google-chrome on PATH."""
    explicit = os.environ.get("BASEWATCH_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else shutil.which(explicit)
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageReport:
    """What loading one page produced."""

    url: str
    console_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests_failed: list[str] = field(default_factory=list)
    requested_urls: list[str] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)
    text: str = ""
    title: str = ""


class Browser:
    """One headless Chromium with one page target, driven over CDP."""

    def __init__(self, executable: str, timeout: float = 30.0):
        self.timeout = timeout
        self.profile = Path(tempfile.mkdtemp(prefix="basewatch-chromium-"))
        self.proc = subprocess.Popen(
            [executable, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        port = self._wait_port()
        targets = self._json(f"http://127.0.0.1:{port}/json/list")
        page = next(t for t in targets if t.get("type") == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=timeout, suppress_origin=True)
        self._id = 0
        self.events: list[dict] = []

    def _wait_port(self) -> int:
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"chromium exited with {self.proc.returncode}: {err[-2000:]}")
            if marker.exists():
                lines = marker.read_text().split()
                if lines and lines[0].isdigit():
                    return int(lines[0])
            time.sleep(0.05)
        raise RuntimeError(f"chromium did not open a DevTools port within {self.timeout:g} s")

    def _json(self, url: str):
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    return json.loads(r.read())
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def send(self, method: str, **params) -> dict:
        self._id += 1
        msg_id = self._id
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"CDP {method} failed: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)
        raise TimeoutError(f"CDP {method}: no answer within {self.timeout:g} s")

    def wait_event(self, method: str) -> dict:
        for i, ev in enumerate(self.events):
            if ev["method"] == method:
                return self.events.pop(i)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get("method") == method:
                return msg
            if "method" in msg:
                self.events.append(msg)
        raise TimeoutError(f"CDP: no {method} within {self.timeout:g} s")

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"evaluate failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str, width: int = 1280, height: int = 900, settle_s: float = 0.3) -> PageReport:
        """Load ``url`` and wait for its load event; collect errors, images, text."""
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        self.events.clear()
        self.send("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired")
        self.evaluate("Promise.all(Array.from(document.images).map(i => i.decode().catch(() => null)))")
        time.sleep(settle_s)
        self.send("Runtime.evaluate", expression="1")  # drain events that arrived meanwhile
        report = PageReport(url=url)
        for ev in self.events:
            method, p = ev["method"], ev.get("params", {})
            if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                report.console_errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p["args"]))
            elif method == "Runtime.exceptionThrown":
                report.console_errors.append(p["exceptionDetails"].get("text", "exception"))
            elif method == "Log.entryAdded" and p["entry"].get("level") == "error":
                report.console_errors.append(f"{p['entry'].get('text')} ({p['entry'].get('url', '')})")
            elif method == "Page.javascriptDialogOpening":
                report.dialogs.append(p.get("message", ""))
            elif method == "Network.requestWillBeSent":
                report.requested_urls.append(p["request"]["url"])
            elif method == "Network.loadingFailed":
                report.requests_failed.append(f"{p.get('errorText')} ({p.get('requestId')})")
        report.images = self.evaluate(
            "Array.from(document.images).map(i => ({src: i.getAttribute('src'), naturalWidth: i.naturalWidth, "
            "naturalHeight: i.naturalHeight, complete: i.complete}))")
        report.text = self.evaluate("document.body.innerText")
        report.title = self.evaluate("document.title")
        return report

    def screenshot(self, path: str | Path, max_height: int = 2400) -> Path:
        """Full-page PNG (up to ``max_height`` CSS pixels tall)."""
        metrics = self.send("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], max_height), "scale": 1}
        shot = self.send("Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        with contextlib.suppress(Exception):  # best effort on teardown
            self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m tests.cdp PAGE.html OUT.png", file=sys.stderr)
        return 2
    exe = find_chromium()
    if exe is None:
        print("no chromium found (apt-get install chromium)", file=sys.stderr)
        return 2
    with Browser(exe) as browser:
        report = browser.open(Path(argv[0]).resolve().as_uri())
        browser.screenshot(argv[1])
    bad = [i for i in report.images if not i["naturalWidth"]]
    print(f"console errors: {report.console_errors}\nbroken images: {bad}\nimages: {len(report.images)}")
    return 1 if report.console_errors or bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
