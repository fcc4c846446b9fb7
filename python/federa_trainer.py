"""federa_trainer: join a federa federation from your own training script.

One file, no pip: the standard library, plus torch or numpy when installed (Debian 12's
python3-torch 1.13 is enough; no safetensors package is needed). Copy it next to your script or
put its folder on PYTHONPATH.

federa-client runs your script once per task (docs/external-trainer.md) with FEDERA_* variables
set. Outside federa (FEDERA_TASK unset) `active()` is False and your script runs as it always did:

    import federa_trainer as fed
    model = Net()
    if fed.active():
        task = fed.load_global(model)          # the global model into your module (DDP ok)
        epochs = task.hyperparameters.get("local_epochs", epochs)
        if task.kind == "evaluate":
            loss, acc, n = evaluate(model, test_loader)
            fed.save_metrics(n, {"loss": loss, "accuracy": acc})
            raise SystemExit(0)
    train(model, train_loader, epochs)
    if fed.active():
        fed.save_update(model, num_examples=len(train_set), metrics={"train_loss": loss})

Exit status 0 means done, 75 (fed.TRY_LATER) asks federa to try later, anything else fails the
task; the last lines of stderr reach the coordinator as the reason.

Lower level: read_safetensors(path) / write_safetensors(path, tensors) for F32, F16, BF16, F64,
I64, I32, I16, I8, U8 and BOOL, returning torch tensors, numpy arrays or, with neither, `Plain`
objects holding a flat list (backend="torch" | "numpy" | "python" | "auto").
"""

import array
import json
import math
import os
import struct
import sys

try:  # optional
    import torch
except ImportError:  # pragma: no cover - depends on the machine
    torch = None
try:  # optional
    import numpy
except ImportError:  # pragma: no cover
    numpy = None

__all__ = ["active", "load_task", "load_global", "save_update", "save_metrics", "state_dict_for",
           "read_header", "read_safetensors", "write_safetensors", "Plain", "Task", "TRY_LATER"]

TRY_LATER = 75  # exit status: federa retries the task later (sysexits EX_TEMPFAIL)
MAX_HEADER = 100 * 1000 * 1000

# dtype: (bytes per element, array/struct code or None for the 16-bit floats)
_DTYPES = {"F64": (8, "d"), "F32": (4, "f"), "F16": (2, "e"), "BF16": (2, None),
           "I64": (8, "q"), "I32": (4, "i"), "I16": (2, "h"), "I8": (1, "b"),
           "U8": (1, "B"), "BOOL": (1, "?")}

if sys.byteorder != "little":  # pragma: no cover
    raise ImportError("federa_trainer: safetensors data is little-endian; this machine is not")


class Plain:
    """A tensor without torch or numpy: dtype, shape and a flat list of Python numbers."""

    def __init__(self, dtype, shape, values):
        self.dtype, self.shape, self.values = dtype, list(shape), list(values)

    def __repr__(self):
        return "Plain(%s, %s, %d values)" % (self.dtype, self.shape, len(self.values))


# ---------------------------------------------------------------------------------------------
# 16-bit floats without numpy's help

def _bf16_to_floats(raw):
    halves = array.array("H", raw)
    return list(array.array("f", array.array("I", [h << 16 for h in halves]).tobytes()))


def _floats_to_bf16(values):
    bits = array.array("I", array.array("f", values).tobytes())
    out = array.array("H")
    for b in bits:
        if (b & 0x7F800000) == 0x7F800000 and (b & 0x7FFFFF):  # NaN stays a (quiet) NaN
            out.append((b >> 16) | 0x40)
        else:  # round to nearest, ties to even
            out.append(((b + 0x7FFF + ((b >> 16) & 1)) >> 16) & 0xFFFF)
    return out.tobytes()


def _np_bf16_to_f32(raw, count):
    u = numpy.frombuffer(raw, dtype="<u2", count=count).astype(numpy.uint32) << 16
    return u.view(numpy.float32)


def _np_f32_to_bf16(a):
    b = numpy.ascontiguousarray(a, dtype=numpy.float32).reshape(-1).view(numpy.uint32)
    nan = (b & 0x7F800000) == 0x7F800000
    nan &= (b & 0x7FFFFF) != 0
    rounded = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(numpy.uint16)
    return numpy.where(nan, ((b >> 16) | 0x40).astype(numpy.uint16), rounded).tobytes()


# ---------------------------------------------------------------------------------------------
# safetensors

