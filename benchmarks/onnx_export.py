"""ONNX export time and ONNX Runtime vs torch CPU inference throughput (issue 13).

Networks: the demo network (``networks/mnist_keras_net.json``, input 1×28×28) and ResNet50 built
from the Keras JSON of ``keras.applications.ResNet50`` (input 3×224×224, 1000 classes, random
weights: the speed does not depend on them). For each network:

* export: :func:`rmldnn_py.tools.export.export_onnx` (the ``rmldnn export`` path:
  ``torch.export`` + ONNX translation + optimisation + save) wall time;
* inference, batch 1 and batch 32: median time per batch over ``--repeat`` runs after warm-up, torch and ORT alternating,
  torch (eval, ``no_grad``) and ONNX Runtime (CPUExecutionProvider, default graph optimisations)
  with the same number of intra-op threads, both on the same random batch; reported as
  samples/s and the ratio ORT/torch; the outputs are compared (max relative difference).

Usage: PYTHONPATH=. KERAS_BACKEND=torch python benchmarks/onnx_export.py [--threads 2]
       [--repeat 10] [--skip-resnet]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _median_times(fns, repeat: int, warmup: int = 3) -> list[float]:
    """Median wall time of each function; the functions alternate call by call, so machine load
    (the CPU may be shared) affects all alike."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, ts in zip(fns, times):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    return [statistics.median(ts) for ts in times]


def bench(name: str, net, shape, tmp: Path, threads: int, repeat: int) -> dict:
    import numpy as np
    import onnxruntime as ort
    import torch

    from rmldnn_py.tools.export import export_onnx

    path = str(tmp / f"{name}.onnx")
    info = export_onnx(net, path, shape)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    out = {"network": name, "input": list(shape), "export_s": round(info["seconds"], 2),
           "exporter": info["exporter"], "onnx_bytes": info["bytes"], "batches": {}}
    for b in (1, 32):
        x = torch.randn(b, *shape)
        xn = x.numpy()
        with torch.no_grad():
            ref = net(x).numpy()
        got = sess.run(None, {"input": xn})[0]
        rel = float(np.abs(got - ref).max() / np.abs(ref).max())
        reps = repeat if b == 1 or name != "resnet50" else max(3, repeat // 3)

        def run_torch():
            with torch.no_grad():
                net(x)

        t_torch, t_ort = _median_times([run_torch, lambda: sess.run(None, {"input": xn})], reps)
        out["batches"][b] = {"torch_samples_per_s": round(b / t_torch, 1),
                             "ort_samples_per_s": round(b / t_ort, 1),
                             "ort_over_torch": round(t_torch / t_ort, 2),
                             "max_rel_diff": rel}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--skip-resnet", action="store_true")
    a = ap.parse_args()

    import torch

    from rmldnn_py.network import build_network

    torch.set_num_threads(a.threads)
    tmp = Path(tempfile.mkdtemp())
    results = []
    net = build_network(str(REPO / "networks/mnist_keras_net.json"), config_path="bench").eval()
    results.append(bench("mnist_demo", net, (1, 28, 28), tmp, a.threads, a.repeat))
    if not a.skip_resnet:
        os.environ.setdefault("KERAS_BACKEND", "torch")
        import keras

        spec = json.loads(keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3)).to_json())
        net = build_network(spec, config_path="bench").eval()
        results.append(bench("resnet50", net, (3, 224, 224), tmp, a.threads, a.repeat))
    print(json.dumps({"torch": torch.__version__, "threads": a.threads, "results": results}, indent=1))


if __name__ == "__main__":
    main()
