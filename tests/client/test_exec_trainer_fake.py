"""A trainer program for the exec-trainer tests: the standard library and python/federa_trainer.py
(pure-Python backend), no torch. `python3 test_exec_trainer_fake.py MODE [HELPER_DIR]`; MODE picks
a well-behaved run or one of the ways a trainer goes wrong."""
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, sys.argv[2] if len(sys.argv) > 2 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import federa_trainer as fed  # noqa: E402

mode = sys.argv[1]
task = fed.load_task()
tensors, _ = fed.read_safetensors(task.input_model, backend="python")


def check_environment():
    """Everything the contract promises the program, or exit 4 saying what is missing."""
    env = os.environ
    problems = []
    for k, want in (("FEDERA_TASK", task.kind), ("FEDERA_ROUND", str(task.round)),
                    ("FEDERA_INPUT_MODEL", task.input_model),
                    ("FEDERA_OUTPUT_MODEL", task.output_model),
                    ("FEDERA_METRICS", task.metrics)):
        if env.get(k) != want:
            problems.append("%s=%r, task.json says %r" % (k, env.get(k), want))
    work = os.path.dirname(task.input_model)
    if os.stat(work).st_mode & 0o777 != 0o700:
        problems.append("work folder mode %o" % (os.stat(work).st_mode & 0o777))
    if "CREDENTIALS_DIRECTORY" in env:
        problems.append("CREDENTIALS_DIRECTORY leaked")
    if sorted(task.tensors) != sorted(tensors):
        problems.append("task.json tensors differ from global.safetensors")
    fds = [int(fd) for fd in os.listdir("/proc/self/fd") if int(fd) > 2]
    leaked = [fd for fd in fds if os.path.exists("/proc/self/fd/%d" % fd)
              and "socket" in os.readlink("/proc/self/fd/%d" % fd)]
    if leaked:
        problems.append("inherited sockets: %s" % leaked)
    if os.getpgrp() != os.getpid():
        problems.append("not its own process group")
    if problems:
        print("environment check failed: " + "; ".join(problems), file=sys.stderr)
        sys.exit(4)


def write_model(out):
    fed.write_safetensors(task.output_model, out)


def plus(delta):
    """Every float tensor moved by delta; integer (carried) tensors as they were."""
    return {k: fed.Plain(t.dtype, t.shape, [v + delta for v in t.values]
                         if t.dtype in ("F32", "F16", "BF16") else t.values)
            for k, t in tensors.items()}


def metrics(n=100, extra=None):
    m = {"num_examples": n, "metrics": {"train_loss": 0.5, "note": "text is skipped"}}
    m.update(extra or {})
    with open(task.metrics, "w") as f:
        json.dump(m, f)


first = next(iter(tensors))
if mode == "ok":
    check_environment()
    print("training on fake data")
    print("epoch 1 done", file=sys.stderr)
    if task.kind == "evaluate":
        with open(task.metrics, "w") as f:
            json.dump({"num_examples": 40, "metrics": {"loss": 0.25, "accuracy": 0.75}}, f)
    else:
        write_model(plus(0.5))
        metrics(100 + task.round)
elif mode == "regression":  # an evaluate task of a regression model: no accuracy, an r2
    with open(task.metrics, "w") as f:
        json.dump({"num_examples": 40, "metrics": {"loss": 3.5, "r2": 0.6}}, f)
elif mode == "bad_accuracy":
    with open(task.metrics, "w") as f:
        json.dump({"num_examples": 40, "metrics": {"loss": 3.5, "accuracy": 7}}, f)
elif mode == "fail":
    for i in range(80):
        print("stderr line %d" % i, file=sys.stderr)
    print("ValueError: the agency's data file is missing", file=sys.stderr)
    sys.exit(3)
elif mode == "later":
    print("GPU busy", file=sys.stderr)
    sys.exit(fed.TRY_LATER)
elif mode == "hang":
    print("hanging", file=sys.stderr, flush=True)
    time.sleep(3600)
elif mode == "hang_ignoring_term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("ignoring SIGTERM", file=sys.stderr, flush=True)
    time.sleep(3600)
elif mode == "grandchild":  # leaves a process in its group, with its pid in a file, then hangs
    p = subprocess.Popen(["sleep", "3600"])
    with open(sys.argv[3], "w") as f:
        f.write(str(p.pid))
    time.sleep(3600)
elif mode == "segfault":
    os.kill(os.getpid(), signal.SIGSEGV)
elif mode == "no_model":
    metrics()
elif mode == "missing_tensor":
    out = plus(0)
    del out[first]
    write_model(out)
    metrics()
elif mode == "extra_tensor":
    out = plus(0)
    out["extra.bias"] = fed.Plain("F32", [2], [0.0, 0.0])
    write_model(out)
    metrics()
elif mode == "wrong_shape":
    out = plus(0)
    t = out[first]
    out[first] = fed.Plain(t.dtype, [len(t.values) + 1], t.values + [0.0])
    write_model(out)
    metrics()
elif mode == "wrong_dtype":
    out = plus(0)
    out[first] = fed.Plain("F16", out[first].shape, out[first].values)
    write_model(out)
    metrics()
elif mode == "as_f32":  # every float tensor widened to F32 (a BF16 model trained in float32)
    out = {k: fed.Plain("F32", t.shape, t.values) if t.dtype in ("F16", "BF16") else t
           for k, t in plus(0).items()}
    write_model(out)
    metrics()
elif mode in ("nan", "inf"):
    out = plus(0)
    out[first].values[-1] = float(mode)
    write_model(out)
    metrics()
elif mode == "truncated":
    write_model(plus(0))
    size = os.path.getsize(task.output_model)
    with open(task.output_model, "r+b") as f:
        f.truncate(size - 3)
    metrics()
elif mode == "oversized":
    write_model(plus(0))
    with open(task.output_model, "ab") as f:
        f.write(b"\0" * (17 << 20))
    metrics()
elif mode == "metrics_not_json":
    write_model(plus(0))
    with open(task.metrics, "w") as f:
        f.write("{'num_examples': 10}")
elif mode == "zero_examples":
    write_model(plus(0))
    metrics(0)
elif mode == "absurd_examples":
    write_model(plus(0))
    metrics(10 ** 15)
else:
    print("unknown mode " + mode, file=sys.stderr)
    sys.exit(2)