def _backend(name):
    if name == "auto":
        return "torch" if torch is not None else ("numpy" if numpy is not None else "python")
    if name == "torch" and torch is None:
        raise ImportError("backend 'torch' asked for, but torch is not installed")
    if name == "numpy" and numpy is None:
        raise ImportError("backend 'numpy' asked for, but numpy is not installed")
    if name not in ("torch", "numpy", "python"):
        raise ValueError("backend must be auto, torch, numpy or python, not %r" % name)
    return name


def _torch_dtypes():
    return {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
            "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32, "I16": torch.int16,
            "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}


def _decode(buf, start, end, dtype, shape, backend):
    size, code = _DTYPES[dtype]
    count = (end - start) // size
    if backend == "torch":
        if count == 0:
            return torch.zeros(shape, dtype=_torch_dtypes()[dtype])
        return torch.frombuffer(buf, dtype=_torch_dtypes()[dtype], count=count,
                                offset=start).reshape(shape)
    if backend == "numpy":
        if dtype == "BF16":  # numpy has no bfloat16: widened to float32, narrowed on writing
            return _np_bf16_to_f32(memoryview(buf)[start:end], count).reshape(shape)
        np_dtype = {"BOOL": numpy.bool_}.get(dtype, "<" + {"e": "f2"}.get(code, code))
        return numpy.frombuffer(buf, dtype=np_dtype, count=count, offset=start).reshape(shape)
    raw = bytes(buf[start:end])
    if dtype == "BF16":
        return Plain(dtype, shape, _bf16_to_floats(raw))
    return Plain(dtype, shape, struct.unpack("<%d%s" % (count, code), raw))


def read_header(path):
    """{name: (dtype, shape)} from a safetensors file's header, without reading its data."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > MAX_HEADER:
            raise ValueError("%s: header length %d is too large" % (path, n))
        header = json.loads(f.read(n).decode("utf-8"))
    header.pop("__metadata__", None)
    return {k: (v["dtype"], list(v["shape"])) for k, v in header.items()}


def read_safetensors(path, backend="auto"):
    """Returns ({name: tensor} in file order, {metadata})."""
    backend = _backend(backend)
    with open(path, "rb") as f:
        buf = bytearray(f.read())
    if len(buf) < 8:
        raise ValueError("%s: shorter than the 8-byte header length" % path)
    (n,) = struct.unpack("<Q", bytes(buf[:8]))
    if n > len(buf) - 8 or n > MAX_HEADER:
        raise ValueError("%s: header length %d runs past the end of the file" % (path, n))
    header = json.loads(bytes(buf[8:8 + n]).decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError("%s: the header is not a JSON object" % path)
    metadata = header.pop("__metadata__", None) or {}
    data_start, data_size = 8 + n, len(buf) - 8 - n
    entries = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])
    out, expect = {}, 0
    for name, e in entries:
        dtype, shape, (b, end) = e["dtype"], list(e["shape"]), e["data_offsets"]
        if dtype not in _DTYPES:
            raise ValueError("%s: tensor %r has dtype %s, which this reader does not know"
                             % (path, name, dtype))
        count = 1
        for d in shape:
            count *= d
        if b != expect or end < b or end > data_size or end - b != count * _DTYPES[dtype][0]:
            raise ValueError("%s: tensor %r has bad data_offsets %r" % (path, name, [b, end]))
        expect = end
        out[name] = _decode(buf, data_start + b, data_start + end, dtype, shape, backend)
    if expect != data_size:
        raise ValueError("%s: %d bytes after the last tensor" % (path, data_size - expect))
    return out, metadata


def _encode(t):
    """(dtype, shape, bytes) of a torch tensor, numpy array or Plain."""
    if isinstance(t, Plain):
        code = _DTYPES[t.dtype][1]
        if t.dtype == "BF16":
            return t.dtype, t.shape, _floats_to_bf16(t.values)
        return t.dtype, t.shape, struct.pack("<%d%s" % (len(t.values), code), *t.values)
    if torch is not None and isinstance(t, torch.Tensor):
        names = {v: k for k, v in _torch_dtypes().items()}
        if t.dtype not in names:
            raise TypeError("tensors of %s cannot be written" % t.dtype)
        flat = t.detach().cpu().contiguous().reshape(-1)
        raw = flat.view(torch.uint8).numpy().tobytes() if numpy is not None else bytes(
            flat.view(torch.uint8).tolist())
        return names[t.dtype], list(t.shape), raw
    if numpy is not None and isinstance(t, numpy.ndarray):
        kinds = {"f8": "F64", "f4": "F32", "f2": "F16", "i8": "I64", "i4": "I32", "i2": "I16",
                 "i1": "I8", "u1": "U8", "b1": "BOOL"}
        key = t.dtype.kind + str(t.dtype.itemsize)
        if key not in kinds:
            raise TypeError("numpy arrays of %s cannot be written" % t.dtype)
        return kinds[key], list(t.shape), numpy.ascontiguousarray(t).astype(
            t.dtype.newbyteorder("<"), copy=False).tobytes()
    raise TypeError("cannot write a %s as a tensor" % type(t).__name__)


def write_safetensors(path, tensors, metadata=None, dtypes=None):
    """Writes {name: tensor} atomically (temp file + rename). `dtypes` ({name: "BF16"}) stores
    numpy float32 arrays or Plain floats as BF16 (numpy has no bfloat16 of its own)."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, t in tensors.items():
        want = (dtypes or {}).get(name)
        if want == "BF16" and numpy is not None and isinstance(t, numpy.ndarray):
            dtype, shape, raw = "BF16", list(t.shape), _np_f32_to_bf16(t)
        elif want == "BF16" and isinstance(t, Plain) and t.dtype != "BF16":
            dtype, shape, raw = "BF16", t.shape, _floats_to_bf16(t.values)
        else:
            dtype, shape, raw = _encode(t)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)  # data starts 8-byte aligned
    tmp = "%s.tmp%d" % (path, os.getpid())
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# the task

