"""A federation on 127.0.0.1 for the admin listener's end-to-end tests: the real federa-pki,
federa-coordinator, federa-client and federa-admin binaries, a small CSV data set, admin kits
and tokens, and an HTTPS helper that speaks to the admin listener the way curl or a browser does.

    fed = Federation(build_dir, "admin-e2e")      # PKI, data, members file in a temp folder
    fed.start_coordinator("--rounds", "50")
    for c in fed.clients: fed.start_client(c)
    status, headers, body = fed.https("GET", "/api/v1/status", token=fed.viewer_token)
    fed.close()                                    # kills what is still running, removes the folder
"""
import http.client
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

SKIP = 77


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr, flush=True)
    raise SystemExit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(pred, timeout, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


class Federation:
    def __init__(self, build, name, clients=("site-a", "site-b", "site-c")):
        self.build = os.path.abspath(build)
        self.bin = {
            "pki": os.path.join(self.build, "tools", "federa-pki"),
            "admin": os.path.join(self.build, "tools", "federa-admin"),
            "coordinator": os.path.join(self.build, "coordinator", "federa-coordinator"),
            "client": os.path.join(self.build, "client", "federa-client"),
        }
        for b in self.bin.values():
            check(os.access(b, os.X_OK), b + " is missing: build first")
        self.work = tempfile.mkdtemp(prefix="federa-%s." % name)
        self.clients = list(clients)
        self.procs = {}
        self.port = free_port()
        self.admin_port = free_port()
        self.coordinator = None
        self._make_pki()
        self._make_data()
        self.members = os.path.join(self.work, "members.txt")
        with open(self.members, "w") as f:
            f.write("# members of the test federation\n" + "".join(c + "\n" for c in self.clients))

    def path(self, *p):
        return os.path.join(self.work, *p)

    def run(self, *args, **kw):
        return subprocess.run(list(args), cwd=self.work, capture_output=True, text=True, **kw)

    def _make_pki(self):
        pki = self.bin["pki"]
        r = self.run(pki, "init", "--dir", "pki")
        check(r.returncode == 0, "federa-pki init: " + r.stderr)
        for c in self.clients + ["site-x"]:
            check(self.run(pki, "issue", "--dir", "pki", "--client", c).returncode == 0, "issue " + c)
        check(self.run(pki, "issue", "--dir", "pki", "--admin", "alice", "--role", "operator").returncode == 0, "alice")
        check(self.run(pki, "issue", "--dir", "pki", "--admin", "bob", "--role", "viewer").returncode == 0, "bob")
        self.operator_token = self._token("ops", "operator")
        self.viewer_token = self._token("prometheus", "viewer")

    def _token(self, name, role):
        r = self.run(self.bin["pki"], "token", "--dir", "pki", "--name", name, "--role", role)
        check(r.returncode == 0, "federa-pki token: " + r.stderr)
        return r.stdout.strip().splitlines()[0]

    def _make_data(self):
        """Two classes of 4 features: data.csv split among the clients, eval.csv held out."""
        rng = random.Random(7)
        for name, rows in (("data.csv", 900), ("eval.csv", 300)):
            with open(self.path(name), "w") as f:
                f.write("a,b,c,d,label\n")
                for _ in range(rows):
                    y = rng.randint(0, 1)
                    f.write(",".join("%.3f" % rng.gauss(1.5 * y, 1.0) for _ in range(4)) + ",%d\n" % y)

    def expired_admin_kit(self):
        """An operator kit whose certificate expired in 2020, signed by the federation CA."""
        d = self.path("expired")
        os.makedirs(d, exist_ok=True)
        open(os.path.join(d, "index.txt"), "w").close()
        with open(os.path.join(d, "serial"), "w") as f:
            f.write("1000\n")
        with open(os.path.join(d, "ca.cnf"), "w") as f:
            f.write("""[ ca ]
default_ca = test_ca
[ test_ca ]
database = index.txt
serial = serial
new_certs_dir = .
default_md = sha256
policy = anything
unique_subject = no
[ anything ]
commonName = supplied
[ admin_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = 2.25.118243678027174591455259721420516730177.1
2.25.118243678027174591455259721420516730177.2 = ASN1:UTF8String:operator
""")
        ca = self.path("pki")
        r = subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                            "-keyout", "key.pem", "-subj", "/CN=old-admin", "-out", "req.csr"], cwd=d, capture_output=True)
        check(r.returncode == 0, "openssl req failed")
        r = subprocess.run(["openssl", "ca", "-batch", "-config", "ca.cnf", "-cert", ca + "/ca.pem", "-keyfile",
                            ca + "/ca.key", "-in", "req.csr", "-out", "cert.pem", "-startdate", "20200101000000Z",
                            "-enddate", "20200201000000Z", "-extensions", "admin_ext", "-notext"],
                           cwd=d, capture_output=True)
        check(r.returncode == 0, "openssl ca failed: %s" % r.stderr)
        return d

    # ---- processes -----------------------------------------------------------------------------
    def start_coordinator(self, *extra, min_clients=3, model="mlp:4,8,2", local_epochs=1, log="coordinator.log"):
        args = [self.bin["coordinator"], "--pki", "pki", "--listen", "127.0.0.1:%d" % self.port,
                "--admin-listen", "127.0.0.1:%d" % self.admin_port, "--admin-token-file", "pki/admin-tokens",
                "--members", "members.txt", "--model", model, "--lr", "0.1", "--local-epochs", str(local_epochs),
                "--min-clients", str(min_clients), "--round-timeout", "30", "--state-dir", "state", "--metrics-out",
                "metrics.jsonl", "--threads", "2"] + list(extra)
        self.coordinator = subprocess.Popen(args, cwd=self.work, stdout=open(self.path("coordinator.out"), "a"),
                                            stderr=open(self.path(log), "a"))
        check(wait_for(lambda: self._listening(), 20), "the coordinator did not start:\n" + self.tail(log))
        return self.coordinator

    def _listening(self):
        if self.coordinator.poll() is not None:
            fail("the coordinator exited (%s):\n%s" % (self.coordinator.returncode, self.tail("coordinator.log")))
        try:
            return self.https("GET", "/healthz")[0] == 200
        except OSError:
            return False

    def start_client(self, name, *extra):
        i = self.clients.index(name) if name in self.clients else 0
        args = [self.bin["client"], "--coordinator", "127.0.0.1:%d" % self.port, "--kit", "pki/clients/" + name,
                "--data", "csv:data.csv:label=label", "--partition-index", str(i), "--partition-count",
                str(len(self.clients)), "--retry-max", "1", "--give-up-after", "60", "--once"] + list(extra)
        p = subprocess.Popen(args, cwd=self.work, stdout=subprocess.DEVNULL, stderr=open(self.path(name + ".log"), "a"))
        self.procs[name] = p
        return p

    def tail(self, name, n=25):
        try:
            with open(self.path(name)) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no %s)" % name

    def wait_coordinator(self, timeout):
        try:
            return self.coordinator.wait(timeout)
        except subprocess.TimeoutExpired:
            fail("the coordinator did not exit within %d s:\n%s" % (timeout, self.tail("coordinator.log")))

    def close(self):
        for p in list(self.procs.values()) + ([self.coordinator] if self.coordinator else []):
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
        if os.environ.get("KEEP"):
            print("kept " + self.work)
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    # ---- the admin listener ---------------------------------------------------------------------
    def context(self, kit=None):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_verify_locations(self.path("pki", "ca.pem"))
        if kit:
            ctx.load_cert_chain(os.path.join(kit, "cert.pem"), os.path.join(kit, "key.pem"))
        return ctx

    def kit(self, kind, name):
        return self.path("pki", kind, name)

    def connection(self, kit=None, timeout=10):
        return http.client.HTTPSConnection("127.0.0.1", self.admin_port, context=self.context(kit), timeout=timeout)

    def https(self, method, path, body=None, kit=None, token=None, headers=None, json_body=True, conn=None):
        h = dict(headers or {})
        if token:
            h["Authorization"] = "Bearer " + token
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            if json_body:
                h.setdefault("Content-Type", "application/json")
        own = conn is None
        c = conn or self.connection(kit)
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            if own:
                c.close()

    def get_json(self, path, token=None, kit=None):
        status, _, body = self.https("GET", path, token=token or self.viewer_token, kit=kit)
        check(status == 200, "GET %s answered %d: %s" % (path, status, body[:300]))
        return json.loads(body)

    def paused_after(self, rounds, *extra):
        """Starts the coordinator and the clients, lets `rounds` rounds commit, then pauses, so
        the number of committed rounds holds still; returns that number."""
        self.start_coordinator("--rounds", "100000", *extra)
        for c in self.clients:
            self.start_client(c)
        check(wait_for(lambda: self.get_json("/api/v1/status")["rounds_completed"] >= rounds, 60), "no rounds committed")
        check(self.https("POST", "/api/v1/pause", body={}, token=self.operator_token)[0] == 200, "pause")
        check(wait_for(lambda: self.get_json("/api/v1/status")["phase"] == "paused", 30), "not paused")
        return self.get_json("/api/v1/status")["rounds_completed"]

    def hammer(self, stop, counts, limit=3000, rate=None):
        """A bounded loop of reads over one keep-alive connection: at most `limit` requests, at
        most `rate` a second when given, until `stop` is set or the coordinator exits."""
        conn = self.connection()
        paths = ["/api/v1/status", "/api/v1/clients", "/api/v1/rounds", "/metrics", "/api/v1/members"]
        next_at = time.monotonic()
        for i in range(limit):
            if stop.is_set():
                break
            try:
                s, _, _ = self.https("GET", paths[i % len(paths)], token=self.viewer_token, conn=conn)
                counts[s] = counts.get(s, 0) + 1
            except OSError:
                if self.coordinator.poll() is not None:
                    break
                conn = self.connection()
            if rate:
                next_at += 1.0 / rate
                time.sleep(max(0.0, next_at - time.monotonic()))
        conn.close()

    def admin_cli(self, *args, token=None, kit=None):
        cmd = [self.bin["admin"], "--server", "127.0.0.1:%d" % self.admin_port]
        if kit:
            cmd += ["--kit", kit]
        env = dict(os.environ)
        if token:
            env["FEDERA_ADMIN_TOKEN"] = token
            cmd += ["--ca", self.path("pki", "ca.pem")]
        return subprocess.run(cmd + list(args), cwd=self.work, capture_output=True, text=True, env=env, timeout=60)
