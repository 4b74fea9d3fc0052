"""TensorBoard and progress-bar observers (issue 13), fed as the engine feeds them: every batch,
in bursts at the printed batches.

TensorBoard: events read back with tensorboard's own ``EventAccumulator`` (``read_scalars``) hold
exactly the fed values (float32) at the printed batches of SPEC §7.2.4 (checked against the
SPEC's SS-MNIST example list), at step ``(epoch − 1)·nb + batch``; events are on disk after each
epoch end (flush). Progress: no output at all without a terminal; with a (fake) terminal and a
fake clock the bar shows the samples/s and ETAs computed by hand; stdout lines pass through
unchanged while the bar is shown and ``sys.stdout`` is restored at the epoch end.
"""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest

from rmldnn_py.engine.progress import ProgressObserver, format_duration
from rmldnn_py.engine.tensorboard import TensorBoardObserver, is_printed_batch, read_scalars
from rmldnn_py.errors import ConfigError

# SPEC §7.2.4: "SS-MNIST with nb = 469 prints batches 5, 10, 15, 19, 24, 29, 33, 38, 43, 47, 52, …"
SS_MNIST_PRINTED = [5, 10, 15, 19, 24, 29, 33, 38, 43, 47, 52]


def test_printed_rule_matches_spec_examples():
    assert [b for b in range(1, 53) if is_printed_batch(b, 469)] == SS_MNIST_PRINTED
    assert all(is_printed_batch(b, 13) for b in range(1, 14))
    assert is_printed_batch(469, 469) and sum(is_printed_batch(b, 469) for b in range(1, 470)) == 100


def _feed(obs, epochs, nb, rng, batch_size=32, evals=True, metric="accuracy", burst=True):
    """Call the observer like the engine: every batch's values, in bursts at printed batches."""
    fed = {"train": [], "eval": []}
    obs.on_train_start(num_epochs=epochs, start_epoch=1, num_batches=nb, batch_size=batch_size)
    for e in range(1, epochs + 1):
        pending = []
        for b in range(1, nb + 1):
            pending.append((b, {"loss": float(rng.uniform(0, 3)), "grad_norm": float(rng.uniform(0, 9))},
                            1e-3 * 0.5 ** (e - 1)))
            if not burst or is_printed_batch(b, nb) or b == nb:
                for bb, values, lr in pending:
                    obs.on_train_batch(epoch=e, batch=bb, num_batches=nb, samples=batch_size,
                                       values=values, lr=lr)
                    fed["train"].append((e, bb, values, lr))
                pending.clear()
        obs.on_epoch_end(epoch=e)
        if evals:
            loss, acc = float(rng.uniform(0, 1)), float(rng.uniform(0, 1))
            obs.on_eval_end(epoch=e, loss=loss, accuracy=acc, metric_name=metric)
            fed["eval"].append((e, loss, acc))
    return fed


def test_tensorboard_scalars_read_back(tmp_path):
    rng = np.random.default_rng(0)
    nb = 150
    obs = TensorBoardObserver(str(tmp_path / "runs" / "a"))
    fed = _feed(obs, 2, nb, rng)
    obs.close()
    got = read_scalars(str(tmp_path / "runs" / "a"))
    assert set(got) == {"train/loss", "train/grad_norm", "train/learning_rate", "eval/loss",
                        "eval/accuracy"}
    printed = [(e, b, v, lr) for e, b, v, lr in fed["train"] if is_printed_batch(b, nb)]
    assert len(printed) == 200                    # 100 printed lines per epoch when nb > 100
    for tag, pick in (("train/loss", lambda v, lr: v["loss"]),
                      ("train/grad_norm", lambda v, lr: v["grad_norm"]),
                      ("train/learning_rate", lambda v, lr: lr)):
        steps = [(e - 1) * nb + b for e, b, _, _ in printed]
        assert [s for s, _ in got[tag]] == steps, tag
        np.testing.assert_array_equal([v for _, v in got[tag]],
                                      np.float32([pick(v, lr) for _, _, v, lr in printed]))
    assert [s for s, _ in got["eval/loss"]] == [1, 2]
    np.testing.assert_array_equal([v for _, v in got["eval/loss"]], np.float32([x[1] for x in fed["eval"]]))
    np.testing.assert_array_equal([v for _, v in got["eval/accuracy"]], np.float32([x[2] for x in fed["eval"]]))


