"""Training and inference throughput: rmldnn_py (CLI) vs a hand-written PyTorch loop vs Keras 3.

The same network (one Keras 3 JSON file) is trained on the same images three ways, each in its own
fresh subprocess, alternating A B C A B C ... so that machine load affects all three alike:

* ``cli``   — ``python -m rmldnn_py --config=...`` (preload, Adam, NLL). Epoch time and samples/s
  from the seconds column of ``<outfile>_train.txt`` (end of each batch since training start),
  launch → first step from the timestamp of the first ``Train Epoch`` line; for inference from
  the timestamps of the ``Eval`` lines;
* ``torch`` — a minimal hand loop: ``rmldnn_py.network.build_network`` on the same JSON, the
  images decoded once into one float32 tensor, ``torch.optim.Adam``, ``F.nll_loss``; inference
  under ``torch.no_grad``;
* ``keras`` — ``keras.models.model_from_json`` (``KERAS_BACKEND=torch``) on the same JSON,
  ``model.fit`` / ``model.predict`` on the same pixels as NHWC numpy arrays.

Reported per variant (median of ``--runs`` runs): samples/s and epoch time (first epoch excluded
as warm-up; inference: first batch excluded), launch → first step done (process start, imports,
data decoding, network construction and the first step), peak RSS of the process
(``os.wait4`` rusage), final training loss; then the ratios cli/torch and cli/keras.

Workloads:

* ``mnist``  — the demo network (``networks/mnist_keras_net.json``, rewritten as Keras 3 JSON)
  on the 1,480 demo training digits (``demo/mnist/training``), batch 128;
* ``resnet`` — ``keras.applications.ResNet50(weights=None, input_shape=(128, 128, 3),
  classes=10)`` (log-softmax head) on generated random 128×128 RGB PNGs in 10 class folders.

Usage::

    PYTHONPATH=. python benchmarks/throughput.py [--workload mnist|resnet|all]
        [--mode train|infer|both] [--runs 3] [--variants cli,torch,keras]
        [--cli-extra '{"mixed_precision": "bf16"}'] [--json results.json]

Threads: every subprocess uses ``OMP_NUM_THREADS`` (default: all cores).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("cli", "torch", "keras")
MONTHS = {m: i + 1 for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"))}

WORKLOADS = {
    # epochs: training epochs (the first is warm-up); infer_batch: inference batch size
    "mnist": dict(batch=128, epochs=6, infer_batch=128, lr=1e-3, grayscale=True),
    "resnet": dict(batch=16, epochs=3, steps=6, infer_batch=32, infer_batches=6, lr=1e-3,
                   grayscale=False, size=128, classes=10),
}


# ------------------------------------------------------------------------------ preparation

def _py_env(threads: int) -> dict:
    return dict(os.environ, OMP_NUM_THREADS=str(threads), KERAS_BACKEND="torch",
                PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                PYTHONHASHSEED="0")


def make_mnist_json(dst: Path, env: dict) -> None:
    """The demo network (tf.keras 2 JSON, which Keras 3 cannot read) rebuilt and saved by Keras 3."""
    code = f"""
import json, keras
d = json.load(open({str(REPO / 'networks/mnist_keras_net.json')!r}))
ls = d['config']['layers']
inp = keras.Input(shape=tuple(ls[0]['config']['batch_input_shape'][1:]), name=ls[0]['config']['name'])
layers = [getattr(keras.layers, l['class_name']).from_config(l['config']) for l in ls[1:]]
open({str(dst)!r}, 'w').write(keras.Sequential([inp] + layers, name=d['config']['name']).to_json())
"""
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


def make_resnet_json(dst: Path, env: dict, size: int, classes: int) -> None:
    code = f"""
import keras
m = keras.applications.ResNet50(weights=None, input_shape=({size}, {size}, 3), classes={classes},
                                classifier_activation='log_softmax')
