"""python/federa_trainer.py: its safetensors reader and writer for every dtype and backend
(pure Python always; numpy and torch where installed), bytes checked against hand-encoded
values, and the task helpers (load_global, save_update, DDP prefix) with torch.
Run: python3 tests/python/test_federa_trainer.py   (exit 77 when no test could run)"""
import json
import math
import os
import struct
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import federa_trainer as fed  # noqa: E402

BACKENDS = ["python"] + (["numpy"] if fed.numpy is not None else []) + (
    ["torch"] if fed.torch is not None else [])

# dtype -> (values, their little-endian bytes, encoded by hand)
CASES = {
    "F32": ([1.0, -2.5, 0.0], struct.pack("<3I", 0x3F800000, 0xC0200000, 0)),
    "F64": ([1.0, -0.5], struct.pack("<2Q", 0x3FF0000000000000, 0xBFE0000000000000)),
    "F16": ([1.0, -2.0, 0.5], struct.pack("<3H", 0x3C00, 0xC000, 0x3800)),
    "BF16": ([1.0, -2.0, 3.140625], struct.pack("<3H", 0x3F80, 0xC000, 0x4049)),
    "I64": ([1, -2, 2 ** 40], struct.pack("<3q", 1, -2, 2 ** 40)),
    "I32": ([7, -7], struct.pack("<2i", 7, -7)),
    "I16": ([300, -300], struct.pack("<2h", 300, -300)),
    "I8": ([5, -5], struct.pack("<2b", 5, -5)),
    "U8": ([0, 255], bytes([0, 255])),
    "BOOL": ([True, False], bytes([1, 0])),
}


def values_of(t):
    if isinstance(t, fed.Plain):
        return list(t.values)
    return t.reshape(-1).tolist()


def make(backend, dtype, values):
    """A tensor of `dtype` holding `values` in `backend`'s own type."""
    if backend == "python":
        return fed.Plain(dtype, [len(values)], values)
    if backend == "numpy":
        np = fed.numpy
        kind = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "BF16": np.float32,
                "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
                "BOOL": np.bool_}[dtype]
        return np.array(values, dtype=kind)
    return fed.torch.tensor(values, dtype=fed._torch_dtypes()[dtype])


def slurp(path):
    with open(path, "rb") as f:
        return f.read()


def data_of(path):
    raw = slurp(path)
    (n,) = struct.unpack("<Q", raw[:8])
    return raw, n, json.loads(raw[8:8 + n]), raw[8 + n:]


class SafetensorsTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "m.safetensors")

    def tearDown(self):
        self.dir.cleanup()

    def test_every_dtype_in_every_backend_writes_the_reference_bytes(self):
        for backend in BACKENDS:
            for dtype, (values, expected) in CASES.items():
                with self.subTest(backend=backend, dtype=dtype):
                    fed.write_safetensors(self.path, {"t": make(backend, dtype, values)},
                                          dtypes={"t": dtype})
                    raw, n, header, data = data_of(self.path)
                    self.assertEqual((8 + n) % 8, 0, "data must start 8-byte aligned")
                    self.assertEqual(raw[8:9], b"{")
                    self.assertEqual(header["t"]["dtype"], dtype)
                    self.assertEqual(header["t"]["shape"], [len(values)])
                    self.assertEqual(data, expected)

    def test_every_backend_reads_what_every_backend_wrote(self):
        for writer in BACKENDS:
            for reader in BACKENDS:
                with self.subTest(writer=writer, reader=reader):
                    tensors = {d: make(writer, d, v) for d, (v, _) in CASES.items()}
                    fed.write_safetensors(self.path, tensors, {"round": 3},
                                          dtypes={d: d for d in CASES})
                    back, meta = fed.read_safetensors(self.path, backend=reader)
                    self.assertEqual(meta, {"round": "3"})
                    self.assertEqual(list(back), list(CASES))
                    for d, (values, _) in CASES.items():
                        self.assertEqual(values_of(back[d]), values, d)
                    # and writing what was read gives the same bytes (BF16 stays BF16 in numpy)
                    before = slurp(self.path)
                    fed.write_safetensors(self.path, back, {"round": 3},
                                          dtypes={d: d for d in CASES})
                    self.assertEqual(slurp(self.path), before)

    def test_bf16_rounds_to_nearest_even_and_keeps_nan(self):
        # 1 + 2^-8 is halfway between two bf16 values: ties go to the even one (1.0)
        tie = struct.unpack("<f", struct.pack("<I", 0x3F808000))[0]
        above = struct.unpack("<f", struct.pack("<I", 0x3F808001))[0]
        for backend in [b for b in BACKENDS if b != "torch"]:
            with self.subTest(backend=backend):
                t = make(backend, "F32", [tie, above, float("nan"), float("inf")])
                fed.write_safetensors(self.path, {"t": t}, dtypes={"t": "BF16"})
                data = data_of(self.path)[3]
                halves = struct.unpack("<4H", data)
                self.assertEqual(halves[0], 0x3F80)
                self.assertEqual(halves[1], 0x3F81)
                self.assertTrue(halves[2] & 0x7F80 == 0x7F80 and halves[2] & 0x7F)
                self.assertEqual(halves[3], 0x7F80)

    def test_shapes_scalars_and_empty_tensors(self):
        for backend in BACKENDS:
            with self.subTest(backend=backend):
                if backend == "python":
                    t = {"m": fed.Plain("F32", [2, 3], range(6)), "s": fed.Plain("I64", [], [9]),
                         "e": fed.Plain("F32", [0, 4], [])}
                elif backend == "numpy":
                    np = fed.numpy
                    t = {"m": np.arange(6, dtype=np.float32).reshape(2, 3),
                         "s": np.array(9, dtype=np.int64), "e": np.zeros((0, 4), np.float32)}
                else:
                    torch = fed.torch
                    t = {"m": torch.arange(6, dtype=torch.float32).reshape(2, 3),
                         "s": torch.tensor(9, dtype=torch.int64), "e": torch.zeros(0, 4)}
                fed.write_safetensors(self.path, t)
                back, _ = fed.read_safetensors(self.path, backend=backend)
                shape = (lambda x: list(x.shape))
                self.assertEqual(shape(back["m"]), [2, 3])
                self.assertEqual(shape(back["s"]), [])
                self.assertEqual(shape(back["e"]), [0, 4])
                self.assertEqual(values_of(back["m"]), [0, 1, 2, 3, 4, 5])

    def test_malformed_files_are_refused(self):
        fed.write_safetensors(self.path, {"t": fed.Plain("F32", [4], [1, 2, 3, 4])})
        good = slurp(self.path)
        for name, raw in [("short", good[:5]), ("truncated", good[:-1]),
                          ("trailing", good + b"\0"),
                          ("header past end", struct.pack("<Q", 10 ** 6) + good[8:])]:
            with self.subTest(name):
                with open(self.path, "wb") as f:
                    f.write(raw)
                with self.assertRaises(ValueError):
                    fed.read_safetensors(self.path, backend="python")