def test_tensorboard_flushes_at_epoch_end_and_names_metrics(tmp_path):
    rng = np.random.default_rng(1)
    obs = TensorBoardObserver(str(tmp_path / "tb"))
    _feed(obs, 1, 5, rng, evals=False)
    got = read_scalars(str(tmp_path / "tb"))           # not closed yet: flushed by on_epoch_end
    assert [s for s, _ in got["train/loss"]] == [1, 2, 3, 4, 5]
    obs.on_eval_end(epoch=1, loss=0.5, accuracy=0.75, metric_name="dice")
    got = read_scalars(str(tmp_path / "tb"))
    assert got["eval/dice"] == [(1, 0.75)] and "eval/accuracy" not in got
    obs.on_eval_end(epoch=2, loss=0.25, accuracy=None)
    obs.close()
    obs.close()                                         # idempotent
    assert read_scalars(str(tmp_path / "tb"))["eval/loss"] == [(1, 0.5), (2, 0.25)]


def test_tensorboard_training_scalars_handed_over_by_interval(tmp_path):
    obs = TensorBoardObserver(str(tmp_path / "i"))                 # 10 s: kept until epoch end
    obs.on_train_batch(epoch=1, batch=1, num_batches=2, samples=4, values={"loss": 0.5}, lr=0.1)
    obs.writer.flush()
    assert "train/loss" not in read_scalars(str(tmp_path / "i"))
    obs.close()
    assert read_scalars(str(tmp_path / "i"))["train/loss"] == [(1, 0.5)]
    now = TensorBoardObserver(str(tmp_path / "n"), write_interval=0)
    now.on_train_batch(epoch=1, batch=1, num_batches=2, samples=4, values={"loss": 0.5}, lr=0.1)
    now.writer.flush()
    assert read_scalars(str(tmp_path / "n"))["train/loss"] == [(1, 0.5)]
    now.close()


def test_tensorboard_gan_keys_and_every_batch(tmp_path):
    obs = TensorBoardObserver(str(tmp_path / "g"), every_batch=True)
    obs.on_train_start(num_epochs=1, start_epoch=1, num_batches=300, batch_size=4)
    for b in range(1, 301):
        obs.on_train_batch(epoch=1, batch=b, num_batches=300, samples=4,
                           values={"loss_d": -b / 10, "loss_g": b / 10}, lr=1e-4)
    obs.close()
    got = read_scalars(str(tmp_path / "g"))
    assert set(got) == {"train/loss_d", "train/loss_g", "train/learning_rate"}
    assert len(got["train/loss_d"]) == 300
    assert got["train/loss_g"][41] == (42, pytest.approx(4.2))


def test_tensorboard_unwritable_logdir(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"cfg.json: neural_network.tensorboard: cannot write "
                                          r"TensorBoard events to '.*file/runs'"):
        TensorBoardObserver(str(tmp_path / "file" / "runs"), where="cfg.json: neural_network.tensorboard")


# ------------------------------------------------------------------------------------------
# progress


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_format_duration():
    assert format_duration(5) == "00:05"
    assert format_duration(3599.4) == "59:59"
    assert format_duration(3725) == "1:02:05"
    assert format_duration(90061) == "1:01:01:01"
    assert format_duration(float("nan")) == "?" and format_duration(-1) == "?"


@pytest.mark.parametrize("stream_cls,enabled", [(io.StringIO, True), (FakeTTY, False)])
def test_progress_silent_without_terminal_or_when_disabled(stream_cls, enabled, monkeypatch):
    stream = stream_cls()
    out = FakeTTY()
    monkeypatch.setattr(sys, "stdout", out)
    obs = ProgressObserver(enabled=enabled, stream=stream)
    assert not obs.active
    _feed(obs, 2, 30, np.random.default_rng(2))
    obs.close()
    assert stream.getvalue() == ""
    assert sys.stdout is out


