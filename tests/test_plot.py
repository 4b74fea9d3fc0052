"""``rmldnn plot`` (issue 13): figures from ``_train.txt`` / ``_test.txt`` (SPEC §7.3).

The logs are written by the engine's own writer (:class:`rmldnn_py.engine.logfiles.LogFiles`)
from known values; the series plotted (read back from the figures' lines through ``--data``) are
compared with the logs parsed independently (``numpy.loadtxt``, a regex) and the smoothed curve
with a direct weighted-mean formula of the debiased EMA. PNGs are checked for size, dimensions and
the presence of each run's line colour. Bad input gives one-line errors with exit code 1.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from rmldnn_py.cli import main
from rmldnn_py.engine.logfiles import LogFiles
from rmldnn_py.tools.plot import ema


def _write_run(path, epochs=3, nb=7, seed=0, accuracy=True):
    """A run's logs through the engine's writer; returns (train values (n, 6), test rows)."""
    rng = np.random.default_rng(seed)
    logs = LogFiles(str(path))
    rows, tests = [], []
    t = 0.0
    for e in range(1, epochs + 1):
        for b in range(1, nb + 1):
            t += 0.137
            loss = 2.0 * np.exp(-0.3 * ((e - 1) * nb + b) / nb) + rng.uniform(0, 0.2)
            g = rng.uniform(0.2, 3.0)
            logs.train_line(e, b, nb, t, loss, g)
            rows.append((e, b, loss, g))
        tests.append((e, 1.0 / e, 0.5 + 0.1 * e if accuracy else None))
        logs.test_line(e, 1.0 / e, 0.5 + 0.1 * e if accuracy else None)
    logs.close()
    return rows, tests


def _plot(args, capsys):
    code = main(["plot"] + [str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _series(data, fig, run, kind, column=None):
    found = [s for s in data["figures"][fig] if s["run"] == run and s["kind"] == kind
             and (column is None or s["column"] == column)]
    assert len(found) == 1, (fig, run, kind, column, [(s["run"], s["kind"]) for s in data["figures"][fig]])
    return np.array(found[0]["x"], dtype=float), np.array(found[0]["y"], dtype=float)


def _ema_reference(y, span):
    """Debiased EMA as a normalised weighted mean: ŝ_t = Σ β^(t−i) y_i / Σ β^(t−i)."""
    beta = 1 - 2 / (span + 1)
    out = []
    for t in range(len(y)):
        w = beta ** np.arange(t, -1, -1)
        out.append(float(np.dot(w, y[:t + 1]) / w.sum()))
    return np.array(out)


def _has_colour(png, rgb, tol=40) -> bool:
    a = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return bool((np.abs(a - np.array(rgb)).sum(axis=2) < tol).any())


def test_plot_one_run_matches_log(tmp_path, capsys):
    _write_run(tmp_path / "out_mnist.txt")
    outdir = tmp_path / "figs"
    code, out, err = _plot([tmp_path / "out_mnist.txt", "--output", outdir,
                            "--data=" + str(tmp_path / "d.json")], capsys)
    assert code == 0, err
    assert err == ""
    data = json.loads((tmp_path / "d.json").read_text())
    names = sorted(data["figures"])
    assert names == ["test_accuracy.png", "test_loss.png", "training_grad_norm.png",
                     "training_loss.png"]
    for name in names:
        png = outdir / name
        assert f"Writing figure to file: {png}" in out
        size = png.stat().st_size
        assert 5_000 < size < 120_000, (name, size)
        im = Image.open(png)
        assert im.format == "PNG" and im.size == (640, 400)
        assert _has_colour(png, (0x1F, 0x77, 0xB4)), name      # matplotlib C0: the run's line

    # independent parse of the logs
    train = np.loadtxt(tmp_path / "out_mnist_train.txt")
    x, y = _series(data, "training_loss.png", "out_mnist", "raw")
    np.testing.assert_array_equal(x, train[:, 2])
    np.testing.assert_array_equal(y, train[:, 4])
    span = max(1, round(len(y) / 25))
    _, ys = _series(data, "training_loss.png", "out_mnist", "smoothed")
    np.testing.assert_allclose(ys, _ema_reference(train[:, 4], span), rtol=1e-12)
    _, g = _series(data, "training_grad_norm.png", "out_mnist", "raw")
    np.testing.assert_array_equal(g, train[:, 5])
    test = [tuple(map(float, re.findall(r"[-+]?\d*\.?\d+(?:e[-+]?\d+)?", line)))
            for line in (tmp_path / "out_mnist_test.txt").read_text().splitlines()]
    e, loss = _series(data, "test_loss.png", "out_mnist", "test")
    np.testing.assert_array_equal(e, [t[0] for t in test])
    np.testing.assert_array_equal(loss, [t[1] for t in test])
    _, acc = _series(data, "test_accuracy.png", "out_mnist", "test")
    np.testing.assert_array_equal(acc, [t[2] for t in test])


def test_outfile_spellings_and_default_output_dir(tmp_path, capsys):
    _write_run(tmp_path / "run.txt", accuracy=False)
    for arg in ("run.txt", "run", "run_train.txt"):
        for f in tmp_path.glob("*.png"):
            f.unlink()
        code, _, err = _plot([tmp_path / arg], capsys)
        assert code == 0, err
        made = sorted(p.name for p in tmp_path.glob("*.png"))   # next to the logs
        assert made == ["test_loss.png", "training_grad_norm.png", "training_loss.png"], arg


def test_several_runs_are_overlaid(tmp_path, capsys):
    _write_run(tmp_path / "a" / "out_a.txt", seed=1)
    _write_run(tmp_path / "b" / "out_b.txt", epochs=2, nb=11, seed=2)
    code, _, err = _plot([tmp_path / "a" / "out_a.txt", tmp_path / "b" / "out_b", "--output",
                          tmp_path, "--data", tmp_path / "d.json"], capsys)
    assert code == 0, err
    data = json.loads((tmp_path / "d.json").read_text())
    for run, sub, colour in (("out_a", "a", (0x1F, 0x77, 0xB4)), ("out_b", "b", (0xFF, 0x7F, 0x0E))):
        train = np.loadtxt(tmp_path / sub / f"{run}_train.txt")
        x, y = _series(data, "training_loss.png", run, "raw")
        np.testing.assert_array_equal(x, train[:, 2])
        np.testing.assert_array_equal(y, train[:, 4])
        assert _has_colour(tmp_path / "training_loss.png", colour)
        assert _has_colour(tmp_path / "test_accuracy.png", colour)


def test_same_base_name_in_two_directories_gets_distinct_labels(tmp_path, capsys):
    _write_run(tmp_path / "x" / "out.txt", seed=1)
    _write_run(tmp_path / "y" / "out.txt", seed=2)
    code, _, err = _plot([tmp_path / "x" / "out.txt", tmp_path / "y" / "out.txt", "--output",
                          tmp_path, "--data", tmp_path / "d.json"], capsys)
    assert code == 0, err
    runs = {s["run"] for s in json.loads((tmp_path / "d.json").read_text())["figures"]["training_loss.png"]}
    assert runs == {str(tmp_path / "x" / "out"), str(tmp_path / "y" / "out")}


def test_gan_columns_and_names(tmp_path, capsys):
    """``epoch batch frac seconds loss_d loss_g``: --columns names them; every loss* column goes
    into training_loss.png; three values without names are value_1..3."""
    rng = np.random.default_rng(3)
    vals = rng.normal(size=(12, 2))
    (tmp_path / "gan_train.txt").write_text("".join(
        f"1 {i + 1} {(i + 1) / 12:.6f} {0.1 * i:.3f} {a:.6g} {b:.6g}\n" for i, (a, b) in enumerate(vals)))
    code, _, err = _plot([tmp_path / "gan", "--columns=loss_d,loss_g", "--data",
                          tmp_path / "d.json"], capsys)
    assert code == 0, err
    data = json.loads((tmp_path / "d.json").read_text())
    assert sorted(data["figures"]) == ["training_loss.png"]
    train = np.loadtxt(tmp_path / "gan_train.txt")
    for j, col in enumerate(("loss_d", "loss_g")):
        _, y = _series(data, "training_loss.png", "gan", "raw", col)
        np.testing.assert_array_equal(y, train[:, 4 + j])
    (tmp_path / "three_train.txt").write_text("1 1 1.0 0.5 1 2 3\n")
    code, _, err = _plot([tmp_path / "three", "--data", tmp_path / "d3.json"], capsys)
    assert code == 0, err
    data = json.loads((tmp_path / "d3.json").read_text())
    assert sorted(data["figures"]) == ["training_loss.png", "training_value_2.png",
                                       "training_value_3.png"]


def test_ema_is_debiased_and_skips_nan():
    y = np.array([4.0, 2.0, np.nan, 6.0, 1.0])
    got = ema(y, span=3)                      # beta = 0.5
    finite = np.array([4.0, 2.0, 6.0, 1.0])
    ref = _ema_reference(finite, 3)
    np.testing.assert_allclose(got[[0, 1, 3, 4]], ref, rtol=1e-12)
    assert np.isnan(got[2])
    assert ema(np.array([5.0]))[0] == 5.0


@pytest.mark.parametrize("files,arg,message", [
    ({}, "missing.txt", r"missing_train\.txt: log file not found"),
    ({"m_train.txt": "1 1 0.5 0.1 2.3 0.5\n1 2 1.0 0.2 oops 0.4\n"}, "m.txt",
     r"m_train\.txt: line 2: expected 'epoch batch frac_epoch seconds loss"),
    ({"m_train.txt": "1 1 0.5 0.1 2.3 0.5\n\n1 2 1.0 0.2 2.1\n"}, "m.txt",
     r"m_train\.txt: line 3: 5 columns, but the first line has 6"),
    ({"m_train.txt": "1.5 1 0.5 0.1 2.3 0.5\n"}, "m.txt", r"m_train\.txt: line 1: epoch and batch must be integers"),
    ({"m_train.txt": "", "m_test.txt": "\n"}, "m.txt", r"m_train\.txt: empty log \(no data lines\)"),
    ({"m_test.txt": "Epoch: 1 Loss: 0.5\nthis is not a log line\n"}, "m.txt",
     r"m_test\.txt: line 2: expected 'Epoch: <e> Loss: <loss>"),
    ({"m_test.txt": "Epoch: 1.5 Loss: 0.5\n"}, "m.txt", r"m_test\.txt: line 1: expected"),
    ({"m_test.txt": "Epoch: 1 Loss: 0.5\n"}, "m_train.txt", r"m_train\.txt: log file not found$"),
])
def test_bad_logs_one_line_errors(tmp_path, capsys, files, arg, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    code, out, err = _plot([tmp_path / arg, "--output", tmp_path / "o"], capsys)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rmldnn: error: "), err
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_test_log_only_and_usage_errors(tmp_path, capsys):
    (tmp_path / "inf_test.txt").write_text("Epoch: 1 Loss: 0.25 Accuracy: 0.904\n")
    code, _, err = _plot([tmp_path / "inf.txt", "--data", tmp_path / "d.json"], capsys)
    assert code == 0, err
    data = json.loads((tmp_path / "d.json").read_text())
    assert sorted(data["figures"]) == ["test_accuracy.png", "test_loss.png"]
    assert _series(data, "test_accuracy.png", "inf", "test")[1].tolist() == [0.904]
    for argv, msg in (([], "no <outfile> given"), (["a.txt", "--colour=red"], "unknown option '--colour'"),
                      (["a.txt", "--output"], "option --output needs a value")):
        code, _, err = _plot(argv, capsys)
        assert code == 2 and msg in err, err