@unittest.skipIf(fed.torch is None, "torch is not installed (apt-get install python3-torch)")
class TaskTest(unittest.TestCase):
    def setUp(self):
        torch = fed.torch
        self.dir = tempfile.TemporaryDirectory()
        d = self.dir.name
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
        state = {k: v.clone() + 1 for k, v in self.net.state_dict().items()}
        fed.write_safetensors(os.path.join(d, "global.safetensors"), state)
        cfg = {"task": "fit", "round": 2, "seed": 5, "hyperparameters": {"lr": 0.1},
               "tensors": [{"name": k, "shape": list(v.shape),
                            "dtype": {torch.float32: "F32", torch.int64: "I64"}[v.dtype]}
                           for k, v in state.items()],
               "input_model": os.path.join(d, "global.safetensors"),
               "output_model": os.path.join(d, "model.safetensors"),
               "metrics": os.path.join(d, "metrics.json")}
        with open(os.path.join(d, "task.json"), "w") as f:
            json.dump(cfg, f)
        os.environ["FEDERA_TASK_CONFIG"] = os.path.join(d, "task.json")
        os.environ["FEDERA_TASK"] = "fit"
        self.state = state

    def tearDown(self):
        os.environ.pop("FEDERA_TASK_CONFIG", None)
        os.environ.pop("FEDERA_TASK", None)
        self.dir.cleanup()

    def test_load_global_and_save_update_through_a_ddp_style_wrapper(self):
        torch = fed.torch
        wrapped = torch.nn.DataParallel(self.net)  # state_dict names start with "module."
        self.assertTrue(fed.active())
        task = fed.load_global(wrapped)
        self.assertEqual((task.kind, task.round, task.hyperparameters["lr"]), ("fit", 2, 0.1))
        for k, v in self.net.state_dict().items():
            self.assertTrue(torch.equal(v, self.state[k]), k)
        fed.save_update(wrapped, 12, {"train_loss": 0.25, "diverged": float("nan")})
        back, _ = fed.read_safetensors(task.output_model, backend="torch")
        self.assertEqual(sorted(back), sorted(self.state))  # no "module." prefix
        self.assertEqual(back["1.num_batches_tracked"].dtype, torch.int64)
        with open(task.metrics) as f:
            metrics = json.load(f)
        self.assertEqual(metrics, {"num_examples": 12,
                                   "metrics": {"train_loss": 0.25, "diverged": None}})

    def test_a_module_that_does_not_match_the_task_is_named(self):
        torch = fed.torch
        other = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
        with self.assertRaises(ValueError) as e:
            fed.state_dict_for(other)
        self.assertIn("has shape [4, 3], the global model's is [2, 3]", str(e.exception))


if __name__ == "__main__":
    print("federa_trainer backends here:", ", ".join(BACKENDS))
    result = unittest.main(exit=False, verbosity=1).result
    if not result.wasSuccessful():
        sys.exit(1)
    sys.exit(77 if result.testsRun == len(result.skipped) else 0)
