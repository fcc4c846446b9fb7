#!/usr/bin/env bash
# Chaos against the real programs (federa-pki, federa-coordinator, federa-client over TLS).
#   1. The coordinator is killed (SIGKILL and SIGTERM, alternately) at random instants, some of
#      them while it commits a round, and restarted with --resume each time. Checked: no exit
#      134/139 (nor any other signal than our SIGKILL), exit 0 after SIGTERM, global.safetensors
#      always loadable with finite values, every round exactly once in --metrics-out at the end,
#      and the clients (which reconnect on their own) exit 0.
#   2. SecAgg+ (5 members, t = 3) with members killed in each phase: AdvertiseKeys, ShareKeys,
#      MaskedInput, Unmasking. With one killed the round completes; with three killed (2 < t
#      survive) it is abandoned cleanly: the coordinator logs why, commits nothing, exits 1.
#      A member is caught in a phase by stopping it (SIGSTOP) where the phase needs it, and by
#      watching the bytes it has sent on its connection (`ss -i`, bytes_sent): each burst is one
#      protocol message.
# Usage: chaos.sh BUILD_DIR [--long]
#   short (CI): 4 coordinator kills, SecAgg+ kills in ShareKeys (1: survived; 3: abandoned)
#   --long:     20 coordinator kills, all four phases, survived and abandoned
# KEEP=1 keeps the work folder; CHAOS_SEED=N repeats a run's random instants.
set -euo pipefail
build="$(cd "$1" && pwd)"
mode="${2:-short}"
case "$mode" in short|--long) ;; *) echo "usage: chaos.sh BUILD_DIR [--long]" >&2; exit 2 ;; esac
work="$(mktemp -d /tmp/federa-chaos.XXXXXX)"
[ -d /usr/share/datasets/fashion-mnist ] || { echo "chaos: Fashion-MNIST is not installed (dataset-fashion-mnist); skipped"; exit 77; }
# Debian's interpreter, which has python3-numpy (a python3 earlier in PATH may not).
py=/usr/bin/python3
[ -x "$py" ] || py=python3
"$py" -c 'import numpy' 2>/dev/null || { echo "chaos: python3-numpy is missing; skipped"; exit 77; }
cleanup() { [ -n "${KEEP:-}" ] || rm -rf "$work"; }
trap cleanup EXIT
"$build/tools/federa-pki" init --dir "$work/pki" >/dev/null
for i in 0 1 2 3 4; do "$build/tools/federa-pki" issue --dir "$work/pki" --client "site-$i" >/dev/null; done

exec "$py" - "$build" "$work" "$mode" <<'PY'
import json, os, random, re, signal, socket, struct, subprocess, sys, time
import numpy as np

build, work, mode = sys.argv[1], sys.argv[2], sys.argv[3]
long_run = mode == "--long"
seed = int(os.environ.get("CHAOS_SEED", str(int(time.time()))))
rng = random.Random(seed)
coordinator = f"{build}/coordinator/federa-coordinator"
client_bin = f"{build}/client/federa-client"
# A long-lived agent (newer clients) needs --once to exit when the federation ends.
once = ["--once"] if "--once" in subprocess.run([client_bin, "--help"], capture_output=True, text=True).stdout else []
procs = []
print(f"chaos: seed {seed} (CHAOS_SEED={seed} repeats it), work folder {work}", flush=True)

def fail(msg, logs=()):
    print(f"FAIL: {msg}", file=sys.stderr)
    for path in logs:
        try:
            lines = open(path, errors="replace").read().splitlines()[-25:]
        except OSError:
            continue
        print(f"--- {path}", file=sys.stderr)
        print("\n".join(lines), file=sys.stderr)
    for p in procs:
        if p.poll() is None:
            p.kill()
    sys.exit(1)

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port

