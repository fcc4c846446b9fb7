"""PyTorch's side of tests/integration/torch_state_dict.sh (standard library + torch only; Debian
12's python3-torch has no safetensors package, so a minimal reader and writer are here).

  torch_state_dict.py make FILE        a small CNN's state_dict (BF16 conv, F32 BatchNorm with its
                                       I64 num_batches_tracked, F16 head) as safetensors
  torch_state_dict.py check FILE OUT   OUT (federa's committed global.safetensors after one round
                                       of two updates, FILE + 1 and FILE + 3) loads into the same
                                       module with load_state_dict(strict=True), with the same
                                       dtypes, the mean FILE + 2 in each dtype, counters untouched
"""
import json
import struct
import sys

import torch

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8, "BOOL": torch.bool}
NAMES = {v: k for k, v in DTYPES.items()}


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4)
        self.head = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


def model():
    torch.manual_seed(0)
    net = Net()
    net.conv.to(torch.bfloat16)
    net.head.to(torch.float16)
    net.bn.num_batches_tracked.fill_(42)
    net.bn.running_mean.uniform_(-1, 1)
    return net


def raw(t):
    flat = t.detach().contiguous().reshape(-1)
    if t.dtype == torch.bfloat16:
        flat = flat.view(torch.int16)
    return flat.numpy().tobytes()


def save(state, path):
    header, blobs, at = {}, [], 0
    for name, t in state.items():
        b = raw(t)
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    text = json.dumps(header).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def load(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, e in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        begin, end = e["data_offsets"]
        buf = bytearray(data[8 + n + begin:8 + n + end])
        dtype = DTYPES[e["dtype"]]
        if dtype == torch.bfloat16:
            t = torch.frombuffer(buf, dtype=torch.int16).view(torch.bfloat16) if buf else torch.empty(0, dtype=dtype)
        else:
            t = torch.frombuffer(buf, dtype=dtype) if buf else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(e["shape"]).clone()
    return out


def check(original_path, committed_path):
    original = load(original_path)
    committed = load(committed_path)
    net = model()
    net.load_state_dict(committed, strict=True)  # raises on a missing, extra or misshapen tensor
    assert list(committed) == list(original), (list(committed), list(original))
    for name, t in original.items():
        got = net.state_dict()[name]
        assert got.dtype == t.dtype, (name, got.dtype, t.dtype)
        assert committed[name].dtype == t.dtype, (name, committed[name].dtype, t.dtype)
        if t.is_floating_point():
            # Each client's update is stored in the dtype, then averaged in float32 and stored.
            a = (t.float() + 1).to(t.dtype).float()
            b = (t.float() + 3).to(t.dtype).float()
            want = ((a + b) / 2).to(t.dtype)
            diff = (got.float() - want.float()).abs().max().item()
            assert diff <= 1e-6 * max(1.0, want.float().abs().max().item()), (name, diff)
        else:
            assert torch.equal(got, t), (name, got, t)  # carried, never averaged
    net.float()(torch.zeros(1, 1, 5, 5))  # and it still runs
    print("load_state_dict(strict=True): %d tensors, dtypes %s" %
          (len(original), sorted({NAMES[t.dtype] for t in original.values()})))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        save(model().state_dict(), sys.argv[2])
    else:
        check(sys.argv[2], sys.argv[3])
