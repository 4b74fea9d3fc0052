"""Keras parity of whole keras.applications networks (issue 3): prints a markdown table.

For each application (built by Keras 3 with ``weights=None``, random BatchNormalization
statistics and biases): Keras' parameter count (``model.count_params()``, which includes the
BatchNormalization moving statistics), the same count as SPEC §4.7 defines it (no running
statistics, always-affine BatchNormalization), ours; the maximum relative difference
``max |ours − keras| / max |keras|`` of the logits on a random batch in evaluation mode, the
weights going through the CLI path (Keras 3 ``.weights.h5`` → ``engine.checkpoint.load_weights``);
our build (``build_network`` from ``model.to_json()``) and load times; the number of ``Skipping``
lines (only InceptionV3's ``BatchNormalization(scale=False)`` gammas, SPEC §11.7).

Usage: ``KERAS_BACKEND=torch PYTHONPATH=. python benchmarks/keras_parity.py [--size 160] [--batch 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings

os.environ.setdefault("KERAS_BACKEND", "torch")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

import numpy as np  # noqa: E402
import torch  # noqa: E402

APPS = ["ResNet50", "ResNet50V2", "VGG16", "DenseNet121", "MobileNet", "MobileNetV2", "InceptionV3",
        "Xception"]
MIN_SIZE = {"InceptionV3": 75, "Xception": 71}


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def line(self, text: str = "") -> None:
        self.lines.append(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=160, help="input height (width = height + 16)")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--apps", nargs="*", default=APPS)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")

    import keras
    from keras_helpers import keras_counts, randomize_for_inference, save_keras3_weights

    from rmldnn_py.engine.checkpoint import load_weights
    from rmldnn_py.network import build_network

    print(f"keras {keras.__version__} (backend {keras.backend.backend()}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, batch {args.batch}\n")
    print("| model | input (H×W) | params Keras (count_params) | params Keras (SPEC §4.7) | params ours "
          "| max rel. diff | build ours (s) | load .h5 ours (s) | Skipping lines |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for app in args.apps:
            h = max(args.size, MIN_SIZE.get(app, 32))
            shape = (h, h + 16, 3)
            model = getattr(keras.applications, app)(weights=None, input_shape=shape,
                                                     classes=args.classes, classifier_activation=None)
            rng = np.random.default_rng(0)
            randomize_for_inference(model, rng)
            x = rng.normal(0.0, 1.0, (args.batch,) + shape).astype("float32")
            ref = np.asarray(keras.ops.convert_to_numpy(model(x, training=False)))
            path = save_keras3_weights(model, os.path.join(tmp, f"{app}.weights.h5"))
            spec = json.loads(model.to_json())
            t0 = time.perf_counter()
            net = build_network(spec, config_path=f"{app}.json")
            t_build = time.perf_counter() - t0
            net.eval()
            log = _Log()
            t0 = time.perf_counter()
            load_weights(net, path, log)
            t_load = time.perf_counter() - t0
            with torch.no_grad():
                y = net(torch.from_numpy(x).movedim(-1, 1)).numpy()
            diff = float(np.abs(y - ref).max() / np.abs(ref).max())
            skipped = sum("Skipping" in ln for ln in log.lines)
            # BatchNormalization(scale=False) (InceptionV3) has no gamma in the file: one
            # "Skipping parameter <bn>.weight (<bn>/gamma:0)" line each (SPEC §11.7)
            expected = sum((not layer.scale) + (not layer.center) for layer in model.layers
                           if type(layer).__name__ == "BatchNormalization")
            total, _ = keras_counts(model)
            ours = net.num_parameters()
            ok = diff <= 1e-4 and ours == total and skipped == expected
            failed |= not ok
            print(f"| {app} | {shape[0]}×{shape[1]} | {model.count_params():,} | {total:,} | {ours:,} "
                  f"| {diff:.1e} | {t_build:.2f} | {t_load:.2f} | {skipped} |" + ("" if ok else " **FAIL**"),
                  flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
