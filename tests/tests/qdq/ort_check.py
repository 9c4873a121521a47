"""Runs rsim's QDQ ONNX exports in ONNX Runtime and compares them with the edge runtime's outputs.

Usage: python ort_check.py DIR   (DIR holds manifest.json and the files it names; written by
tests/tests/onnx_qdq.rs, test onnxruntime_runs_the_qdq_export). Prints one JSON line per model:
{"name", "same_top1", "n", "max_steps"}. ONNX Runtime applies its default graph optimizations, which
fuse DequantizeLinear -> op -> QuantizeLinear into integer kernels (QLinearConv, ...).
"""
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

root = Path(sys.argv[1])
for m in json.loads((root / "manifest.json").read_text()):
    sess = ort.InferenceSession(str(root / m["onnx"]), providers=["CPUExecutionProvider"])
    shape, n = m["input_shape"], m["n"]
    xs = np.fromfile(root / m["inputs"], dtype=np.int8).reshape([n] + shape)
    ours = np.fromfile(root / m["outputs"], dtype=np.int8).reshape(n, -1)
    same, steps = 0, 0
    for x, o in zip(xs, ours):
        y = sess.run(None, {"input": x})[0].reshape(-1)
        same += int(np.argmax(y) == np.argmax(o))
        steps = max(steps, int(np.abs(y.astype(np.int32) - o.astype(np.int32)).max()))
    print(json.dumps({"name": m["name"], "same_top1": same, "n": n, "max_steps": steps}))
