#!/usr/bin/env bash
# Set up, then run the MNIST tutorial on the embedded demo digits: training (20 epochs, checkpoint
# at epoch 20), then inference on 10 held-out digits, then print the predicted classes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
rm -rf demo_output
rmldnn --config= ./configs/config_mnist_training.json
rmldnn --config= ./configs/config_mnist_test.json
python - <<'PY'
import h5py, numpy as np
with h5py.File("demo_output/mnist_predictions/output_1.h5", "r") as f:
    pred = [int(np.argmax(f[d][()])) for d in f]
true = [int(t) for t in open("demo/mnist_digits_labels.txt").read().split()]
print("predicted:", " ".join(map(str, pred)))
print("true     :", " ".join(map(str, true)))
print(f"{sum(p == t for p, t in zip(pred, true))}/10 held-out digits classified correctly")
PY
