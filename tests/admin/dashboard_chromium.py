#!/usr/bin/env python3
"""The dashboard in a real browser: Debian's headless Chromium, driven through the DevTools
protocol, signs in with an operator token on the login form of a running coordinator with three
clients, and the DOM must show the three clients by name, one chart point group per committed
round, and the operator's buttons. A screenshot and the DOM go to RUNS_DIR (runs/ by default).
Exits 77 when chromium is not installed.
usage: dashboard_chromium.py BUILD_DIR [RUNS_DIR]
"""
import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fedtest import SKIP, Federation, check, wait_for  # noqa: E402

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,1800", "--remote-debugging-port=0",
                  # The coordinator's certificate is signed by the federation CA, which this
                  # throw-away profile does not trust; an operator installs the CA instead.
                  "--ignore-certificate-errors"]


class DevTools:
    """Just enough of a WebSocket client (RFC 6455) for the Chrome DevTools protocol."""

    def __init__(self, url):
        host, rest = url[len("ws://"):].split("/", 1)
        h, p = host.split(":")
        self.s = socket.create_connection((h, int(p)), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall(("GET /%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (rest, host, key)).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.s.recv(1)
        check(b" 101 " in head.split(b"\r\n")[0], "DevTools handshake: %s" % head[:100])
        self.next_id = 0

    def _recv_exact(self, n):
        out = b""
        while len(out) < n:
            chunk = self.s.recv(n - len(out))
            if not chunk:
                raise OSError("DevTools connection closed")
            out += chunk
        return out

    def _recv_message(self):
        data = b""
        while True:
            b0, b1 = self._recv_exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._recv_exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._recv_exact(8))[0]
            data += self._recv_exact(n)
            if b0 & 0x80:
                return json.loads(data)

    def call(self, method, **params):
        self.next_id += 1
        payload = json.dumps({"id": self.next_id, "method": method, "params": params}).encode()
        mask = os.urandom(4)
        head = bytes([0x81])
        if len(payload) < 126:
            head += bytes([0x80 | len(payload)])
        elif len(payload) < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", len(payload))
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", len(payload))
        self.s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        while True:
            msg = self._recv_message()
            if msg.get("id") == self.next_id:
                check("error" not in msg, "%s: %s" % (method, msg.get("error")))
                return msg["result"]

    def js(self, expression):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        check("exceptionDetails" not in r, "JS error in %s: %s" % (expression, r.get("exceptionDetails")))
        return r["result"].get("value")


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__)
        return 2
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("SKIP: chromium is not installed (apt-get install chromium; scripts/setup-debian.sh does)")
        return SKIP
    runs = os.path.abspath(sys.argv[2] if len(sys.argv) == 3 else "runs")
    os.makedirs(runs, exist_ok=True)
    fed = Federation(sys.argv[1], "admin-dashboard")
    profile = tempfile.mkdtemp(prefix="federa-chromium.")
    browser = None
    try:
        completed = fed.paused_after(4, "--eval-data", "csv:eval.csv:label=label")

        browser = subprocess.Popen([chromium] + CHROMIUM_FLAGS + ["--user-data-dir=" + profile, "about:blank"],
                                   stdout=subprocess.DEVNULL, stderr=open(fed.path("chromium.log"), "w"))
        port_file = os.path.join(profile, "DevToolsActivePort")
        check(wait_for(lambda: os.path.exists(port_file) and open(port_file).read().count("\n") >= 1, 60),
              "chromium did not start:\n" + fed.tail("chromium.log"))
        port = int(open(port_file).read().split("\n")[0])
        pages = json.load(urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port, timeout=10))
        page = next(p for p in pages if p["type"] == "page")
        dt = DevTools(page["webSocketDebuggerUrl"])
        dt.call("Page.enable")
        dt.call("Page.navigate", url="https://127.0.0.1:%d/" % fed.admin_port)
        check(wait_for(lambda: dt.js("!!document.getElementById('login') && !document.getElementById('login').hidden"),
                       20), "the login form did not show")
        # Sign in as a person would: type the token into the form and submit it.
        dt.js("document.getElementById('token').value = %s;"
              "document.getElementById('login-form').requestSubmit(); true" % json.dumps(fed.operator_token))
        rows = "[...document.querySelectorAll('#clients tbody tr')].map(r => r.dataset.client)"
        check(wait_for(lambda: dt.js(rows) == fed.clients, 20), "clients table: %s" % dt.js(rows))
        groups = "[...document.querySelectorAll('#chart g.round')].map(g => +g.dataset.round)"
        check(wait_for(lambda: dt.js(groups) == list(range(1, completed + 1)), 20),
              "chart rounds %s, expected 1..%d" % (dt.js(groups), completed))
        for series in ("loss", "accuracy"):
            points = dt.js("document.querySelectorAll('#chart circle.point-%s').length" % series)
            check(points == completed, "%d %s points for %d rounds" % (points, series, completed))
        # The event list fills from the stream's replay, which may land after the REST refresh
        # that drew the chart.
        events = "document.querySelectorAll('#events li.ev-round_committed').length"
        check(wait_for(lambda: dt.js(events) == completed, 20),
              "%s round_committed events listed for %d rounds" % (dt.js(events), completed))
        check(dt.js("document.getElementById('phase').textContent") == "paused", "phase shown")
        check(dt.js("document.body.classList.contains('operator')"), "operator controls hidden for an operator")
        revoke = dt.js("[...document.querySelectorAll('#clients button')].filter(b => b.offsetParent).length")
        check(revoke == 3, "%s visible revoke buttons" % revoke)
        check(wait_for(lambda: dt.js("document.getElementById('live').textContent") == "live", 10), "event stream")
        shot = dt.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        with open(os.path.join(runs, "admin-dashboard.png"), "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        with open(os.path.join(runs, "admin-dashboard.html"), "w") as f:
            f.write(dt.js("document.documentElement.outerHTML"))
        print("dashboard: %d clients listed, %d rounds charted; screenshot in %s/admin-dashboard.png"
              % (len(fed.clients), completed, runs))
    finally:
        if browser and browser.poll() is None:
            browser.kill()
            browser.wait()
        shutil.rmtree(profile, ignore_errors=True)
        fed.close()
    print("admin dashboard: 1 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
