"""``--app=gan`` under ``mpirun -np 2`` (CPU, gloo): both networks DistributedDataParallel, the
noise drawn for the global batch and sliced per rank, so the first epoch's losses and the final
weights of np=2 match np=1 with the same global batch (issue 15)."""

from __future__ import annotations

import json
import subprocess

import h5py
import numpy as np
import pytest
import torch

from conftest import mpirun_cmd, needs_mpi, rmldnn_env
from test_gan_app import CRITIC, GEN, make_images

pytestmark = pytest.mark.slow

def _config(d):
    nn = {"outfile": "out.txt", "num_epochs": 1, "seed": 11, "layers": GEN,
          "discriminator": {"layers": CRITIC},
          "checkpoints": {"save": "ck/", "interval": 1},
          "data": {"input_type": "images", "input_path": "data/", "grayscale": True,
                   "batch_size": 8, "preload": True, "num_test_examples": 6,
                   "test_batch_size": 4, "test_output_path": "pred/"},
          "optimizer": {"type": "Adam", "learning_rate": 1e-3, "beta1": 0.5, "beta2": 0.9},
          "loss": {"function": "Wasserstein", "gradient_penalty": 10, "critic_iterations": 2},
          "progress": False}
    (d / "cfg.json").write_text(json.dumps({"neural_network": nn}))


@needs_mpi
def test_np2_matches_np1(tmp_path):
    runs = {}
    for np_ in (1, 2):
        d = tmp_path / f"np{np_}"
        make_images(d / "data", n=32)
        _config(d)
        cmd = mpirun_cmd(np_, ["--app=gan", "--config=cfg.json"])
        proc = subprocess.run(cmd, cwd=d, env=rmldnn_env(1), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert f"RocketML : {np_} MPI process" in proc.stdout
        with h5py.File(d / "pred/output_1.h5") as f:
            samples = {n: f[n][()] for n in f}
        assert (d / "pred/output_1.png").is_file()
        runs[np_] = (np.loadtxt(d / "out_train.txt", ndmin=2), samples,
                     torch.load(d / "ck/model_checkpoint_1.pt", weights_only=True),
                     torch.load(d / "ck/discriminator_checkpoint_1.pt", weights_only=True))
    (log1, s1, g1, d1), (log2, s2, g2, d2) = runs[1], runs[2]
    assert log1.shape == log2.shape == (4, 6)                 # 32 images / global batch 8
    print(f"\nnp=2 vs np=1: max |Δ loss D, loss G| = {np.abs(log2[:, 4:] - log1[:, 4:]).max():.2e}")
    np.testing.assert_allclose(log2[:, 4:], log1[:, 4:], rtol=0, atol=1e-4)   # Loss D, Loss G
    assert g1["extra"]["generator_steps"] == g2["extra"]["generator_steps"] == 2
    # rank 0's networks after the epoch: gradients of both were averaged over the ranks
    for a, b in ((g1["model"], g2["model"]), (d1["model"], d2["model"])):
        for k in a:
            assert torch.allclose(a[k], b[k], rtol=0, atol=1e-5), k
    # the generated samples: gathered from both ranks into one file, same as np=1
    assert list(s2) == list(s1) == [f"sample_{i:05d}" for i in range(6)]
    for n in s1:
        np.testing.assert_allclose(s2[n], s1[n], rtol=0, atol=1e-5)