def spawn(args, log, cwd):
    p = subprocess.Popen(args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    procs.append(p)
    return p

def wait_log(path, pattern, timeout, proc=None, start=0):
    """Waits until the log (read from byte `start`) matches; returns the match or None."""
    until = time.time() + timeout
    rx = re.compile(pattern)
    while time.time() < until:
        try:
            with open(path, errors="replace") as f:
                f.seek(start)
                m = rx.search(f.read())
            if m:
                return m
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            return None
        time.sleep(0.02)
    return None

def crashed(code):
    # Popen: -N for a signal; a shell would say 128+N. 134/139 = SIGABRT/SIGSEGV.
    return code in (134, 139) or (code is not None and code < 0 and code != -signal.SIGKILL)

def check_safetensors(path):
    """Loads a safetensors file as NumPy would and checks its values are finite."""
    b = open(path, "rb").read()
    if len(b) < 8:
        return f"{path}: {len(b)} bytes"
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    data = b[8 + n:]
    end = 0
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if t["dtype"] != "F32":
            return f"{name}: dtype {t['dtype']}"
        lo, hi = t["data_offsets"]
        a = np.frombuffer(data[lo:hi], dtype="<f4").reshape(t["shape"])
        if not np.isfinite(a).all():
            return f"{name}: non-finite values"
        end = max(end, hi)
    if end != len(data):
        return f"{len(data) - end} bytes after the last tensor"
    return None

def metrics_rounds(path):
    if not os.path.exists(path):
        return []
    return [json.loads(l)["round"] for l in open(path) if l.strip()]

# ---------------------------------------------------------------------------------------------
# 1. Kill and restart the coordinator.

def kill_restart(kills):
    d = f"{work}/resume"
    os.makedirs(d)
    port = free_port()
    # Rounds are short (70-110 ms on a 2-core VM): enough of them that the kills land
    # mid-federation (164 rounds were done by the 13th of 20 kills on 2026-12-01).
    rounds = 25 * kills + 4
    log = f"{d}/coordinator.log"
    common = [coordinator, "--pki", f"{work}/pki", "--listen", f"127.0.0.1:{port}", "--model", "mlp:784,64,10",
              "--rounds", str(rounds), "--min-clients", "3", "--local-epochs", "1", "--lr", "0.05",
              "--round-timeout", "60", "--state-dir", "state", "--metrics-out", "metrics.jsonl", "--threads", "2"]
    def client(i):
        return spawn([client_bin, "--coordinator", f"127.0.0.1:{port}", "--kit", f"{work}/pki/clients/site-{i}",
                      "--data", "fashion-mnist", "--partition-index", str(i), "--partition-count", "20",
                      "--retry-max", "1", "--give-up-after", "120", "--log-level", "warn"] + once,
                     f"{d}/client-{i}.log", d)
    clients = [client(i) for i in range(3)]
    logs = [log] + [f"{d}/client-{i}.log" for i in range(3)]
    restarted = 0

    def federation_done():
        return len(metrics_rounds(f"{d}/metrics.jsonl")) == rounds

    def revive_clients():
        # Known finding (notes: "refused while shutting down"): a member that connects while the
        # coordinator stops is refused with "the coordinator is shutting down" and gives up for
        # good. Its service unit would restart it (Restart=on-failure); so does this test, and
        # counts it. Any other exit is a failure.
        nonlocal restarted
        for i, c in enumerate(clients):
            if c.poll() is None:
                continue
            text = open(f"{d}/client-{i}.log", errors="replace").read()
            if c.returncode != 0 and "shutting down" in text.splitlines()[-1]:
                restarted += 1
                clients[i] = client(i)
            elif c.returncode == 0 and federation_done():
                continue  # the last round was committed just before a kill: the federation ended
            else:
                fail(f"client site-{i} exited {c.returncode} during the kills", logs)
    done = 0
    state_json = f"{d}/state/state.json"
    while done < kills:
        revive_clients()
        if federation_done():
            break
        resume = os.path.exists(state_json)
        if not resume and os.path.exists(f"{d}/metrics.jsonl"):
            if metrics_rounds(f"{d}/metrics.jsonl"):
                fail("metrics lines exist but nothing was committed", logs)
            os.remove(f"{d}/metrics.jsonl")
        start = os.path.getsize(log) if os.path.exists(log) else 0
        coord = spawn(common + (["--resume"] if resume else []), log, d)
        if not wait_log(log, r"listening on", 30, coord, start):
            fail(f"coordinator did not start (exit {coord.poll()})", logs)
        sig = signal.SIGKILL if done % 2 == 0 else signal.SIGTERM
        at_commit = done % 3 == 2
        if at_commit:
            # Wait for a commit to begin (a new round file or a temp file in the state folder)
            # and kill at once: the instant lands inside StateStore::commit.
            before = set(os.listdir(f"{d}/state")) if os.path.isdir(f"{d}/state") else set()
            until = time.time() + 60
            while time.time() < until and coord.poll() is None:
                now = set(os.listdir(f"{d}/state")) if os.path.isdir(f"{d}/state") else set()
                if now - before:
                    break
                time.sleep(0.0005)
            what = "during a commit"
        else:
            delay = rng.uniform(0.2, 3.0)
            time.sleep(delay)
            what = f"after {delay:.2f} s"
        if coord.poll() is not None:
            if coord.returncode == 0 and len(metrics_rounds(f"{d}/metrics.jsonl")) == rounds:
                break  # finished before this kill; the checks below still run
            fail(f"coordinator exited {coord.returncode} before the kill", logs)
        coord.send_signal(sig)
        try:
            code = coord.wait(timeout=60)
        except subprocess.TimeoutExpired:
            fail(f"coordinator did not exit within 60 s of {sig.name}", logs)
        committed = json.load(open(state_json))["round"] if os.path.exists(state_json) else 0
        print(f"   kill {done + 1}/{kills}: {sig.name} {what}: exit {code}, committed round {committed}", flush=True)
        if crashed(code):
            fail(f"coordinator crashed (exit {code}) on {sig.name} {what}", logs)
        if sig == signal.SIGTERM and code != 0:
            fail(f"coordinator exited {code} after SIGTERM, expected 0", logs)
        if os.path.exists(f"{d}/state/global.safetensors"):
            if (why := check_safetensors(f"{d}/state/global.safetensors")):
                fail(f"global.safetensors not loadable after {sig.name} {what}: {why}", logs)
        seen = metrics_rounds(f"{d}/metrics.jsonl")
        if seen != sorted(set(seen)) or (seen and seen != list(range(1, seen[-1] + 1))):
            fail(f"metrics rounds are {seen} after {sig.name} {what}", logs)
        done += 1
    if done < kills:
        print(f"   the federation finished after {done} kills", flush=True)
    else:
        revive_clients()
        coord = spawn(common + ["--resume"], log, d)
        try:
            code = coord.wait(timeout=300)
        except subprocess.TimeoutExpired:
            fail("the last restart did not finish the federation in 300 s", logs)
        if code != 0:
            fail(f"the last restart exited {code}", logs)
    seen = metrics_rounds(f"{d}/metrics.jsonl")
    if seen != list(range(1, rounds + 1)):
        fail(f"metrics rounds are {seen}, expected each of 1..{rounds} once", logs)
    if (why := check_safetensors(f"{d}/state/global.safetensors")):
        fail(f"final global.safetensors: {why}", logs)
    meta = json.loads(open(f"{d}/state/global.safetensors", "rb").read()[8:][:struct.unpack("<Q", open(f"{d}/state/global.safetensors", "rb").read(8))[0]])
    if meta.get("__metadata__", {}).get("federa.round") != str(rounds):
        fail(f"global.safetensors is from round {meta.get('__metadata__')}, expected {rounds}", logs)
    for i, c in enumerate(clients):
        try:
            code = c.wait(timeout=60)
        except subprocess.TimeoutExpired:
            fail(f"client site-{i} did not exit after the federation ended", logs)
        if code != 0:
            fail(f"client site-{i} exited {code}", logs)
    print(f"   {done} kills, {rounds} rounds each committed once, clients exited 0", flush=True)
    if restarted:
        print(f"   FINDING: {restarted} member(s) gave up after being refused with 'the coordinator is shutting "
              f"down' and were restarted (as their service unit would)", flush=True)

# ---------------------------------------------------------------------------------------------
# 2. SecAgg+ with members killed in one phase.

SS_PORT = [0]  # the coordinator port of the scenario being run

def wchar(pid):
    """Bytes the member `pid` has sent to the coordinator (its TCP connection, as `ss` shows)."""
    out = subprocess.run(["ss", "-tinpH", f"dport = :{SS_PORT[0]}"], capture_output=True, text=True).stdout
    owner = None
    for line in out.splitlines():
        m = re.search(r"pid=(\d+),", line)
        if m:
            owner = int(m.group(1))
            continue
        m = re.search(r"bytes_sent:(\d+)", line)
        if owner == pid:
            return int(m.group(1)) if m else 0
    return 0

def wait_write(pid, above, timeout, min_bytes=1, quiet_s=0.05):
    """Waits until process `pid` has written at least `min_bytes` more than `above`, then until
    it stops writing for `quiet_s` (the end of one message; 0: return at once); returns the new
    count, or None after `timeout`."""
    until = time.time() + timeout
    while time.time() < until:
        w = wchar(pid)
        if w >= above + min_bytes:
            last, quiet = w, time.time()
            while time.time() - quiet < quiet_s:
                time.sleep(0.0005)
                w = wchar(pid)
                if w != last:
                    last, quiet = w, time.time()
            return last
        time.sleep(0.0005)
    return None

PHASES = ["advertise", "share", "masked", "unmask"]

def secagg_scenario(phase, victims):
    d = f"{work}/secagg-{phase}-{victims}"
    os.makedirs(d)
    port = free_port()
    SS_PORT[0] = port
    log = f"{d}/coordinator.log"
    params = 784 * 32 + 32 + 32 * 10 + 10
    coord = spawn([coordinator, "--pki", f"{work}/pki", "--listen", f"127.0.0.1:{port}", "--model", "mlp:784,32,10",
                   "--rounds", "1", "--min-clients", "3", "--min-available-clients", "5", "--round-retries", "0",
                   "--secure-aggregation", "secagg+", "--secagg-neighbors", "4", "--secagg-threshold", "3",
                   "--secagg-phase-timeout", "8", "--round-timeout", "40", "--local-epochs", "6",
                   "--state-dir", "state", "--metrics-out", "metrics.jsonl", "--threads", "2"], log, d)
    logs = [log] + [f"{d}/client-{i}.log" for i in range(5)]
    if not wait_log(log, r"listening on", 30, coord):
        fail("secagg: coordinator did not start", logs)
    # site-0 .. site-(victims-1) are killed; site-4 stalls a phase so the victims can be caught.
    victim_ids = list(range(victims))
    staller = 4
    def client(i):
        # Training time separates ShareKeys from the masked input: victims train on 12k examples
        # (time to kill one in MaskedInput), the staller on 30k (time to stop it there), 6 epochs
        # (with 2, a whole round took 0.35 s on 2026-12-01: too quick to catch a phase).
        count = 2 if i == staller else 5 if i in victim_ids else 20
        part = ["--partition-index", str(i % count), "--partition-count", str(count)]
        return spawn([client_bin, "--coordinator", f"127.0.0.1:{port}", "--kit", f"{work}/pki/clients/site-{i}",
                      "--data", "fashion-mnist"] + part + [
                      "--retry-max", "1", "--give-up-after", "60", "--log-level", "error"] + once,
                     f"{d}/client-{i}.log", d)

    first = victim_ids if phase == "advertise" else [staller]
    clients = {}
    for i in first:
        clients[i] = client(i)
        if not wait_log(log, rf"client 'site-{i}' joined", 60, coord):
            fail(f"secagg {phase}: site-{i} did not join", logs)
    for i in first:
        clients[i].send_signal(signal.SIGSTOP)  # selected in the round, but answers nothing yet
    # The victims join next; what they have written once joined is the base their protocol
    # messages are counted from (the round cannot start before the last member joins).
    base = {}
    for i in victim_ids:
        if i in clients:
            continue
        clients[i] = client(i)
        if not wait_log(log, rf"client 'site-{i}' joined", 60, coord):
            fail(f"secagg {phase}: site-{i} did not join", logs)
        time.sleep(0.1)
        base[i] = wchar(clients[i].pid)
    for i in range(5):
        if i not in clients:
            clients[i] = client(i)
    if not wait_log(log, r"round 1/1: training on 5", 90, coord):
        fail(f"secagg {phase}: the round did not start with 5 members", logs)

    def wait_all(level, min_bytes=1, quiet_s=0.05):
        for i in victim_ids:
            w = wait_write(clients[i].pid, level[i], 60, min_bytes, quiet_s)
            if w is None:
                fail(f"secagg {phase}: site-{i} sent nothing", logs)
            level[i] = w

    if phase == "advertise":
        for i in victim_ids:
            clients[i].kill()  # never advertised
    elif phase == "share":
        wait_all(base)  # AdvertiseKeys sent; the phase is held open by the stopped staller
        for i in victim_ids:
            clients[i].kill()
        clients[staller].send_signal(signal.SIGCONT)
    elif phase == "masked":
        wait_all(base)  # AdvertiseKeys
        clients[staller].send_signal(signal.SIGCONT)
        wait_all(base, quiet_s=0)  # ShareKeys going out: the victims train next
        for i in victim_ids:
            clients[i].kill()
    else:  # unmask: victims send their masked inputs, then stop answering
        wait_all(base)  # AdvertiseKeys
        s0 = wchar(clients[staller].pid)
        clients[staller].send_signal(signal.SIGCONT)
        # The staller's AdvertiseKeys and ShareKeys, then 0.3 s of quiet: it is training.
        s1 = wait_write(clients[staller].pid, s0, 60, 1, 0.3)
        clients[staller].send_signal(signal.SIGSTOP)  # holds MaskedInput open
        if s1 is None:
            fail("secagg unmask: the staller did not take part", logs)
        wait_all(base, min_bytes=4 * params)  # ShareKeys + the masked vector
        for i in victim_ids:
            clients[i].send_signal(signal.SIGSTOP)  # answers no UnmaskRequest
        clients[staller].send_signal(signal.SIGCONT)
        if wait_write(clients[staller].pid, s1, 120, 4 * params) is None:
            fail("secagg unmask: the staller sent no masked input", logs)
        time.sleep(0.5)  # MaskedInput ends; the UnmaskRequests reach the stopped victims
        for i in victim_ids:
            clients[i].kill()
    try:
        code = coord.wait(timeout=120)
    except subprocess.TimeoutExpired:
        fail(f"secagg {phase}: the coordinator did not end the round", logs)
    for c in clients.values():
        if c.poll() is None:
            c.send_signal(signal.SIGCONT)
    survivors = 5 - victims
    if crashed(code):
        fail(f"secagg {phase}: coordinator crashed (exit {code})", logs)
    rounds = metrics_rounds(f"{d}/metrics.jsonl")
    if survivors >= 3:
        if code != 0 or rounds != [1]:
            fail(f"secagg {phase}: {survivors} of 5 survived (t = 3) but the round did not complete "
                 f"(exit {code}, metrics {rounds})", logs)
        line = json.loads(open(f"{d}/metrics.jsonl").readline())
        included = 5 if phase == "unmask" else survivors  # a victim's masked input stays in the sum
        summed = re.search(r"secure aggregation of (\d+) clients", open(log, errors="replace").read())
        if not summed or int(summed.group(1)) != included:
            fail(f"secagg {phase}: the coordinator summed {summed and summed.group(1)} inputs, expected {included}", logs)
        outcome = f"completed with {included} inputs summed"
        if line["clients"] != included:
            # A member that dies after its masked input was summed counts as accepted: its
            # update is in the model (it was reported dropped before; test_secure_attacks).
            fail(f"secagg {phase}: the metrics line says clients={line['clients']}, expected {included} (a member summed before it left counts)", logs)
    else:
        if code != 1 or rounds:
            fail(f"secagg {phase}: {survivors} of 5 survived (t = 3): expected an abandoned round and exit 1, "
                 f"got exit {code}, metrics {rounds}", logs)
        if not re.search(r"abandon", open(log, errors="replace").read()):
            fail(f"secagg {phase}: the coordinator did not say the round was abandoned", logs)
        outcome = "abandoned, exit 1"
    for c in clients.values():
        if c.poll() is None:
            c.kill()
        c.wait()
        if crashed(c.returncode):
            fail(f"secagg {phase}: a client crashed (exit {c.returncode})", logs)
    print(f"   SecAgg+ {victims} killed in {phase}: {outcome}", flush=True)

print("== coordinator killed and restarted with --resume", flush=True)
kill_restart(20 if long_run else 4)
print("== SecAgg+ members killed by phase", flush=True)
if long_run:
    for phase in PHASES:
        secagg_scenario(phase, 1)
        secagg_scenario(phase, 3)
else:
    # Both from ShareKeys, where the stopped staller holds the phase open without any timing.
    # Catching a member in Unmasking relies on the staller training for more than 0.3 s, which
    # a quiet machine does not guarantee (the round then completes before the victims stop):
    # that scenario runs with --long.
    secagg_scenario("share", 1)
    secagg_scenario("share", 3)
print("chaos: passed", flush=True)
PY
