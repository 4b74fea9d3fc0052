"""Checkpoints (SPEC §7.4): atomic save, weights_only load, partial load by layer name."""

import os
import pickle

import pytest
import torch

from rmldnn_py.engine.checkpoint import (apply_partial_state, checkpoint_path, read_pt_state,
                                         save_checkpoint)
from rmldnn_py.errors import CheckpointError


class Net(torch.nn.Module):
    def __init__(self, out=3):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 3)
        self.dense = torch.nn.Linear(4, out)

    def layer_tensors(self):
        return {"conv": ["weight", "bias"], "dense": ["weight", "bias"]}


def test_save_then_read_roundtrip(tmp_path):
    net = Net()
    path = checkpoint_path(str(tmp_path / "ckpt"), 20)
    assert path.endswith(os.path.join("ckpt", "model_checkpoint_20.pt"))
    save_checkpoint(path, net, 20, torch.optim.SGD(net.parameters(), lr=0.1))
    state = read_pt_state(path)
    assert set(state) == set(net.state_dict())
    for k, v in net.state_dict().items():
        assert torch.equal(state[k], v)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "rmldnn_py-checkpoint-1" and raw["epoch"] == 20
    assert not [f for f in os.listdir(tmp_path / "ckpt") if f.endswith(".tmp")]


def test_failed_save_keeps_old_file(tmp_path, monkeypatch):
    net = Net()
    path = str(tmp_path / "model_checkpoint_1.pt")
    save_checkpoint(path, net, 1)
    before = open(path, "rb").read()

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(CheckpointError, match="cannot write checkpoint"):
        save_checkpoint(path, net, 2)
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["model_checkpoint_1.pt"]


def test_bare_state_dict_accepted(tmp_path):
    net = Net()
    path = str(tmp_path / "bare.pt")
    torch.save(net.state_dict(), path)
    assert set(read_pt_state(path)) == set(net.state_dict())


def test_not_a_checkpoint(tmp_path):
    p = tmp_path / "junk.pt"
    p.write_text("this is not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pt: not a readable rmldnn_py checkpoint"):
        read_pt_state(str(p))


def test_pickled_code_is_never_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    p = tmp_path / "evil.pt"
    with open(p, "wb") as f:
        pickle.dump({"model": Evil()}, f)
    with pytest.raises(CheckpointError):
        read_pt_state(str(p))
    assert not (tmp_path / "pwned").exists()


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint file not found"):
        read_pt_state(str(tmp_path / "nope.pt"))


def test_partial_load_messages_and_values():
    src, dst = Net(), Net()
    state = {k: v for k, v in src.state_dict().items() if k.startswith("conv.")}
    state["decoder.weight"] = torch.zeros(3)          # extra tensor in the file: ignored silently
    lines = []
    n = apply_partial_state(dst, dst.layer_tensors(), state, "f.pt", lines.append)
    assert n == 2
    assert lines == ["   Skipping layer dense: not found in model",
                     "   Skipping parameter dense.weight: not found in model",
                     "   Skipping parameter dense.bias: not found in model"]
    assert torch.equal(dst.conv.weight, src.conv.weight)
    assert not torch.equal(dst.dense.weight, src.dense.weight)


def test_single_missing_tensor_names_keras_weight():
    src, dst = Net(), Net()
    state = {k: v for k, v in src.state_dict().items() if k != "dense.bias"}
    lines = []
    apply_partial_state(dst, dst.layer_tensors(), state, "w.h5", lines.append,
                        {"dense.bias": "dense/bias:0"})
    assert lines == ["   Skipping parameter dense.bias (dense/bias:0): not found in model"]


def test_shape_mismatch_is_an_error_and_changes_nothing():
    src, dst = Net(out=5), Net(out=3)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(CheckpointError) as e:
        apply_partial_state(dst, dst.layer_tensors(), src.state_dict(), "m.pt", print)
    assert str(e.value) == ("m.pt: layer 'dense': tensor 'dense.weight' has shape [5, 4] in the "
                            "file but [3, 4] in the model")
    for k, v in dst.state_dict().items():
        assert torch.equal(v, before[k])
