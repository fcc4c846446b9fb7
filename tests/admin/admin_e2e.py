#!/usr/bin/env python3
"""The admin listener end to end, with the real binaries over TLS on 127.0.0.1:
  1. every endpoint and both roles; no certificate, a wrong token, a member's certificate and an
     expired admin certificate are refused with 401/403 and a reason;
  2. bad input (malformed JSON, unknown member, path traversal, huge body and header, wrong
     method, no JSON content type) gets a 4xx with a reason;
  3. pause/resume, revocation (the session closes within a second, the member's client exits),
     members added and removed with federa-admin, stop; the audit log holds every change;
  4. a restart with --resume: the revoked member is still refused, the round history is kept,
     SIGTERM stops gracefully;
  5. a federation runs to completion while 70 event streams are held (64 admitted, the rest
     refused), 1,000 subscribers open and drop, and a bounded loop hammers the API.
usage: admin_e2e.py BUILD_DIR
"""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fedtest import Federation, check, fail, wait_for  # noqa: E402


class EventStream:
    """A raw /api/v1/events subscription (server-sent events over TLS)."""

    def __init__(self, fed, token, timeout=10):
        raw = socket.create_connection(("127.0.0.1", fed.admin_port), timeout=timeout)
        self.s = fed.context().wrap_socket(raw, server_hostname="127.0.0.1")
        self.s.sendall(b"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                       + token.encode() + b"\r\n\r\n")
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.s.recv(4096)
            if not chunk:
                break
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.head = head.decode(errors="replace")
        self.status = int(self.head.split(" ", 2)[1]) if self.head else 0

    def next_event(self, timeout=10):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            while b"\n\n" in self.buf:
                frame, _, self.buf = self.buf.partition(b"\n\n")
                event, data = None, ""
                for line in frame.decode().split("\n"):
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        data += line[6:]
                if event and data:
                    return event, json.loads(data)
            self.s.settimeout(max(0.05, end - time.monotonic()))
            try:
                chunk = self.s.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                return None
            self.buf += chunk
        return None

    def wait_for(self, event, pred, timeout=10):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            e = self.next_event(end - time.monotonic())
            if e is None:
                return None
            if e[0] == event and pred(e[1]):
                return e[1]
        return None

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def error_of(body):
    return json.loads(body)["error"]


def auth_and_roles(fed):
    print("== authentication and roles")
    s, _, body = fed.https("GET", "/healthz")
    check(s == 200 and body == b"ok\n", "healthz")
    s, h, body = fed.https("GET", "/")
    check(s == 200 and b"<title>federa" in body and "Content-Security-Policy" in h, "the dashboard page")
    s, h, body = fed.https("GET", "/api/v1/status")
    check(s == 401 and "authentication required" in error_of(body) and "WWW-Authenticate" in h, "no credentials: %d" % s)
    s, _, body = fed.https("GET", "/metrics", token="fdt_" + "0" * 64)
    check(s == 401 and error_of(body) == "unknown bearer token", "wrong token: %d %s" % (s, body))
    s, _, body = fed.https("GET", "/api/v1/status", kit=fed.kit("clients", "site-a"))
    check(s == 403 and "not an admin certificate" in error_of(body), "a member's certificate: %d %s" % (s, body))
    s, _, body = fed.https("GET", "/api/v1/status", kit=fed.expired_admin_kit())
    check(s == 401 and "expired" in error_of(body), "an expired admin certificate: %d %s" % (s, body))
    me = fed.get_json("/api/v1/whoami", kit=fed.kit("admins", "bob"))
    check(me == {"name": "bob", "role": "viewer", "via": "certificate"}, "whoami bob: %s" % me)
    me = fed.get_json("/api/v1/whoami", token=fed.operator_token)
    check(me["role"] == "operator" and me["via"] == "token", "whoami token: %s" % me)


def endpoints(fed):
    print("== every read endpoint")
    check(wait_for(lambda: fed.get_json("/api/v1/status")["rounds_completed"] >= 2, 60), "no round committed")
    st = fed.get_json("/api/v1/status")
    check(st["clients_connected"] == 3 and st["rounds_total"] == 100000 and st["phase"] in
          ("training", "aggregating", "waiting"), "status: %s" % st)
    clients = fed.get_json("/api/v1/clients")["clients"]
    check(sorted(c["name"] for c in clients) == fed.clients, "clients: %s" % clients)
    check(all(c["connected"] and c["address"].startswith("127.0.0.1:") and c["rounds_accepted"] >= 1
              for c in clients), "client details: %s" % clients)
    rounds = fed.get_json("/api/v1/rounds")["rounds"]
    check(rounds and rounds[0]["round"] == 1 and "loss" in rounds[0], "rounds: %s" % rounds[:1])
    r1 = fed.get_json("/api/v1/rounds/1")
    check(sorted(c["client"] for c in r1["clients"]) == fed.clients and
          all(c["outcome"] == "accepted" for c in r1["clients"]), "round 1: %s" % r1)
    m = fed.get_json("/api/v1/members")
    check(m["members"] == fed.clients and not m["open_membership"], "members: %s" % m)
    check(fed.get_json("/api/v1/members/site-a")["member"], "members/site-a")
    s, h, body = fed.https("GET", "/metrics", token=fed.viewer_token)
    text = body.decode()
    check(s == 200 and h["Content-Type"].startswith("text/plain; version=0.0.4"), "metrics content type")
    for name in ("federa_rounds_completed", "federa_round_duration_seconds_bucket", "federa_clients_connected 3",
                 "federa_updates_total{outcome=\"accepted\"", "federa_received_bytes_total",
                 "federa_round_phase_seconds_sum{phase=\"aggregate\"}", "process_resident_memory_bytes"):
        check(name in text, "/metrics lacks " + name)
    s, h, body = fed.https("GET", "/api/v1/model", token=fed.viewer_token)
    n = int.from_bytes(body[:8], "little")
    header = json.loads(body[8:8 + n])
    check(s == 200 and header["__metadata__"]["federa.model"] == "mlp:4,8,2" and "fc1.weight" in header,
          "model download: %d" % s)
    s, _, body = fed.https("GET", "/api/v1/model?round=999999", token=fed.viewer_token)
    check(s == 404 and "has not been committed" in error_of(body), "a future round's model: %d" % s)
    ev = EventStream(fed, fed.viewer_token)
    check(ev.status == 200 and "text/event-stream" in ev.head, "events: " + ev.head)
    check(ev.wait_for("round_committed", lambda d: d["round"] >= 1), "no round_committed event")
    ev.close()


def bad_input(fed):
    print("== bad input")
    op = fed.operator_token
    cases = [
        ("POST", "/api/v1/members", '{"name":', {}, 400, "not valid JSON"),
        ("POST", "/api/v1/members", '["site-d"]', {}, 400, "JSON object"),
        ("POST", "/api/v1/members", '{"name":"../../etc"}', {}, 400, "must not start with '.'"),
        ("POST", "/api/v1/members", '{"name":"site-d"}', {"Content-Type": "text/plain"}, 400, "Content-Type"),
        ("DELETE", "/api/v1/members/nobody", None, {}, 404, "not a member"),
        ("POST", "/api/v1/members", '{"name":"site-a"}', {}, 409, "already a member"),
        ("GET", "/..%2F..%2Fetc/passwd", None, {}, 400, "path traversal"),
        ("GET", "/api/v1/members/..%2f..%2fetc", None, {}, 400, "path traversal"),
        ("GET", "/api/v1/model?round=..%2F..%2Fstate.json", None, {}, 400, "positive whole number"),
        ("GET", "/api/v1/rounds/%2e%2e", None, {}, 400, "path traversal"),
        ("PUT", "/api/v1/status", "{}", {}, 405, "method not allowed"),
        ("POST", "/api/v1/pause", "x" * 200000, {}, 413, "larger than 65536"),
        ("GET", "/api/v1/status", None, {"X-Padding": "p" * 20000}, 431, "header is larger"),
    ]
    for method, path, body, headers, want, words in cases:
        s, _, got = fed.https(method, path, body=body, token=op, headers=headers)
        check(s == want and words in error_of(got), "%s %s: want %d '%s', got %d %s" % (method, path, want, words, s, got[:200]))
    # Raw traversal in the request line, as a hand-made client would send it.
    c = fed.connection()
    c.putrequest("GET", "/../../etc/passwd", skip_accept_encoding=True)
    c.putheader("Authorization", "Bearer " + op)
    c.endheaders()
    r = c.getresponse()
    check(r.status == 400, "raw ../ target: %d" % r.status)
    c.close()
    check(fed.get_json("/api/v1/members")["members"] == fed.clients, "bad input changed the members")


def pause_resume(fed):
    print("== pause and resume")
    s, _, body = fed.https("POST", "/api/v1/pause", body={}, kit=fed.kit("admins", "bob"))
    check(s == 403 and "viewer" in error_of(body), "a viewer paused: %d" % s)
    s, _, _ = fed.https("POST", "/api/v1/pause", body={}, kit=fed.kit("admins", "alice"))
    check(s == 200, "pause: %d" % s)
    check(wait_for(lambda: fed.get_json("/api/v1/status")["phase"] == "paused", 30), "not paused")
    done = fed.get_json("/api/v1/status")["rounds_completed"]
    time.sleep(1.0)
    check(fed.get_json("/api/v1/status")["rounds_completed"] == done, "a round committed while paused")
    check(fed.https("POST", "/api/v1/resume", body={}, token=fed.operator_token)[0] == 200, "resume")
    check(wait_for(lambda: fed.get_json("/api/v1/status")["rounds_completed"] > done, 30), "no round after resume")


def revocation(fed):
    print("== revocation")
    s, _, _ = fed.https("DELETE", "/api/v1/members/site-c", kit=fed.kit("admins", "bob"))
    check(s == 403, "a viewer revoked: %d" % s)
    check(next(c for c in fed.get_json("/api/v1/clients")["clients"] if c["name"] == "site-c")["connected"],
          "site-c went away after a refused revocation")
    ev = EventStream(fed, fed.viewer_token)
    t0 = time.monotonic()
    s, _, body = fed.https("DELETE", "/api/v1/members/site-c", kit=fed.kit("admins", "alice"))
    check(s == 200 and json.loads(body)["members"] == ["site-a", "site-b"], "revoke: %d %s" % (s, body))
    left = ev.wait_for("client_left", lambda d: d["client"] == "site-c", timeout=5)
    elapsed = time.monotonic() - t0
    check(left and left["reason"] == "membership revoked", "no client_left for site-c: %s" % left)
    check(elapsed < 1.0, "the revoked session closed after %.2f s" % elapsed)
    ev.close()
    c = next(c for c in fed.get_json("/api/v1/clients")["clients"] if c["name"] == "site-c")
    check(not c["connected"] and not c["member"], "site-c after revocation: %s" % c)
    with open(fed.members) as f:
        lines = f.read().splitlines()
    check("site-c" not in lines and lines[0].startswith("#"), "members file: %s" % lines)
    code = wait_for(lambda: fed.procs["site-c"].poll(), 30)
    check(code == 3, "the revoked client exited %s, expected 3:\n%s" % (code, fed.tail("site-c.log")))
    print("   revoked session closed in %.3f s" % elapsed)


def cli(fed):
    print("== federa-admin")
    alice = fed.kit("admins", "alice")
    events = subprocess.Popen([fed.bin["admin"], "--server", "127.0.0.1:%d" % fed.admin_port, "--kit", alice, "--json",
                               "events", "--count", "2"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    r = fed.admin_cli("--json", "members", "add", "site-x", kit=alice)
    check(r.returncode == 0 and "site-x" in json.loads(r.stdout)["members"], "members add: %s %s" % (r.stdout, r.stderr))
    r = fed.admin_cli("members", "remove", "site-x", token=fed.viewer_token)
    check(r.returncode == 3 and "viewer" in r.stderr, "a viewer's members remove: %d %s" % (r.returncode, r.stderr))
    r = fed.admin_cli("members", "remove", "site-x", token=fed.operator_token)
    check(r.returncode == 0 and "site-x removed" in r.stdout, "members remove: %s %s" % (r.stdout, r.stderr))
    r = fed.admin_cli("status", kit=alice)
    check(r.returncode == 0 and "rounds committed" in r.stdout, "status: " + r.stdout + r.stderr)
    r = fed.admin_cli("--json", "clients", kit=alice)
    check(r.returncode == 0 and [c["name"] for c in json.loads(r.stdout)["clients"]] == fed.clients, "clients --json: " + r.stdout)
    r = fed.admin_cli("rounds", "1", kit=alice)
    check(r.returncode == 0 and "site-a" in r.stdout and "accepted" in r.stdout, "rounds 1: " + r.stdout)
    r = fed.admin_cli("--json", "rounds", kit=alice)
    check(r.returncode == 0 and json.loads(r.stdout)["rounds"][0]["round"] == 1, "rounds --json")
    r = fed.admin_cli("model", "-o", "latest.safetensors", kit=alice)
    check(r.returncode == 0 and os.path.getsize(fed.path("latest.safetensors")) > 100, "model: " + r.stdout + r.stderr)
    r = fed.admin_cli("model", "--round", "999999", "-o", "x.safetensors", kit=alice)
    check(r.returncode == 1 and "not been committed" in r.stderr and not os.path.exists(fed.path("x.safetensors")),
          "model of a future round: " + r.stderr)
    out, _ = events.communicate(timeout=30)
    got = [json.loads(line) for line in out.splitlines()]
    check(events.returncode == 0 and [e["data"].get("added") or e["data"].get("removed") for e in got] ==
          ["site-x", "site-x"], "events: %s" % out)
    r = fed.admin_cli("frobnicate", kit=alice)
    check(r.returncode == 2 and "unknown command" in r.stderr, "unknown command: %d" % r.returncode)


def stop_and_audit(fed):
    print("== stop and the audit log")
    r = fed.admin_cli("stop", "--after-round", token=fed.operator_token)
    check(r.returncode == 0, "stop: " + r.stdout + r.stderr)
    code = fed.wait_coordinator(60)
    check(code == 0, "the stopped coordinator exited %d:\n%s" % (code, fed.tail("coordinator.log")))
    with open(fed.path("state", "state.json")) as f:
        committed = json.load(f)["round"]
    with open(fed.path("metrics.jsonl")) as f:
        check(len(f.readlines()) == committed, "metrics lines != committed rounds")
    with open(fed.path("state", "admin-audit.jsonl")) as f:
        audit = [json.loads(line) for line in f]
    seen = [(a["who"], a["action"], a["target"], a["status"], a["outcome"]) for a in audit]
    for want in [("bob", "pause", "", 403, "refused"), ("alice", "pause", "", 200, "ok"), ("ops", "resume", "", 200, "ok"),
                 ("bob", "members.remove", "site-c", 403, "refused"), ("alice", "members.remove", "site-c", 200, "ok"),
                 ("ops", "members.add", "", 400, "refused"), ("ops", "members.remove", "nobody", 404, "refused"),
                 ("alice", "members.add", "site-x", 201, "ok"), ("ops", "stop", "", 202, "ok")]:
        check(want in seen, "audit log lacks %s; it has %s" % (want, seen))
    check(all(a["time"].endswith("Z") and a["address"].startswith("127.0.0.1:") for a in audit), "audit fields")
    check(oct(os.stat(fed.path("state", "admin-audit.jsonl")).st_mode & 0o777) == "0o600", "audit log mode")
    print("   %d audit entries, stopped after round %d" % (len(audit), committed))
    return committed


def restart(fed, committed):
    print("== restart with --resume: revocation and history survive, SIGTERM stops")
    fed.start_coordinator("--rounds", "100000", "--resume", min_clients=2)
    for name in ("site-a", "site-b", "site-c"):
        fed.start_client(name)
    code = wait_for(lambda: fed.procs["site-c"].poll(), 30)
    check(code == 3, "revoked site-c rejoined after a restart (exit %s)" % code)
    refused = fed.get_json("/api/v1/clients")["refused"]
    check(any(r["client"] == "site-c" and "not a member" in r["reason"] for r in refused), "refusals: %s" % refused)
    rounds = fed.get_json("/api/v1/rounds")["rounds"]
    check(rounds[0]["round"] == 1 and rounds[committed - 1]["round"] == committed, "history after restart")
    check(wait_for(lambda: fed.get_json("/api/v1/status")["rounds_completed"] > committed, 30), "no round after restart")
    fed.coordinator.send_signal(signal.SIGTERM)
    check(fed.wait_coordinator(30) == 0, "SIGTERM did not stop gracefully:\n" + fed.tail("coordinator.log"))


def storm(fed, results, stop):
    """1,000 event subscribers open and drop, 20 at a time."""
    def one(n):
        for _ in range(n):
            if stop.is_set():
                return
            try:
                ev = EventStream(fed, fed.viewer_token, timeout=10)
                results.append(ev.status)
                ev.close()
            except OSError as e:
                results.append("error: %s" % e)
    threads = [threading.Thread(target=one, args=(50,)) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def under_load(build):
    print("== a federation runs to completion under load")
    fed = Federation(build, "admin-load")
    try:
        # Rounds of this small model take tens of milliseconds: the federation runs until the
        # storm is over and is then stopped after its open round (a fixed count of rounds ended
        # before the storm on a quiet machine, or a busy one that slowed the storm).
        fed.start_coordinator("--rounds", "100000")
        for c in fed.clients:
            fed.start_client(c)
        check(wait_for(lambda: fed.get_json("/api/v1/status")["clients_connected"] == 3, 30), "clients")
        stop = threading.Event()
        counts = {}
        hammering = threading.Thread(target=fed.hammer, args=(stop, counts))
        hammering.start()
        held = [EventStream(fed, fed.viewer_token) for _ in range(70)]
        statuses = sorted(e.status for e in held)
        check(statuses.count(200) == 64 and statuses.count(503) == 6, "held streams: %s" % statuses)
        refused = next(e for e in held if e.status == 503)
        check(b"too many event streams" in refused.buf, "503 without its reason: %s" % refused.buf[:200])
        for e in held:
            e.close()
        results = []
        storm(fed, results, stop)
        check(fed.coordinator.poll() is None, "the federation ended during the storm:\n" + fed.tail("coordinator.log"))
        bad = [r for r in results if r not in (200, 503)]
        check(len(results) == 1000 and not bad, "storm: %d answers, unexpected: %s" % (len(results), bad[:5]))
        gauge = lambda: [l for l in fed.https("GET", "/metrics", token=fed.viewer_token)[2].decode().splitlines()
                         if l.startswith("federa_admin_event_subscribers ")]
        check(wait_for(lambda: gauge() == ["federa_admin_event_subscribers 0"], 10), "streams left open: %s" % gauge())
        print("   storm: %d admitted, %d refused (503)" % (results.count(200), results.count(503)))
        r = fed.admin_cli("stop", "--after-round", token=fed.operator_token)
        check(r.returncode == 0, "stop: " + r.stdout + r.stderr)
        code = fed.wait_coordinator(300)
        stop.set()
        hammering.join()
        check(code == 0, "the federation failed under load:\n" + fed.tail("coordinator.log"))
        with open(fed.path("metrics.jsonl")) as f:
            got = [json.loads(l)["round"] for l in f]
        rounds = len(got)
        check(rounds > 0 and got == list(range(1, rounds + 1)), "rounds committed under load: %s" % got[-3:])
        check(set(counts) <= {200} and sum(counts.values()) > 0, "hammer answers: %s" % counts)
        print("   %d rounds committed; hammer: %d requests answered 200" % (rounds, counts.get(200, 0)))
    finally:
        fed.close()


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    build = sys.argv[1]
    fed = Federation(build, "admin-e2e")
    try:
        fed.start_coordinator("--rounds", "100000")
        for c in fed.clients:
            fed.start_client(c)
        auth_and_roles(fed)
        endpoints(fed)
        bad_input(fed)
        pause_resume(fed)
        revocation(fed)
        cli(fed)
        committed = stop_and_audit(fed)
        restart(fed, committed)
    finally:
        fed.close()
    under_load(build)
    print("admin e2e: 1 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
