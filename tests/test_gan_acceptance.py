"""Learning quality of ``--app=gan`` on the embedded 1,437 demo digits (issue 15 acceptance).

``benchmarks/gan_digits.py`` holds the procedure (classifier, Fréchet distance, the run of
``configs/config_gan_digits.json``); this test runs it and asserts the criteria on the samples read
back from the written ``output_<epoch>.h5`` files:

* the last evaluation's 1,000 generated samples: mean max-probability of the digit classifier
  >= 0.8 and at least 8 of the 10 classes present;
* the Fréchet distance between the classifier features of the real and the generated digits
  falls over training.

The run takes several CPU minutes: ``pytest -m acceptance tests/test_gan_acceptance.py``.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from scipy import linalg

from conftest import REPO


def _bench():
    spec = importlib.util.spec_from_file_location("gan_digits", REPO / "benchmarks/gan_digits.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_frechet_distance_matches_sqrtm():
    """The eigendecomposition form equals the textbook formula with scipy's sqrtm (well
    conditioned case) and is 0 for identical sets."""
    fd = _bench().frechet_distance
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(0.5, 1.3, size=(300, 6))
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    want = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert fd(a, b) == pytest.approx(want, rel=1e-8)
    assert fd(a, a) == pytest.approx(0.0, abs=1e-8)


@pytest.mark.acceptance
def test_gan_generates_recognisable_digits(tmp_path):
    bench = _bench()
    torch.set_num_threads(1)
    x, y = bench.load_digits(bench.TRAIN_DIR)
    assert len(x) == 1437
    xt, yt = bench.load_digits(bench.TEST_DIR)
    clf = bench.train_classifier(x, y)
    p_test, _ = bench.predict(clf, xt)
    assert (p_test.argmax(1) == yt.numpy()).mean() >= 0.95     # the measuring instrument works
    _, real_feats = bench.predict(clf, x)
    noise = bench.score(clf, torch.rand((1000, 1, 28, 28),
                                        generator=torch.Generator().manual_seed(0)), real_feats)
    assert noise["maxprob"] < 0.5                               # the criterion rejects noise

    run = bench.run_gan(tmp_path, threads=1)
    rows = bench.evaluate_run(tmp_path, clf, real_feats)
    print(f"\nGAN run: wall {run['wall_s']:.0f} s, CPU {run['cpu_s']:.0f} s")
    for r in rows:
        print(r["epoch"], f"{r['maxprob']:.3f}", r["classes"], f"{r['fd']:.2f}")
    assert [r["n"] for r in rows] == [1000] * len(rows) and len(rows) >= 10
    last = rows[-1]
    assert last["maxprob"] >= 0.8
    assert last["classes"] >= 8
    fds = [r["fd"] for r in rows]
    assert fds[-1] < 0.25 * fds[0]
    assert fds[-1] < min(fds[: len(fds) // 4])
