"""``--app=gan`` end to end on tiny networks (issue 15): outputs, critic/generator alternation,
resume of both networks, bad input, the latent split, the noise stream and the PNG grid.

Runs are in-process (``rmldnn_py.cli.main``) on 16 random 8×8 gray PNGs with a 2-layer dense
generator and critic: each takes well under a second of compute. ``test_cli_digits`` runs the
``rmldnn`` command once on a few real demo digits with the demo networks.
"""

from __future__ import annotations

import json
import re
import shutil
import signal

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO, run_rmldnn, strip_ts
from rmldnn_py.cli import main
from rmldnn_py.gan.app import GanApp
from rmldnn_py.gan.data import LatentSplit, NoiseSource, sample_name
from rmldnn_py.gan.grid import grid_tensor, write_grid
from rmldnn_py.network import build_network

LATENT = 8
GEN = [
    {"class_name": "InputLayer", "config": {"name": "z", "batch_input_shape": [None, LATENT]}},
    {"class_name": "Dense", "config": {"name": "g1", "units": 16, "activation": "relu"}},
    {"class_name": "Dense", "config": {"name": "g2", "units": 64, "activation": "sigmoid"}},
    {"class_name": "Reshape", "config": {"name": "img", "target_shape": [8, 8, 1]}},
]
CRITIC = [
    {"class_name": "InputLayer", "config": {"name": "x", "batch_input_shape": [None, 8, 8, 1]}},
    {"class_name": "Flatten", "config": {"name": "flat"}},
    {"class_name": "Dense", "config": {"name": "d1", "units": 8}},
    {"class_name": "LeakyReLU", "config": {"name": "act", "alpha": 0.2}},
    {"class_name": "Dense", "config": {"name": "score", "units": 1}},
]
TS_LINE = re.compile(r"Train Epoch \[\s*(\d+)/\s*\d+\] : Batch \[\s*(\d+)/\s*\d+\] "
                     r"\(Loss D = (\S+); Loss G = (\S+)\)")


def make_images(root, n=16, size=8, seed=0):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8), mode="L").save(
            root / f"img_{i:02d}.png")


def gan_config(tmp, name="cfg.json", *, epochs=2, batch=4, n_critic=3, num_test=7, test_batch=3,
               resume=False, gen=GEN, critic=CRITIC, **nn_over):
    nn = {
        "outfile": "out.txt", "num_epochs": epochs, "seed": 5, "layers": gen,
        "discriminator": {"layers": critic},
        "checkpoints": {"save": "ck/", "interval": 1, "resume": resume},
        "data": {"input_type": "images", "input_path": "data/", "grayscale": True,
                 "batch_size": batch, "preload": True, "num_test_examples": num_test,
                 "test_batch_size": test_batch, "test_output_path": "pred/"},
        "optimizer": {"type": "Adam", "learning_rate": 1e-3, "beta1": 0.5, "beta2": 0.9},
        "loss": {"function": "Wasserstein", "gradient_penalty": 10, "critic_iterations": n_critic},
        "progress": False,
    }
    for k, v in nn_over.items():
        if v is None:
            nn.pop(k, None)
        else:
            nn[k] = v
    (tmp / name).write_text(json.dumps({"neural_network": nn}))
    return name


