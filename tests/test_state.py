"""Unit tests of the trust machinery (issue 10): generator states, checkpoint positions and
names, the best/early-stopping monitor, the class-index target check."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from rmldnn_py.engine import state as st
from rmldnn_py.engine.checks import TargetCheck
from rmldnn_py.engine.monitor import Monitor
from rmldnn_py.errors import DataError


def test_rng_state_roundtrip_through_a_weights_only_file(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    saved = st.rng_state()
    want = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    torch.save({"rng": [saved]}, tmp_path / "r.pt")
    loaded = torch.load(tmp_path / "r.pt", weights_only=True)["rng"][0]
    torch.rand(5), np.random.rand(7), random.random()             # move every generator on
    st.set_rng_state(loaded)
    got = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    assert torch.equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert got[2] == want[2]


def test_positions_and_where_a_resumed_run_starts():
    assert st.Position(3, 15, complete=True).next_start() == (4, 0)
    assert st.Position(2, 7).next_start() == (2, 7)
    assert st.position_of({"epoch": 5, "model": {}}) == st.Position(5, 0, True)   # old files
    assert st.position_of({"position": {"epoch": 2, "batch": 4, "complete": False}}) == \
        st.Position(2, 4, False, False)


def test_candidates_newest_position_first(tmp_path):
    for name in ("model_checkpoint_2.pt", "model_checkpoint_10.pt", "model_checkpoint_10_3.pt",
                 "model_checkpoint_3_7.pt", "model_checkpoint_best.pt", "notes.txt",
                 "model_checkpoint_9.pt"):
        (tmp_path / name).write_bytes(b"x")
    names = [p.rsplit("/", 1)[1] for p in st.candidates(str(tmp_path))]
    assert names == ["model_checkpoint_10.pt", "model_checkpoint_10_3.pt", "model_checkpoint_9.pt",
                     "model_checkpoint_3_7.pt", "model_checkpoint_2.pt"]


def test_remove_older_preempt(tmp_path):
    for name in ("model_checkpoint_2_5.pt", "model_checkpoint_3_1.pt", "model_checkpoint_4_2.pt",
                 "model_checkpoint_3.pt"):
        (tmp_path / name).write_bytes(b"x")
    st.remove_older_preempt(str(tmp_path), st.Position(3, 9, True))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_checkpoint_3.pt",
                                                          "model_checkpoint_4_2.pt"]


def test_read_refuses_files_without_a_model(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "a.pt")
    with pytest.raises(Exception, match="not an rmldnn_py checkpoint"):
        st.read(str(tmp_path / "a.pt"))
    (tmp_path / "b.pt").write_bytes(b"garbage")
    with pytest.raises(Exception, match="weights_only=True failed: "):
        st.read(str(tmp_path / "b.pt"))


# ------------------------------------------------------------------------------------------------
# Monitor: Keras EarlyStopping semantics, recomputed by hand


@pytest.mark.parametrize("quantity,values,delta,best,best_epoch,waited", [
    ("loss", [1.0, 0.8, 0.85, 0.79, 0.9], 0.0, 0.79, 4, 1),
    ("loss", [1.0, 0.8, 0.79, 0.78], 0.05, 0.8, 2, 2),           # 0.79, 0.78: within min_delta
    ("accuracy", [0.5, 0.7, 0.6, 0.7, 0.71], 0.0, 0.71, 5, 0),
    ("accuracy", [0.5, float("nan"), 0.4], 0.0, 0.5, 1, 2),     # NaN never improves
])
def test_monitor(quantity, values, delta, best, best_epoch, waited):
    m = Monitor(quantity, delta)
    for e, v in enumerate(values, 1):
        m.update(e, v if quantity == "loss" else None, v if quantity == "accuracy" else None)
    assert (m.best, m.best_epoch, m.waited) == (pytest.approx(best), best_epoch, waited)
    again = Monitor(quantity, delta)
    again.load_state_dict(m.state_dict())
    assert again.state_dict() == m.state_dict()


# ------------------------------------------------------------------------------------------------
# class-index targets


def _check(loss="Dice", shape=(2, 8, 8), ignore=None, warnings=None):
    return TargetCheck(loss, shape, {"training": "cfg.json: neural_network.data.target_path",
                                     "test": "cfg.json: neural_network.data.test_target_path"},
                       {"training": "./masks/", "test": "./tmasks/"}, ignore,
                       (warnings if warnings is not None else []).append)


def test_scaled_8bit_masks_are_refused_with_the_normalize_hint():
    y = torch.zeros(4, 1, 8, 8)
    y[:, :, 2:4, 2:4] = 1 / 255
    with pytest.raises(DataError) as info:
        _check().check_batch(y, "training")
    msg = str(info.value)
    assert msg.startswith("cfg.json: neural_network.data.target_path: the targets of loss 'Dice' "
                          "must be class indices, but './masks/' holds the values 0, 0.00392157")
    assert '"normalize": {"mean": 0, "std": 0.00392157}' in msg


def test_class_beyond_the_outputs_and_non_integers():
    with pytest.raises(DataError, match=r"holds class 2 .*one output per class"):
        _check().check_batch(torch.tensor([[[0.0, 2.0]]]), "test")
    with pytest.raises(DataError, match="non-integer values 0, 0.5 after the transforms"):
        _check(shape=(3, 1, 2)).check_batch(torch.tensor([[[0.0, 0.5]]]), "training")


def test_valid_targets_pass_and_ignore_index_is_allowed():
    c = _check(loss="NLL", shape=(3, 4), ignore=255)
    c.check_batch(torch.tensor([[0.0, 1.0, 2.0, 255.0]]), "training")
    one_hot = torch.zeros(2, 3, 4)                   # shaped like the output: not a class map
    one_hot[:, 1] = 0.5
    c.check_batch(one_hot, "training")


def test_one_class_warnings():
    w = []
    c = _check(warnings=w)
    c.check_batch(torch.zeros(2, 1, 8, 8), "training")
    c.end_of_first_epoch()
    assert w and "every training target value is class 0" in w[0]
    w2 = []
    _check(loss="NLL", shape=(3,), warnings=w2).check_labels(torch.zeros(5, dtype=torch.int64),
                                                             ["cats"], "training")
    assert w2 == ["all 5 training samples belong to one class ('cats'): the network cannot learn "
                  "to tell classes apart"]


def test_labels_against_a_too_small_output():
    with pytest.raises(DataError, match=r"the network has 1 output \(output shape \[1\]\) but the "
                                        r"data has 3 classes \('a', 'b', 'c'\)"):
        _check(loss="NLL", shape=(1,)).check_labels(torch.tensor([0, 1, 2]), ["a", "b", "c"],
                                                    "training")