open({str(dst)!r}, 'w').write(m.to_json())
"""
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


def make_pngs(root: Path, n: int, size: int, classes: int, seed: int = 0) -> None:
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(seed)
    for k in range(n):
        d = root / f"c{k % classes}"
        d.mkdir(parents=True, exist_ok=True)
        arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(arr).save(d / f"img_{k:05d}.png", compress_level=1)


def prepare(workload: str, tmp: Path, env: dict) -> dict:
    w = dict(WORKLOADS[workload], name=workload)
    if workload == "mnist":
        make_mnist_json(tmp / "net.json", env)
        w["train_dir"] = w["infer_dir"] = str(REPO / "demo/mnist/training")
    else:
        make_resnet_json(tmp / "net.json", env, w["size"], w["classes"])
        make_pngs(tmp / "train", w["batch"] * w["steps"], w["size"], w["classes"])
        make_pngs(tmp / "infer", w["infer_batch"] * w["infer_batches"], w["size"], w["classes"], 1)
        w["train_dir"], w["infer_dir"] = str(tmp / "train"), str(tmp / "infer")
    w["net"] = str(tmp / "net.json")
    w["tmp"] = str(tmp)
    return w


# ------------------------------------------------------------------------------ running

def _launch(cmd: list[str], env: dict, cwd: str, log: Path) -> tuple[float, int, float]:
    """Run cmd; returns (wall start as time.time(), exit status, peak RSS in MiB)."""
    with open(log, "w") as out:
        t0 = time.time()
        p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.stderr.write(log.read_text()[-3000:])
        raise SystemExit(f"{cmd} failed with {p.returncode}")
    return t0, p.returncode, usage.ru_maxrss / 1024.0


def _stamp(line: str) -> float:
    # [2022-Mar-24 21:44:12.182169] ...
    s = line[1:line.index("]")]
    date, clock = s.split(" ")
    y, mon, d = date.split("-")
    hh, mm, ss = clock.split(":")
    sec, us = ss.split(".")
    return dt.datetime(int(y), MONTHS[mon], int(d), int(hh), int(mm), int(sec), int(us)).timestamp()


def run_cli(w: dict, mode: str, env: dict, run_dir: Path, extra: dict) -> dict:
    run_dir.mkdir(parents=True, exist_ok=True)
    data = {"input_type": "images", "target_type": "labels", "grayscale": w["grayscale"],
            "preload": True}
    nn = {"outfile": str(run_dir / "out.txt"), "layers": w["net"], "data": data}
    if mode == "train":
        nn["num_epochs"] = w["epochs"]
        data.update(input_path=w["train_dir"], batch_size=w["batch"])
        nn["optimizer"] = {"type": "Adam", "learning_rate": w["lr"]}
        nn["loss"] = {"function": "NLL"}
    else:
        data.update(test_input_path=w["infer_dir"], test_batch_size=w["infer_batch"])
    nn.update(extra)
    cfg = run_dir / "config.json"
    cfg.write_text(json.dumps({"neural_network": nn}, indent=2))
    log = run_dir / "stdout.txt"
    t0, _, rss = _launch([sys.executable, "-m", "rmldnn_py", f"--config={cfg}"], env,
                         str(run_dir), log)
    lines = log.read_text().splitlines()
    tag = "Train Epoch" if mode == "train" else "Eval  Epoch"
    steps = [ln for ln in lines if tag in ln]
    res = {"first_step_s": _stamp(steps[0]) - t0, "rss_mib": rss}
    if mode == "train":
        rows = [ln.split() for ln in (run_dir / "out_train.txt").read_text().splitlines()]
        ends: dict[int, float] = {}
        for r in rows:
            ends[int(r[0])] = float(r[3])
        epochs = sorted(ends)
        times = [ends[e] - ends[e - 1] for e in epochs[1:]]
        res["epoch_s"] = statistics.median(times)
        res["samples_per_s"] = w["n_train"] / res["epoch_s"]
        res["step_s"] = res["epoch_s"] / w["steps_per_epoch"]
        res["loss"] = float(rows[-1][4])
    else:
        ts = [_stamp(ln) for ln in steps]
        nb = len(ts)
        span = ts[-1] - ts[0]
        res["samples_per_s"] = (w["n_infer"] - w["infer_batch"]) / span if nb > 1 else float("nan")
        res["epoch_s"] = span * w["n_infer"] / max(1, w["n_infer"] - w["infer_batch"])
    return res


def run_worker(kind: str, w: dict, mode: str, env: dict, run_dir: Path) -> dict:
    run_dir.mkdir(parents=True, exist_ok=True)
    job = run_dir / "job.json"
    out = run_dir / "result.json"
    job.write_text(json.dumps(dict(w, mode=mode, out=str(out))))
    t0, _, rss = _launch([sys.executable, str(Path(__file__).resolve()), "--worker", kind,
                          "--job", str(job)], env, str(run_dir), run_dir / "stdout.txt")
    r = json.loads(out.read_text())
    r["first_step_s"] = r.pop("first_step_wall") - t0
    r["rss_mib"] = rss
    return r


# ------------------------------------------------------------------------------ workers

def _decode(folder: str, grayscale: bool):
    """All images of ``folder/<class>/*`` once: float32 NCHW in [0, 1] and int64 labels (classes
    in sorted folder order, files in sorted order — rmldnn_py's order)."""
    import numpy as np
    from PIL import Image
    classes = sorted(d.name for d in Path(folder).iterdir() if d.is_dir())
    xs, ys = [], []
    for ci, c in enumerate(classes):
        for f in sorted((Path(folder) / c).iterdir()):
            im = Image.open(f).convert("L" if grayscale else "RGB")
            a = np.asarray(im, dtype=np.uint8)
            xs.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
            ys.append(ci)
    # np.stack keeps the (transposed) HWC layout of the views: make it a real NCHW array, or the
    # hand loop would silently run on channels-last data (faster on oneDNN CPUs for ResNet)
    x = np.ascontiguousarray(np.stack(xs)).astype(np.float32) / 255.0
    assert x.flags["C_CONTIGUOUS"]
    return x, np.asarray(ys, dtype=np.int64)


def worker_torch(job: dict) -> dict:
    import torch
    import torch.nn.functional as F
    from rmldnn_py.network import build_network

    torch.manual_seed(0)
    train = job["mode"] == "train"
    x, y = _decode(job["train_dir"] if train else job["infer_dir"], job["grayscale"])
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    model = build_network(job["net"], config_path=job["net"], input_shape=tuple(x.shape[1:]))
    res: dict = {}
    if train:
        opt = torch.optim.Adam(model.parameters(), lr=job["lr"])
        bs, n = job["batch"], x.shape[0]
        model.train()
        times, loss = [], None
        for epoch in range(job["epochs"]):
            t = time.perf_counter()
            perm = torch.randperm(n)
            for b in range(0, n, bs):
                idx = perm[b:b + bs]
                xb, yb = x.index_select(0, idx), y.index_select(0, idx)
                opt.zero_grad(set_to_none=True)
                loss = F.nll_loss(model(xb), yb)
                loss.backward()
                opt.step()
                if "first_step_wall" not in res:
                    res["first_step_wall"] = time.time()
            times.append(time.perf_counter() - t)
        res["epoch_s"] = statistics.median(times[1:])
        res["samples_per_s"] = n / res["epoch_s"]
        res["loss"] = float(loss)
    else:
        bs, n = job["infer_batch"], x.shape[0]
        model.eval()
        with torch.no_grad():
            for b in range(0, n, bs):
                model(x[b:b + bs])
                if b == 0:
                    res["first_step_wall"] = time.time()
                    t = time.perf_counter()
        span = time.perf_counter() - t
        res["samples_per_s"] = (n - bs) / span
        res["epoch_s"] = span * n / (n - bs)
    return res


def worker_keras(job: dict) -> dict:
    os.environ["KERAS_BACKEND"] = "torch"
    import keras

    keras.utils.set_random_seed(0)
    train = job["mode"] == "train"
    x, y = _decode(job["train_dir"] if train else job["infer_dir"], job["grayscale"])
    x = x.transpose(0, 2, 3, 1).copy()          # NHWC
    model = keras.models.model_from_json(Path(job["net"]).read_text())
    res: dict = {}

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times, self.t = [], 0.0

        def on_train_batch_end(self, batch, logs=None):
            res.setdefault("first_step_wall", time.time())

        def on_predict_batch_end(self, batch, logs=None):
            if "first_step_wall" not in res:
                res["first_step_wall"] = time.time()
                self.t = time.perf_counter()

        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.t)

    timer = Timer()
    if train:
        def nll(y_true, y_pred):
            idx = keras.ops.expand_dims(keras.ops.cast(y_true, "int32"), -1)
            return -keras.ops.mean(keras.ops.take_along_axis(y_pred, idx, axis=-1))

        model.compile(optimizer=keras.optimizers.Adam(job["lr"]), loss=nll)
        hist = model.fit(x, y, batch_size=job["batch"], epochs=job["epochs"], shuffle=True,
                         verbose=0, callbacks=[timer])
        res["epoch_s"] = statistics.median(timer.times[1:])
        res["samples_per_s"] = x.shape[0] / res["epoch_s"]
        res["loss"] = float(hist.history["loss"][-1])
    else:
        bs, n = job["infer_batch"], x.shape[0]
        model.predict(x, batch_size=bs, verbose=0, callbacks=[timer])
        span = time.perf_counter() - timer.t
        res["samples_per_s"] = (n - bs) / span
        res["epoch_s"] = span * n / (n - bs)
    return res


# ------------------------------------------------------------------------------ report

def _fmt(v, spec=".3g"):
    return "-" if v is None else format(v, spec)


def report(results: dict, runs: int) -> list[dict]:
    rows = []
    for (wl, mode), per in results.items():
        med = {}
        for var, rs in per.items():
            med[var] = {k: statistics.median([r[k] for r in rs]) for k in rs[0]
                        if isinstance(rs[0][k], (int, float))}
        loads = [r["load"] for rs in per.values() for r in rs]
        print(f"\n== {wl} / {mode}  (median of {runs} runs; epoch excludes warm-up; "
              f"1-min load at start {min(loads):.2f}-{max(loads):.2f})")
        print(f"{'variant':8s} {'samples/s':>10s} {'epoch s':>9s} {'step ms':>8s} "
              f"{'first step s':>12s} {'peak RSS MiB':>12s} {'loss':>8s}")
        for var, m in med.items():
            step = m.get("step_s")
            if step is None and "epoch_s" in m:
                step = m["epoch_s"] / results_meta[(wl, mode)]
            print(f"{var:8s} {m['samples_per_s']:10.1f} {m['epoch_s']:9.3f} {1000 * step:8.1f} "
                  f"{m['first_step_s']:12.2f} {m['rss_mib']:12.0f} {_fmt(m.get('loss'), '8.4f')}")
            rows.append(dict(workload=wl, mode=mode, variant=var, **m))
        if "cli" in med:
            for other in ("torch", "keras"):
                if other in med:
                    print(f"cli/{other} throughput ratio: "
                          f"{med['cli']['samples_per_s'] / med[other]['samples_per_s']:.3f}")
    return rows


results_meta: dict = {}


def wait_for_quiet(max_load: float, max_wait: float) -> float:
    """Sleep until the 1-minute load average is below max_load (or max_wait passed); returns it."""
    end = time.time() + max_wait
    while os.getloadavg()[0] >= max_load and time.time() < end:
        time.sleep(2)
    return os.getloadavg()[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workload", choices=("mnist", "resnet", "all"), default="all")
    ap.add_argument("--mode", choices=("train", "infer", "both"), default="both")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--epochs", type=int, help="override the workload's training epochs")
    ap.add_argument("--cli-extra", default="{}", help="JSON merged into neural_network (cli only)")
    ap.add_argument("--max-load", type=float, default=1.5,
                    help="before each run wait (at most --max-wait s) for the 1-min load below this")
    ap.add_argument("--max-wait", type=float, default=60.0)
    ap.add_argument("--json", help="also write the medians here")
    ap.add_argument("--keep", help="keep the run directories under this folder")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--job", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        job = json.loads(Path(a.job).read_text())
        res = {"torch": worker_torch, "keras": worker_keras}[a.worker](job)
        Path(job["out"]).write_text(json.dumps(res))
        return
    env = _py_env(a.threads)
    variants = [v for v in a.variants.split(",") if v]
    extra = json.loads(a.cli_extra)
    workloads = ["mnist", "resnet"] if a.workload == "all" else [a.workload]
    modes = ["train", "infer"] if a.mode == "both" else [a.mode]
    print(f"threads={a.threads} cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f} "
          f"cli-extra={extra}")
    results: dict = {}
    with tempfile.TemporaryDirectory(dir=a.keep) as tmpd:
        tmp = Path(tmpd)
        for wl in workloads:
            (tmp / wl).mkdir()
            w = prepare(wl, tmp / wl, env)
            if a.epochs:
                w["epochs"] = a.epochs
            w["n_train"] = sum(1 for _ in Path(w["train_dir"]).rglob("*.*"))
            w["n_infer"] = sum(1 for _ in Path(w["infer_dir"]).rglob("*.*"))
            w["steps_per_epoch"] = -(-w["n_train"] // w["batch"])
            for mode in modes:
                results_meta[(wl, mode)] = (w["steps_per_epoch"] if mode == "train"
                                            else -(-w["n_infer"] // w["infer_batch"]))
                per = results.setdefault((wl, mode), {v: [] for v in variants})
                for r in range(a.runs):                    # A B C A B C ...
                    for v in variants:
                        d = tmp / wl / f"{mode}_{v}_{r}"
                        load = wait_for_quiet(a.max_load, a.max_wait)
                        res = (run_cli(w, mode, env, d, extra) if v == "cli"
                               else run_worker(v, w, mode, env, d))
                        res["load"] = load
                        per[v].append(res)
                        print(f"  {wl}/{mode} run {r + 1} {v:6s}: {res['samples_per_s']:8.1f} "
                              f"samples/s, first step {res['first_step_s']:.2f} s, "
                              f"RSS {res['rss_mib']:.0f} MiB (load {load:.2f})", flush=True)
        rows = report(results, a.runs)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
