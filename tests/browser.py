"""Open a page in headless Chromium over the DevTools protocol (``--remote-debugging-pipe``,
stdlib only): its console messages and uncaught exceptions with their levels, facts the page's
own script computes, and a PNG screenshot at a given window size.

Debian's ``chromium`` package (``apt-get install -y chromium``); ``CHROMIUM`` names another.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


def chromium() -> str | None:
    """The browser to drive, or None when none is installed."""
    names = [os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome"]
    return next((shutil.which(n) for n in names if n and shutil.which(n)), None)


@dataclass
class Page:
    screenshot: bytes  # PNG
    facts: object  # what ``probe`` returned
    console: list[dict] = field(default_factory=list)  # {"level", "text", "source", "url"}

    def errors(self) -> list[dict]:
        return [m for m in self.console if m["level"] in ("error", "assert", "exception")]


class _Pipe:
    """Chromium's debugging pipe: JSON messages ended by NUL, commands on fd 3, events on 4."""

    def __init__(self, binary: str, profile: str):
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        os.set_inheritable(to_browser_r, True)
        os.set_inheritable(from_browser_w, True)
        # the child sees them as fds 3 and 4, which is where Chromium looks
        script = f'exec 3<&{to_browser_r} 4>&{from_browser_w}; exec "$@"'
        args = [binary, "--headless", "--remote-debugging-pipe", "--no-sandbox",
                "--disable-gpu", "--no-first-run", "--no-default-browser-check",
                "--hide-scrollbars", f"--user-data-dir={profile}", "about:blank"]  # fmt: skip
        self.process = subprocess.Popen(
            ["bash", "-c", script, "chromium", *args],
            pass_fds=(to_browser_r, from_browser_w),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next += 1
        message = {"id": self._next, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        seen = len(self.events)
        while time.monotonic() < deadline:
            for event in self.events[seen:]:
                if event.get("method") == method:
                    return event
            seen = len(self.events)
            self.events.append(self._read())
        raise TimeoutError(f"no {method} within {timeout_s} s")

    def _read(self) -> dict:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the debugging pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def close(self) -> None:
        with contextlib.suppress(OSError):  # it may be gone already
            os.write(
                self._to_browser, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0"
            )
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


def open_page(
    path: Path, probe: str, *, width: int = 1280, height: int = 900, timeout_s: float = 60
) -> Page:
    """Load ``path``, wait for its load event, evaluate ``probe`` (a JavaScript expression
    whose value comes back as JSON) and take a screenshot of the window."""
    binary = chromium()
    if binary is None:
        raise FileNotFoundError("no chromium on PATH")
    with tempfile.TemporaryDirectory() as profile:
        pipe = _Pipe(binary, profile)
        try:
            targets = pipe.send("Target.getTargets")["targetInfos"]
            page = next(t for t in targets if t["type"] == "page")
            session = pipe.send(
                "Target.attachToTarget", {"targetId": page["targetId"], "flatten": True}
            )["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                pipe.send(f"{domain}.enable", session=session)
            pipe.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                session,
            )
            pipe.send("Page.navigate", {"url": path.resolve().as_uri()}, session)
            pipe.wait_for("Page.loadEventFired", timeout_s)
            facts = pipe.send(
                "Runtime.evaluate",
                {"expression": probe, "returnByValue": True, "awaitPromise": True},
                session,
            )["result"].get("value")
            shot = pipe.send("Page.captureScreenshot", {"format": "png"}, session)
            console = _console(pipe.events)
        finally:
            pipe.close()
    return Page(base64.b64decode(shot["data"]), facts, console)


def _console(events: list[dict]) -> list[dict]:
    messages = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            messages.append({"level": params["type"], "text": text, "source": "console", "url": ""})
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text", "")
            url = details.get("url", "")
            messages.append({"level": "exception", "text": text, "source": "script", "url": url})
        elif method == "Log.entryAdded":
            entry = params["entry"]
            messages.append(
                {"level": entry["level"], "text": entry["text"], "source": entry["source"]}
            )
    return messages


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's header."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
