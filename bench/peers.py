"""Python peers for `rsim-bench edge`: ONNX Runtime and LiteRT, driven by the Rust bench over pipes.

Run by rsim-bench as `.venv/bin/python bench/peers.py`; not meant to be run by hand. Protocol: one
JSON object per line on stdin, one JSON answer per line on stdout (library chatter goes to stderr).

  start-up answer  {"python": ..., "numpy": ..., "onnxruntime": version | null, "onnxruntime_error": ...,
                    "litert": version | null, "litert_error": ...}
  {"cmd": "load", "id": K, "engine": "onnxruntime" | "litert", "model": PATH, "input": PATH}
                -> {"ok": true} | {"ok": false, "error": ...}
                   INPUT holds the raw input tensor (the dtype and shape the model declares).
  {"cmd": "run", "id": K, "n": N}   -> {"ok": true, "times_ns": [N wall times of one inference]}
  {"cmd": "unload", "id": K}        -> {"ok": true}

Both peers run single-threaded: ONNX Runtime with intra_op_num_threads = inter_op_num_threads = 1,
sequential execution and its default (full) graph optimizations (which fuse QDQ patterns into its
integer kernels); LiteRT with num_threads = 1 and its default delegate (XNNPACK). The input is set
outside the timed region for LiteRT (`set_tensor`, then `invoke` is timed); ONNX Runtime's timed
`run` includes binding the numpy input, as its API offers no separate invoke.
"""
import json
import os
import platform
import sys
import time

# Answers go to the real stdout; anything a library prints (LiteRT's INFO lines, ...) to stderr.
_out = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)
sys.stdout = sys.stderr


def answer(obj):
    _out.write(json.dumps(obj) + "\n")
    _out.flush()


hello = {"python": platform.python_version(), "numpy": None}
try:
    import numpy as np

    hello["numpy"] = np.__version__
except Exception as e:  # noqa: BLE001 - reported to the bench, which prints it
    np = None
    hello["numpy_error"] = f"{type(e).__name__}: {e}"

try:
    import onnxruntime as ort

    hello["onnxruntime"] = ort.__version__
except Exception as e:  # noqa: BLE001
    ort = None
    hello["onnxruntime"] = None
    hello["onnxruntime_error"] = f"{type(e).__name__}: {e}"

try:
    from ai_edge_litert.interpreter import Interpreter

    try:
        from importlib.metadata import version

        hello["litert"] = version("ai-edge-litert")
    except Exception:  # noqa: BLE001
        hello["litert"] = "unknown version"
except Exception as e:  # noqa: BLE001
    Interpreter = None
    hello["litert"] = None
    hello["litert_error"] = f"{type(e).__name__}: {e}"


ORT_DTYPES = {"tensor(float)": "float32", "tensor(int8)": "int8", "tensor(uint8)": "uint8"}


class OrtPeer:
    def __init__(self, model, input_path):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sess = ort.InferenceSession(model, sess_options=so, providers=["CPUExecutionProvider"])
        inp = self.sess.get_inputs()[0]
        dtype = ORT_DTYPES.get(inp.type)
        if dtype is None:
            raise ValueError(f"input type {inp.type} not handled")
        self.x = read_input(input_path, dtype, inp.shape)
        self.feed = {inp.name: self.x}

    def run(self, n):
        times = []
        run, feed = self.sess.run, self.feed
        for _ in range(n):
            t0 = time.perf_counter_ns()
            run(None, feed)
            times.append(time.perf_counter_ns() - t0)
        return times


class LitertPeer:
    def __init__(self, model, input_path):
        self.interp = Interpreter(model_path=model, num_threads=1)
        self.interp.allocate_tensors()
        d = self.interp.get_input_details()[0]
        self.index = d["index"]
        self.x = read_input(input_path, np.dtype(d["dtype"]).name, list(d["shape"]))

    def run(self, n):
        times = []
        interp, index, x = self.interp, self.index, self.x
        for _ in range(n):
            interp.set_tensor(index, x)
            t0 = time.perf_counter_ns()
            interp.invoke()
            times.append(time.perf_counter_ns() - t0)
        return times


def read_input(path, dtype, shape):
    # ONNX Runtime gives ints (or names / None for free dims), LiteRT numpy ints.
    if any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0 for d in shape):
        raise ValueError(f"input shape {shape} is not fixed")
    shape = [int(d) for d in shape]
    x = np.fromfile(path, dtype=dtype)
    want = int(np.prod(shape))
    if x.size != want:
        raise ValueError(f"{path} holds {x.size} {dtype} values, the model's input {shape} takes {want}")
    return x.reshape(shape)


def main():
    answer(hello)
    peers = {}
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            cmd = req["cmd"]
            if cmd == "load":
                engine = req["engine"]
                if np is None:
                    raise RuntimeError("numpy is not importable: " + hello.get("numpy_error", "?"))
                if engine == "onnxruntime":
                    if ort is None:
                        raise RuntimeError(hello["onnxruntime_error"])
                    peers[req["id"]] = OrtPeer(req["model"], req["input"])
                elif engine == "litert":
                    if Interpreter is None:
                        raise RuntimeError(hello["litert_error"])
                    peers[req["id"]] = LitertPeer(req["model"], req["input"])
                else:
                    raise ValueError(f"unknown engine {engine}")
                answer({"ok": True})
            elif cmd == "run":
                answer({"ok": True, "times_ns": peers[req["id"]].run(int(req["n"]))})
            elif cmd == "unload":
                peers.pop(req["id"], None)
                answer({"ok": True})
            else:
                raise ValueError(f"unknown command {cmd}")
        except Exception as e:  # noqa: BLE001 - every failure goes back to the bench as text
            answer({"ok": False, "error": f"{type(e).__name__}: {e}"})


if __name__ == "__main__":
    main()
