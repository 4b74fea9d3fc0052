"""Quality of ``--app=gan`` on the embedded demo digits (issue 15 acceptance).

1. Trains a digit classifier (plain PyTorch, independent of rmldnn_py) on the 1,437 real demo
   digits ``demo/mnist/training/<class>/*.png`` and reports its accuracy on the 350 held-out
   ``demo/mnist/testing`` digits.
2. Runs ``rmldnn --app=gan --config=configs/config_gan_digits.json`` (generator
   ``networks/gan_generator_digits.json``, critic ``networks/gan_critic_digits.json``, WGAN-GP),
   with the output paths moved to a work directory, and times it (wall and CPU seconds of the
   child process).
3. Reads the generated samples from the WRITTEN ``output_<epoch>.h5`` files (1,000 samples of the
   fixed latent batch per evaluation) and reports per epoch:

   * ``maxprob``: the classifier's mean max-probability over the generated samples;
   * ``classes``: how many of the 10 classes are the argmax of at least one sample;
   * ``FD``: the Fréchet distance between the classifier's penultimate-layer features (128-d) of
     the real digits and of the generated samples, ``‖μ_r − μ_g‖² + Tr(Σ_r + Σ_g −
     2 (Σ_r Σ_g)^{1/2})`` (Heusel et al. 2017, the FID formula with this classifier as feature
     extractor; the trace of the matrix square root from symmetric eigendecompositions).

   Baselines: the same numbers for 1,000 uniform-noise images, and FD between two halves of the
   real digits (what "as good as real data" looks like with this feature extractor).

Acceptance: last epoch ``maxprob >= 0.8`` and ``classes >= 8``; FD falls over training.

Usage: ``python benchmarks/gan_digits.py [--threads 2] [--epochs N] [--work DIR] [--json F]``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from scipy import linalg

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs/config_gan_digits.json"
TRAIN_DIR = REPO / "demo/mnist/training"
TEST_DIR = REPO / "demo/mnist/testing"
NUM_SAMPLES = 1000


# --------------------------------------------------------------------------------------------
# data and classifier


def load_digits(root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """``root/<class>/*.png`` → ``(N, 1, 28, 28)`` float32 in [0, 1] (8-bit gray / 255, as the
    ``images`` loader with ``grayscale: true`` decodes them) and ``(N,)`` int64 labels."""
    xs, ys = [], []
    for cls in sorted(os.listdir(root)):
        for f in sorted((root / cls).iterdir()):
            with Image.open(f) as im:
                xs.append(np.asarray(im.convert("L"), dtype=np.float32) / 255.0)
            ys.append(int(cls))
    return torch.from_numpy(np.stack(xs)[:, None]), torch.tensor(ys, dtype=torch.int64)


class DigitNet(nn.Module):
    """conv3×3(32)-pool-conv3×3(64)-pool-dense(128) features, dense(10) logits."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 32, 3)
        self.c2 = nn.Conv2d(32, 64, 3)
        self.fc = nn.Linear(64 * 5 * 5, 128)
        self.out = nn.Linear(128, 10)
        self.drop = nn.Dropout(0.3)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        return F.relu(self.fc(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(self.features(x)))


def _shift(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random translation by up to 2 pixels (zero fill), per batch."""
    dx, dy = torch.randint(-2, 3, (2,), generator=g).tolist()
    return torch.roll(F.pad(x, (2, 2, 2, 2)), (dy, dx), (2, 3))[:, :, 2:30, 2:30]


def train_classifier(x: torch.Tensor, y: torch.Tensor, epochs: int = 12,
                     seed: int = 0) -> DigitNet:
    """Adam(1e-3), batch 64, cross-entropy, random shifts; returns the model in eval mode."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net = DigitNet()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(x), generator=g)
        for k in range(0, len(x), 64):
            i = perm[k:k + 64]
            loss = F.cross_entropy(net(_shift(x[i], g)), y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


@torch.no_grad()
def predict(net: DigitNet, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``(probabilities (N, 10), features (N, 128))`` as float64 arrays."""
    probs, feats = [], []
    for k in range(0, len(x), 256):
        f = net.features(x[k:k + 256])
        probs.append(F.softmax(net.out(f), 1))
        feats.append(f)
    return torch.cat(probs).double().numpy(), torch.cat(feats).double().numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets ``a`` (N, F) and ``b`` (M, F):
    ``‖μa − μb‖² + Tr Σa + Tr Σb − 2 Tr (Σa Σb)^{1/2}``, with
    ``Tr (Σa Σb)^{1/2} = Σ √λ(Σa^{1/2} Σb Σa^{1/2})`` (symmetric eigendecompositions by
    ``scipy.linalg.eigh``; exact for singular covariances, where ``sqrtm`` is unstable)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    lam = linalg.eigh(root1 @ s2 @ root1, eigvals_only=True)
    tr_covmean = np.sqrt(np.clip(lam, 0.0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def read_generated(path: Path) -> tuple[torch.Tensor, list[str]]:
    """All datasets of an ``output_<epoch>.h5`` in name order → ``(N, C, H, W)`` float32."""
    with h5py.File(path, "r") as f:
        names = sorted(f)
        arr = np.stack([f[n][()] for n in names]).astype(np.float32)
    return torch.from_numpy(arr), names


def score(net: DigitNet, samples: torch.Tensor, real_feats: np.ndarray) -> dict:
    """``maxprob``, ``classes``, per-class counts and ``FD`` of generated samples."""
    p, feats = predict(net, samples.clamp(0.0, 1.0))
    counts = np.bincount(p.argmax(1), minlength=10)
    return {"maxprob": float(p.max(1).mean()), "classes": int((counts > 0).sum()),
            "counts": counts.tolist(), "fd": frechet_distance(real_feats, feats)}


# --------------------------------------------------------------------------------------------
# the GAN run


def write_config(work: Path, epochs: int | None = None) -> Path:
    """``configs/config_gan_digits.json`` with its outputs moved into ``work`` (absolute paths;
    the inputs stay relative to the repository, where the run starts) and 1,000 generated
    samples per evaluation instead of the demo's 100 (generation only: training is unchanged)."""
    cfg = json.loads(CONFIG.read_text())
    nn_ = cfg["neural_network"]
    nn_["outfile"] = str(work / "out_gan.txt")
    nn_["checkpoints"]["save"] = str(work / "model") + "/"
    nn_["data"]["test_output_path"] = str(work / "samples") + "/"
    nn_["data"]["num_test_examples"] = NUM_SAMPLES          # the demo writes 100 per epoch
    nn_["data"]["test_batch_size"] = 500
    nn_["progress"] = False
    if epochs is not None:
        nn_["num_epochs"] = epochs
    path = work / "config_gan_digits.json"
    path.write_text(json.dumps(cfg, indent=2))
    return path


def run_gan(work: Path, threads: int, epochs: int | None = None) -> dict:
    """Run the GAN from the repository root; returns wall / CPU seconds and the stdout."""
    cfg = write_config(work, epochs)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), KERAS_BACKEND="torch",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("RMLDNN_DEBUG", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "rmldnn_py", "--app=gan", f"--config={cfg}"],
                          cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"rmldnn --app=gan failed ({proc.returncode}): {proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "stdout": proc.stdout}


def epochs_written(samples_dir: Path) -> list[int]:
    return sorted(int(m.group(1)) for p in samples_dir.glob("output_*.h5")
                  if (m := re.fullmatch(r"output_(\d+)\.h5", p.name)))


def evaluate_run(work: Path, net: DigitNet, real_feats: np.ndarray) -> list[dict]:
    """Scores of every ``output_<epoch>.h5`` of a finished run, in epoch order."""
    rows = []
    for e in epochs_written(work / "samples"):
        samples, names = read_generated(work / "samples" / f"output_{e}.h5")
        rows.append({"epoch": e, "n": len(names), **score(net, samples, real_feats)})
    return rows


def baselines(net: DigitNet, real_x: torch.Tensor, real_feats: np.ndarray) -> dict:
    g = torch.Generator().manual_seed(1)
    noise = score(net, torch.rand((1000, 1, 28, 28), generator=g), real_feats)
    perm = torch.randperm(len(real_x), generator=g)
    half = len(real_x) // 2
    _, fa = predict(net, real_x[perm[:half]])
    _, fb = predict(net, real_x[perm[half:]])
    p_real, _ = predict(net, real_x)
    return {"noise": noise, "real_halves_fd": frechet_distance(fa, fb),
            "real_maxprob": float(p_real.max(1).mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=None, help="override num_epochs")
    ap.add_argument("--work", type=Path, default=None, help="keep the outputs here")
    ap.add_argument("--json", type=Path, default=None, help="write the results as JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    x, y = load_digits(TRAIN_DIR)
    xt, yt = load_digits(TEST_DIR)
    clf = train_classifier(x, y)
    p_test, _ = predict(clf, xt)
    acc = float((p_test.argmax(1) == yt.numpy()).mean())
    _, real_feats = predict(clf, x)
    base = baselines(clf, x, real_feats)
    print(f"classifier: {len(x)} training digits, held-out accuracy {acc:.3f} on {len(xt)} "
          f"({time.perf_counter() - t0:.1f} s); real digits mean max-prob {base['real_maxprob']:.3f}")
    print(f"baselines : uniform noise maxprob {base['noise']['maxprob']:.3f}, classes "
          f"{base['noise']['classes']}, FD {base['noise']['fd']:.2f}; FD real half vs half "
          f"{base['real_halves_fd']:.2f}")

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        run = run_gan(work, args.threads, args.epochs)
        rows = evaluate_run(work, clf, real_feats)
    print(f"GAN run   : wall {run['wall_s']:.1f} s, CPU {run['cpu_s']:.1f} s "
          f"({args.threads} threads)")
    print("epoch   maxprob  classes      FD   per-class counts")
    for r in rows:
        print(f"{r['epoch']:5d}   {r['maxprob']:.3f}    {r['classes']:5d}  {r['fd']:7.2f}   "
              f"{r['counts']}")
    last = rows[-1]
    ok = last["maxprob"] >= 0.8 and last["classes"] >= 8 and last["fd"] < rows[0]["fd"]
    print(f"acceptance: maxprob {last['maxprob']:.3f} >= 0.8, classes {last['classes']} >= 8, "
          f"FD {rows[0]['fd']:.2f} -> {last['fd']:.2f}: {'PASS' if ok else 'FAIL'}")
    if args.json:
        args.json.write_text(json.dumps({"classifier_accuracy": acc, "baselines": base,
                                         "run": {k: v for k, v in run.items() if k != "stdout"},
                                         "epochs": rows}, indent=2))


if __name__ == "__main__":
    main()
