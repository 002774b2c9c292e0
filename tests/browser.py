"""Headless Chromium driven over the DevTools protocol (a websocket): real key presses into a real page.

    with Browser(url) as page:
        page.wait("document.body.dataset.state === 'ready'")
        page.press("1")                       # keyDown + keyUp, as a keyboard sends them
        page.evaluate("window.finebertTimings")

Debian's chromium package; `websockets` comes with uvicorn[standard] (the [serve] extra).
"""

import json
import shutil
import subprocess
import tempfile
import time

import httpx
from conftest import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
KEYS = {"Backspace": ("Backspace", 8, ""), "Enter": ("Enter", 13, "\r"), "s": ("KeyS", 83, "s")} | \
       {str(d): (f"Digit{d}", 48 + d, str(d)) for d in range(10)}


class Browser:
    def __init__(self, url: str):
        self.url, self.port, self.profile = url, free_port(), tempfile.mkdtemp(prefix="chromium-")
        self.proc, self.socket, self.calls = None, None, 0

    def __enter__(self):
        from websockets.sync.client import connect

        self.proc = subprocess.Popen([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                      "--disable-background-networking", "--disable-component-update",
                                      "--disable-sync", f"--user-data-dir={self.profile}",
                                      f"--remote-debugging-port={self.port}", "--window-size=900,700", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        targets = None
        for _ in range(120):
            try:
                targets = [t for t in httpx.get(f"http://127.0.0.1:{self.port}/json/list", timeout=1).json()
                           if t["type"] == "page"]
                if targets:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        if not targets:
            self.__exit__()
            raise RuntimeError("chromium did not open its DevTools port")
        self.socket = connect(targets[0]["webSocketDebuggerUrl"], max_size=2**24, open_timeout=30).__enter__()
        self.send("Page.enable")
        self.send("Page.navigate", url=self.url)
        return self

    def __exit__(self, *exc):
        if self.socket is not None:
            self.socket.close()
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.profile, ignore_errors=True)

    def send(self, method: str, **params) -> dict:
        self.calls += 1
        self.socket.send(json.dumps({"id": self.calls, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == self.calls:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait(self, condition: str, timeout: float = 60.0):
        """Waits until the JavaScript expression `condition` is truthy; returns its value."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                value = self.evaluate(condition)
            except RuntimeError:
                value = None  # the page is still loading
            if value:
                return value
            time.sleep(0.05)
        raise TimeoutError(f"{condition} did not hold within {timeout} s; the page reads: "
                           f"{self.evaluate('document.body && document.body.innerText')!r}")

    def press(self, key: str) -> None:
        code, virtual, text = KEYS[key]
        common = dict(key=key, code=code, windowsVirtualKeyCode=virtual, nativeVirtualKeyCode=virtual)
        self.send("Input.dispatchKeyEvent", type="keyDown", text=text, **common)
        self.send("Input.dispatchKeyEvent", type="keyUp", **common)