def test_progress_rates_and_etas_by_hand(monkeypatch):
    stream, clock = FakeTTY(), Clock()
    monkeypatch.setattr(sys, "stdout", io.StringIO())    # not a terminal: left alone
    obs = ProgressObserver(stream=stream, clock=clock)
    assert obs.active
    obs.on_train_start(num_epochs=3, start_epoch=1, num_batches=20, batch_size=64)
    for b in range(1, 11):                               # 0.5 s per batch, 64 samples
        clock.t += 0.5
        obs.on_train_batch(epoch=1, batch=b, num_batches=20, samples=64, values={"loss": 1.0},
                           lr=0.1)
    sps, epoch_eta, run_eta = obs.rates()
    assert sps == pytest.approx(640 / 5.0)
    assert epoch_eta == pytest.approx(5.0)               # 5 s for 10 batches, 10 left
    assert run_eta == pytest.approx(5.0 / 0.5 * 2.5)     # 0.5 of 3 epochs done in 5 s
    text = stream.getvalue()
    assert "Epoch 1/3" in text
    assert "128 samples/s, epoch ETA 00:05, run ETA 00:25" in text
    assert "10/20" in text
    assert sys.stdout is not None and not hasattr(sys.stdout, "_bar")


def test_progress_bursts_draw_once_and_epoch_clock(monkeypatch):
    stream, clock = FakeTTY(), Clock()
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    obs = ProgressObserver(stream=stream, clock=clock)
    obs.on_train_start(num_epochs=2, start_epoch=2, num_batches=469, batch_size=10)   # resumed
    clock.t = 2.5                                         # batches 1..5 took 2.5 s, one burst
    for b in range(1, 6):
        obs.on_train_batch(epoch=2, batch=b, num_batches=469, samples=10, values={}, lr=0.1)
    assert obs.rates()[0] == pytest.approx(50 / 2.5)      # epoch clock started at train start
    assert stream.getvalue().count("5/469") == 1          # one draw for the burst
    assert "Epoch 2/2" in stream.getvalue()
    assert obs.rates()[2] == pytest.approx(2.5 / (5 / 469) * (1 - 5 / 469))


def test_progress_new_epoch_clock_starts_after_evaluation(monkeypatch):
    stream, clock = FakeTTY(), Clock()
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    obs = ProgressObserver(stream=stream, clock=clock)
    obs.on_train_start(num_epochs=2, start_epoch=1, num_batches=4, batch_size=8)
    for b in range(1, 5):
        clock.t += 1.0
        obs.on_train_batch(epoch=1, batch=b, num_batches=4, samples=8, values={}, lr=0.1)
    obs.on_epoch_end(epoch=1)
    clock.t += 10.0                                       # evaluation
    obs.on_eval_end(epoch=1, loss=0.1, accuracy=0.9)
    clock.t += 2.0
    obs.on_train_batch(epoch=2, batch=1, num_batches=4, samples=8, values={}, lr=0.1)
    sps, epoch_eta, run_eta = obs.rates()
    assert sps == pytest.approx(8 / 2.0)
    assert epoch_eta == pytest.approx(2.0 * 3)
    assert run_eta == pytest.approx(16.0 / 1.25 * 0.75)   # evaluation time is in the estimate
    obs.close()


def test_progress_keeps_stdout_lines_intact(monkeypatch):
    stream, out = FakeTTY(), FakeTTY()
    monkeypatch.setattr(sys, "stdout", out)
    obs = ProgressObserver(stream=stream, clock=Clock())
    obs.on_train_start(num_epochs=1, start_epoch=1, num_batches=3, batch_size=2)
    obs.on_train_batch(epoch=1, batch=1, num_batches=3, samples=2, values={}, lr=0.1)
    assert sys.stdout is not out                          # wrapped while the bar is shown
    before = stream.getvalue()
    sys.stdout.write("[2026-Jan-01 00:00:00.000000] Train Epoch ")
    sys.stdout.write("[  1/  1] : Batch [    1/    3]\n")
    sys.stdout.flush()
    print("second line")
    assert out.getvalue() == ("[2026-Jan-01 00:00:00.000000] Train Epoch [  1/  1] : Batch "
                              "[    1/    3]\nsecond line\n")
    after = stream.getvalue()[len(before):]
    assert "\r" in after and "Epoch 1/1" in after          # cleared, then redrawn
    obs.on_epoch_end(epoch=1)
    assert sys.stdout is out
    obs.close()
    assert sys.stdout is out