@pytest.fixture
def work(tmp_path, monkeypatch):
    make_images(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return tmp_path


def run(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def generator_from(ck_path):
    net = build_network(GEN, config_path="cfg.json")
    net.load_state_dict(load(ck_path)["model"])
    return net.eval()


# ------------------------------------------------------------------------------------------------


def test_tiny_run_outputs_and_alternation(work, capsys, monkeypatch):
    g_at = []                                  # critic-step count at every generator step
    orig = GanApp._generator_step

    def spy(ctx, st, n):
        g_at.append(st.critic_steps)
        return orig(ctx, st, n)

    monkeypatch.setattr(GanApp, "_generator_step", staticmethod(spy))
    gan_config(work)
    code, out, err = run(["--app=gan", "--config=cfg.json"], capsys)
    assert code == 0, err
    # 16 images / batch 4 = 4 batches per epoch, 2 epochs = 8 critic steps; n_critic = 3
    assert g_at == [3, 6]

    # checkpoints: both networks, loadable with weights_only; optimizer step counts
    for e in (1, 2):
        gen_ck = load(f"ck/model_checkpoint_{e}.pt")
        disc_ck = load(f"ck/discriminator_checkpoint_{e}.pt")
        assert set(disc_ck["model"]) == set(build_network(CRITIC, config_path="c").state_dict())
        assert disc_ck["epoch"] == e and disc_ck["format"] == gen_ck["format"]
        extra = gen_ck["extra"]
        assert (extra["critic_steps"], extra["generator_steps"]) == (4 * e, (4 * e) // 3)
        for name, t in extra["critic"].items():
            assert torch.equal(t, disc_ck["model"][name])
        # Adam counts its own steps: an independent count of the alternation
        assert {int(s["step"]) for s in disc_ck["optimizer"]["state"].values()} == {4 * e}
        assert {int(s["step"]) for s in gen_ck["optimizer"]["state"].values()} == {(4 * e) // 3}

    # output_<e>.h5: G(z) of the fixed latent batch (seed + 3), written sample by sample
    z = torch.randn((7, LATENT), generator=torch.Generator().manual_seed(5 + 3))
    for e in (1, 2):
        with h5py.File(f"pred/output_{e}.h5") as f:
            assert list(f) == [f"sample_{i:05d}" for i in range(7)]
            got = np.stack([f[n][()] for n in f])
        assert got.shape == (7, 1, 8, 8) and got.dtype == np.float32
        with torch.no_grad():
            want = generator_from(f"ck/model_checkpoint_{e}.pt")(z).numpy()
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
        # the PNG grid: one row of 7 tiles of 8×8 with 2-pixel padding, gray values of the samples
        png = np.asarray(Image.open(f"pred/output_{e}.png").convert("RGB"))
        assert png.shape == (2 + 10, 2 + 7 * 10, 3)
        for i in range(7):
            tile = png[2:10, 2 + 10 * i:10 + 10 * i, 0].astype(int)
            np.testing.assert_allclose(tile, np.floor(got[i, 0] * 255 + 0.5), atol=1)

    # batch lines and _train.txt: epoch batch frac seconds loss_d loss_g, every batch
    rows = [line.split() for line in (work / "out_train.txt").read_text().splitlines()]
    assert [(int(r[0]), int(r[1])) for r in rows] == [(e, b) for e in (1, 2) for b in (1, 2, 3, 4)]
    assert all(len(r) == 6 for r in rows)
    assert [float(r[2]) for r in rows] == [(e - 1) + b / 4 for e in (1, 2) for b in (1, 2, 3, 4)]
    shown = [m.groups() for m in TS_LINE.finditer(out)]
    assert len(shown) == 8
    for r, (e, b, ld, lg) in zip(rows, shown):
        assert (int(e), int(b)) == (int(r[0]), int(r[1]))
        assert float(ld) == pytest.approx(float(r[4]), abs=6e-5)
        assert float(lg) == pytest.approx(float(r[5]), abs=6e-5)
    assert "Function         : Wasserstein (WGAN-GP)" in out
    assert "Writing generated samples grid to file: pred/output_2.png" in out
    assert "Saving discriminator checkpoint to file: ck/discriminator_checkpoint_2.pt" in out
    assert not (work / "out_test.txt").exists()          # no evaluation loss


@pytest.mark.parametrize("stop_after", [6, 4], ids=["mid-epoch-2", "epoch-boundary"])
def test_resume_both_networks(tmp_path, monkeypatch, capsys, stop_after):
    """A 2-epoch run interrupted (SIGTERM, full-state checkpoint) after ``stop_after`` batches and
    resumed with ``"resume": true`` ends with the same generator and critic as an uninterrupted
    run, and logs the same losses."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    results = {}
    for kind in ("straight", "interrupted"):
        d = tmp_path / kind
        make_images(d / "data")
        monkeypatch.chdir(d)
        gan_config(d)
        if kind == "interrupted":
            calls = {"n": 0}
            orig = GanApp.train_step

            def stopping(self, ctx, x, y):
                values = orig(self, ctx, x, y)
                calls["n"] += 1
                if calls["n"] == stop_after:
                    ctx.preemption.signum = signal.SIGTERM
                return values

            monkeypatch.setattr(GanApp, "train_step", stopping)
            code, out, err = run(["--app=gan", "--config=cfg.json"], capsys)
            assert code == 128 + signal.SIGTERM, err
            monkeypatch.setattr(GanApp, "train_step", orig)
            gan_config(d, resume=True)
            code, out, err = run(["--app=gan", "--config=cfg.json"], capsys)
            assert "Resuming from ck/model_checkpoint_" in out
        else:
            code, out, err = run(["--app=gan", "--config=cfg.json"], capsys)
        assert code == 0, err
        results[kind] = (load(d / "ck/model_checkpoint_2.pt"),
                         load(d / "ck/discriminator_checkpoint_2.pt"),
                         [r.split() for r in (d / "out_train.txt").read_text().splitlines()])
    (g1, d1, log1), (g2, d2, log2) = results["straight"], results["interrupted"]
    for a, b in ((g1["model"], g2["model"]), (d1["model"], d2["model"])):
        assert set(a) == set(b)
        for k in a:
            assert torch.allclose(a[k].double(), b[k].double(), rtol=0, atol=1e-6), k
    assert g1["extra"]["generator_steps"] == g2["extra"]["generator_steps"] == 2
    # the resumed run's log continues the interrupted one: same batches and losses
    assert [r[:3] + r[4:] for r in log1] == [r[:3] + r[4:] for r in log2]


@pytest.mark.parametrize("change, fragments", [
    ({"discriminator": None}, ["neural_network.discriminator: missing"]),
    ({"critic": CRITIC[:-1] + [{"class_name": "Dense", "config": {"name": "score", "units": 2}}]},
     ["neural_network.discriminator.layers: layer 'score'", "one score per sample", "(2,)"]),
    ({"gen": GEN[:2] + [{"class_name": "Dense", "config": {"name": "g2", "units": 16}},
                        {"class_name": "Reshape",
                         "config": {"name": "img", "target_shape": [4, 4, 1]}}]},
     ["layer 'img'", "generator outputs samples of shape (1, 4, 4)", "(1, 8, 8)"]),
    ({"critic": [{"class_name": "InputLayer",
                  "config": {"name": "x", "batch_input_shape": [None, 8, 8, 3]}}] + CRITIC[1:]},
     ["neural_network.discriminator.layers: layer 'x'", "(3, 8, 8)", "(1, 8, 8)"]),
    ({"app": "dnn"}, ["neural_network.loss.function", "'Wasserstein' requires --app=gan"]),
    ({"loss": {"function": "MSE"}}, ["loss function 'MSE' cannot be used with --app=gan"]),
    ({"test_input_path": "data/"}, ["neural_network.data.test_input_path", "reads no test data"]),
    ({"test_output_path": None}, ["neural_network.data.test_output_path"]),
    ({"discriminator": {"layers": CRITIC, "optimizer": {"type": "Adam", "lr_scheduler":
                                                        {"type": "Exponential", "gamma": 0.9}}}},
     ["neural_network.discriminator.optimizer.lr_scheduler: not supported"]),
    ({"optimizer": {"type": "Hessian"}},
     ["neural_network.optimizer.type: 'Hessian' (a line-search optimizer) cannot train a GAN"]),
], ids=["no-discriminator", "critic-not-scalar", "generator-shape", "critic-input",
        "wasserstein-dnn", "other-loss", "test-input", "no-output-path", "critic-scheduler",
        "line-search"])
def test_bad_input_one_line(work, capsys, change, fragments):
    kw = dict(change)
    app = kw.pop("app", "gan")
    data_changes = {k: kw.pop(k) for k in ("test_input_path", "test_output_path") if k in kw}
    name = gan_config(work, **kw)
    if data_changes:
        cfg = json.loads((work / name).read_text())
        for k, v in data_changes.items():
            if v is None:
                cfg["neural_network"]["data"].pop(k)
            else:
                cfg["neural_network"]["data"][k] = v
        (work / name).write_text(json.dumps(cfg))
    code, out, err = run([f"--app={app}", "--config=cfg.json"], capsys)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rmldnn: error: "), err
    for frag in fragments:
        assert frag in lines[0], lines[0]
    assert not (work / "ck").exists() and not (work / "pred").exists()


def test_generation_only_run(work, capsys):
    """Without input_path the run only generates: checkpoints.load gives the generator."""
    gan_config(work, epochs=1)
    assert run(["--app=gan", "--config=cfg.json"], capsys)[0] == 0
    cfg = json.loads((work / "cfg.json").read_text())
    nn = cfg["neural_network"]
    nn["data"].pop("input_path")
    nn["data"]["test_output_path"] = "gen/"
    nn["checkpoints"] = {"load": "ck/model_checkpoint_1.pt"}
    for k in ("optimizer", "loss", "discriminator"):
        nn.pop(k)
    (work / "gen.json").write_text(json.dumps(cfg))
    code, out, err = run(["--app=gan", "--config=gen.json"], capsys)
    assert code == 0, err
    with h5py.File("gen/output_1.h5") as a, h5py.File("pred/output_1.h5") as b:
        assert list(a) == list(b)
        for n in a:
            np.testing.assert_array_equal(a[n][()], b[n][()])


def test_bf16_and_channels_last_run(work, capsys):
    """Mixed precision (bf16 autocast on the CPU) and channels_last run and give finite losses."""
    conv_critic = [CRITIC[0],
                   {"class_name": "Conv2D",
                    "config": {"name": "c1", "filters": 4, "kernel_size": [3, 3], "strides": [2, 2],
                               "padding": "same"}},
                   {"class_name": "LeakyReLU", "config": {"name": "a1", "alpha": 0.2}},
                   {"class_name": "Flatten", "config": {"name": "flat"}},
                   {"class_name": "Dense", "config": {"name": "score", "units": 1}}]
    gan_config(work, epochs=1, critic=conv_critic, mixed_precision="bf16", channels_last=True)
    code, out, err = run(["--app=gan", "--config=cfg.json"], capsys)
    assert code == 0, err
    rows = np.loadtxt(work / "out_train.txt")
    assert rows.shape == (4, 6) and np.isfinite(rows).all()


# ------------------------------------------------------------------------------------------------
# units


def test_latent_split_partition_and_names():
    one = LatentSplit(10, 4, 0, 1, seed=7)
    one.bind((3,))
    parts = []
    for rank in range(3):
        s = LatentSplit(10, 4, rank, 3, seed=7)
        s.bind((3,))
        assert torch.equal(s.latent, one.latent)          # same vectors on every rank
        batches = list(s.batches(1))
        assert len(batches) == s.num_batches              # identical count on every rank
        parts += [i for b in batches for i in b.indices.tolist()]
        for b in batches:
            assert b.targets is None
            assert torch.equal(b.inputs, one.latent[b.indices])
    assert sorted(parts) == list(range(10))
    assert torch.equal(one.latent,
                       torch.randn((10, 3), generator=torch.Generator().manual_seed(7 + 3)))
    assert [sample_name(i, 10) for i in (0, 9)] == ["sample_00000", "sample_00009"]
    assert sample_name(7, 123456) == "sample_000007"
    assert not one.has_targets and one.target_kind is None


def test_noise_is_sliced_from_the_global_draw():
    single = NoiseSource(3, 0, 1)
    ranks = [NoiseSource(3, r, 2) for r in range(2)]
    z1, e1 = single.latent(8, (4,)), single.uniform(8)
    z2 = torch.cat([r.latent(4, (4,)) for r in ranks])
    e2 = torch.cat([r.uniform(4) for r in ranks])
    assert torch.equal(z1, z2) and torch.equal(e1, e2)
    state = single.state_dict()
    a = single.latent(2, (4,))
    single.load_state_dict(state)
    assert torch.equal(single.latent(2, (4,)), a)


def test_grid_bgr_to_rgb_and_range(tmp_path):
    x = torch.zeros(2, 3, 4, 4)
    x[0, 0] = 1.0                     # blue in BGR order
    x[1, 2] = 1.0                     # red
    g = grid_tensor(x, nrow=2)
    assert g.shape == (3, 8, 14)
    assert g[2, 2:6, 2:6].min() == 1 and g[:2, 2:6, 2:6].max() == 0     # blue tile
    assert g[0, 2:6, 8:12].min() == 1 and g[1:, 2:6, 8:12].max() == 0   # red tile
    # a [-1, 1] range maps -1 → black, 1 → white
    y = torch.tensor([-1.0, 0.0, 1.0, 1.0]).reshape(1, 1, 2, 2)
    write_grid(str(tmp_path / "g.png"), y, (-1.0, 1.0))
    png = np.asarray(Image.open(tmp_path / "g.png").convert("L"))
    assert png.tolist() == [[0, 128], [255, 255]]      # (make_grid: one image, no padding)
    assert [p.name for p in tmp_path.iterdir()] == ["g.png"]         # no temporary file left


def test_cli_digits(tmp_path):
    """``rmldnn --app=gan`` on 16 demo digits with the demo networks: 1 epoch writes both
    checkpoints, output_1.h5 with num_test_examples samples of shape (1, 28, 28), the PNG and
    the log columns."""
    for c in ("3", "7"):
        (tmp_path / "digits" / c).mkdir(parents=True)
        for f in sorted((REPO / "demo/mnist/training" / c).iterdir())[:8]:
            shutil.copy(f, tmp_path / "digits" / c / f.name)
    cfg = json.loads((REPO / "configs/config_gan_digits.json").read_text())
    nn = cfg["neural_network"]
    nn["layers"] = str(REPO / "networks/gan_generator_digits.json")
    nn["discriminator"]["layers"] = str(REPO / "networks/gan_critic_digits.json")
    nn.update(num_epochs=1, outfile="out.txt", checkpoints={"save": "ck/", "interval": 1})
    nn["data"].update(input_path="digits/", batch_size=8, num_test_examples=12,
                      test_batch_size=5, test_output_path="pred/")
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    proc = run_rmldnn(["--app=gan", "--config=cfg.json"], tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    lines = strip_ts(proc.stdout)
    assert "RocketML : gan" in lines
    assert sum(1 for ln in lines if TS_LINE.search(ln)) == 2
    assert lines[-1] == "All done (return value = 0)."
    assert load(tmp_path / "ck/model_checkpoint_1.pt")["epoch"] == 1
    assert load(tmp_path / "ck/discriminator_checkpoint_1.pt")["epoch"] == 1
    with h5py.File(tmp_path / "pred/output_1.h5") as f:
        assert len(f) == 12
        assert all(f[n].shape == (1, 28, 28) for n in f)
    assert Image.open(tmp_path / "pred/output_1.png").size == (2 + 10 * 30, 2 + 2 * 30)
    rows = np.loadtxt(tmp_path / "out_train.txt", ndmin=2)
    assert rows.shape == (2, 6) and np.isfinite(rows).all()


def test_critic_learning_rate_follows_the_generator_schedule(work, capsys):
    """Exponential(γ = 0.5) on the generator: in epoch e the generator runs at lr·γ^(e−1) and
    the critic (own optimizer, lr 4e-3) at 4e-3·γ^(e−1)."""
    gan_config(work, discriminator={"layers": CRITIC,
                                    "optimizer": {"type": "Adam", "learning_rate": 4e-3}},
               optimizer={"type": "Adam", "learning_rate": 1e-3,
                          "lr_scheduler": {"type": "Exponential", "gamma": 0.5}})
    code, out, err = run(["--app=gan", "--config=cfg.json"], capsys)
    assert code == 0, err
    for e in (1, 2):
        groups = load(f"ck/discriminator_checkpoint_{e}.pt")["optimizer"]["param_groups"]
        assert [g["lr"] for g in groups] == [pytest.approx(4e-3 * 0.5 ** (e - 1))]