class Task:
    """What federa asks of this run (task.json, docs/external-trainer.md)."""

    def __init__(self, config):
        self.config = config
        self.kind = config["task"]                      # "fit" or "evaluate"
        self.round = int(config["round"])
        self.seed = int(config.get("seed", 0))
        self.hyperparameters = dict(config.get("hyperparameters", {}))
        self.tensors = {t["name"]: (t["dtype"], list(t["shape"])) for t in config["tensors"]}
        self.input_model = config["input_model"]
        self.output_model = config["output_model"]
        self.metrics = config["metrics"]
        self.max_examples = int(config.get("max_examples", 0))


def active():
    """True when federa-client runs this script for a task."""
    return bool(os.environ.get("FEDERA_TASK"))


def load_task(path=None):
    path = path or os.environ.get("FEDERA_TASK_CONFIG")
    if not path:
        raise RuntimeError("no task: FEDERA_TASK_CONFIG is not set (is federa-client running this?)")
    with open(path) as f:
        return Task(json.load(f))


def _unwrap(module):
    # DistributedDataParallel and DataParallel keep the real network in .module
    inner = getattr(module, "module", None)
    if torch is not None and isinstance(inner, torch.nn.Module):
        return inner
    return module


def _strip(name):
    return name[len("module."):] if name.startswith("module.") else name


def load_global(module, task=None, strict=True):
    """Loads the task's global model into a torch module (names with a DDP `module.` prefix are
    matched without it). Returns the Task."""
    if torch is None:
        raise ImportError("load_global needs torch; use read_safetensors without it")
    task = task or load_task()
    tensors, _ = read_safetensors(task.input_model, backend="torch")
    _unwrap(module).load_state_dict({_strip(k): v for k, v in tensors.items()}, strict=strict)
    return task


def state_dict_for(module, task=None):
    """The module's state as the task expects it: the global model's names (no `module.`
    prefix), dtypes and shapes. Raises naming what does not match."""
    task = task or load_task()
    own = {_strip(k): v for k, v in _unwrap(module).state_dict().items()}
    out = {}
    for name, (dtype, shape) in task.tensors.items():
        if name not in own:
            raise KeyError("the module has no tensor %r, which the global model has" % name)
        t = own[name].detach()
        if list(t.shape) != shape:
            raise ValueError("tensor %r has shape %s, the global model's is %s"
                             % (name, list(t.shape), shape))
        out[name] = t.to(_torch_dtypes()[dtype])
    return out


def save_metrics(num_examples, metrics=None, task=None):
    """Writes metrics.json; non-finite values become null (JSON has no NaN)."""
    task = task or load_task()
    clean = {}
    for k, v in (metrics or {}).items():
        v = float(v)
        clean[str(k)] = v if math.isfinite(v) else None
    tmp = task.metrics + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"num_examples": int(num_examples), "metrics": clean}, f)
    os.replace(tmp, task.metrics)


def save_update(module, num_examples, metrics=None, task=None):
    """Writes the trained module as the task's model.safetensors, then metrics.json."""
    task = task or load_task()
    write_safetensors(task.output_model, state_dict_for(module, task))
    save_metrics(num_examples, metrics, task)
