"""Classification / segmentation reports (issue 13) against scikit-learn and hand computations.

* classification: ``sklearn.metrics.classification_report(output_dict=True)``,
  ``confusion_matrix`` and ``top_k_accuracy_score`` on random scores;
* segmentation: per-class IoU from ``sklearn.metrics.jaccard_score(average=None)`` and Dice / IoU
  counted by hand with numpy; the mean Dice equals :class:`DiceMetric`'s value;
* two accumulators fed halves of the data, states summed (what the all-reduce does) == one
  accumulator fed everything; the written JSON/TXT files hold the same figures.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rmldnn_py.engine.metrics import DiceMetric
from rmldnn_py.engine.report import ConfusionReport, report_paths
from rmldnn_py.errors import DataError

sk = pytest.importorskip("sklearn.metrics")


def _data(n=613, c=7, seed=0, absent=(5,)):
    """Log-probabilities (n, c) and targets; class c − 1 is never predicted and the ``absent``
    classes are never targets (zero-division cases)."""
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, c, (n,), generator=g)
    for a in absent:
        target[target == a] = (a + 1) % c
    scores = torch.randn(n, c, generator=g)
    scores[torch.arange(n), target] += 1.2             # better than chance
    scores = torch.log_softmax(scores, dim=1)
    scores[:, c - 1] -= 50.0                           # class c-1 never predicted (zero division)
    return scores, target


def _fed(chunks, c, **kw):
    r = ConfusionReport(c, **kw)
    for out, tgt in chunks:
        r.update(out, tgt)
    return r


def test_classification_matches_sklearn():
    scores, target = _data()
    c = scores.shape[1]
    rep = _fed([(scores[i:i + 100], target[i:i + 100]) for i in range(0, len(target), 100)], c)
    s = rep.summary()
    y, p = target.numpy(), scores.argmax(1).numpy()
    labels = list(range(c))
    ref = sk.classification_report(y, p, labels=labels, output_dict=True, zero_division=0)
    assert s["classes"] == [str(i) for i in labels]
    for i in labels:
        for key in ("precision", "recall", "f1-score"):
            assert s["per_class"][str(i)][key] == pytest.approx(ref[str(i)][key], abs=1e-12), (i, key)
        assert s["per_class"][str(i)]["support"] == ref[str(i)]["support"]
    for avg in ("macro avg", "weighted avg"):
        for key in ("precision", "recall", "f1-score", "support"):
            assert s[avg][key] == pytest.approx(ref[avg][key], abs=1e-12), (avg, key)
    assert s["accuracy"] == pytest.approx(ref["accuracy"], abs=1e-15)
    assert s["confusion_matrix"] == sk.confusion_matrix(y, p, labels=labels).tolist()
    assert s["num_samples"] == len(y)
    assert set(s["top_k_accuracy"]) == {"1", "5"}
    for k in (1, 5):
        assert s["top_k_accuracy"][str(k)] == pytest.approx(
            sk.top_k_accuracy_score(y, scores.numpy(), k=k, labels=labels), abs=1e-15)


def test_summed_states_equal_one_accumulator():
    """The all-reduce: rank states summed == one accumulator over everything."""
    scores, target = _data(seed=1)
    c = scores.shape[1]
    whole = _fed([(scores, target)], c)
    a = _fed([(scores[:250], target[:250])], c)
    b = _fed([(scores[250:400], target[250:400]), (scores[400:], target[400:])], c)
    summed = a.state() + b.state()
    assert torch.equal(summed, whole.state())
    merged = ConfusionReport(c)
    merged.load_state(summed)
    assert merged.summary() == whole.summary()
    with pytest.raises(ValueError, match="state of size 3"):
        merged.load_state(torch.zeros(3))


def test_topk_only_below_num_classes_and_one_hot_targets():
    scores, target = _data(n=50, c=4, absent=())
    rep = _fed([(scores, torch.nn.functional.one_hot(target, 4).float())], 4)
    assert set(rep.summary()["top_k_accuracy"]) == {"1"}      # 5 >= C: not computed
    ref = _fed([(scores, target)], 4)
    assert torch.equal(rep.state(), ref.state())


def test_ignore_index_and_out_of_range_targets_left_out():
    scores, target = _data(n=200, c=5, absent=())
    t = target.clone()
    t[:30] = -100
    t[30:40] = 3
    rep = _fed([(scores, t)], 5, ignore_index=3)
    keep = (t != -100) & (t != 3)
    ref = _fed([(scores[keep], t[keep])], 5)
    assert torch.equal(rep.state(), ref.state())
    assert rep.summary()["num_samples"] == int(keep.sum())


def _hand_iou_dice(p, t, k):
    iou, dice = [], []
    for c in range(k):
        inter = np.sum((p == c) & (t == c))
        union = np.sum((p == c) | (t == c))
        denom = np.sum(p == c) + np.sum(t == c)
        iou.append(inter / union if union else None)
        dice.append(2 * inter / denom if denom else None)
    return iou, dice


@pytest.mark.parametrize("target_form", ["NHW", "N1HW"])
def test_segmentation_iou_dice_by_hand_and_sklearn(target_form):
    g = torch.Generator().manual_seed(4)
    k = 4
    out = torch.randn(3, k, 9, 11, generator=g)
    tgt = torch.randint(0, k, (3, 9, 11), generator=g)
    tgt[tgt == 2] = 1                                          # class 2 never a target
    out[:, 2] -= 100.0                                         # ... nor predicted: n/a
    t_in = tgt if target_form == "NHW" else tgt.unsqueeze(1)
    rep = _fed([(out[:2], t_in[:2]), (out[2:], t_in[2:])], k, task="segmentation")
    s = rep.summary()
    p = out.argmax(1).numpy().ravel()
    t = tgt.numpy().ravel()
    iou, dice = _hand_iou_dice(p, t, k)
    assert [s["per_class"][str(c)]["iou"] for c in range(k)] == pytest.approx(iou, abs=1e-12)
    assert [s["per_class"][str(c)]["dice"] for c in range(k)] == pytest.approx(dice, abs=1e-12)
    assert s["per_class"]["2"]["iou"] is None and s["per_class"]["2"]["dice"] is None
    present = [c for c in range(k) if iou[c] is not None]
    ref_j = sk.jaccard_score(t, p, labels=present, average=None)
    assert [iou[c] for c in present] == pytest.approx(list(ref_j), abs=1e-12)
    assert s["mean_iou"] == pytest.approx(np.mean([iou[c] for c in present]), abs=1e-12)
    assert s["mean_dice"] == pytest.approx(np.mean([dice[c] for c in present]), abs=1e-12)
    assert s["pixel_accuracy"] == pytest.approx(np.mean(p == t), abs=1e-15)
    assert s["confusion_matrix"] == sk.confusion_matrix(t, p, labels=list(range(k))).tolist()
    dm = DiceMetric(num_classes=k)
    dm.update(out, t_in)
    assert dm.value() == pytest.approx(s["mean_dice"], abs=1e-12)


def test_single_channel_segmentation_is_background_foreground():
    g = torch.Generator().manual_seed(5)
    prob = torch.rand(2, 1, 8, 8, generator=g)
    tgt = (torch.rand(2, 1, 8, 8, generator=g) > 0.6).float()
    rep = _fed([(prob, tgt)], 1, task="segmentation", threshold=0.5)
    s = rep.summary()
    assert s["classes"] == ["background", "foreground"]
    p = (prob.numpy().ravel() >= 0.5).astype(int)
    t = tgt.numpy().ravel().astype(int)
    iou, dice = _hand_iou_dice(p, t, 2)
    assert s["per_class"]["foreground"]["iou"] == pytest.approx(iou[1], abs=1e-12)
    assert s["per_class"]["background"]["dice"] == pytest.approx(dice[0], abs=1e-12)


def test_write_json_and_text(tmp_path):
    scores, target = _data(n=120, c=3, absent=())
    names = ["cat", "dog", "Black-footed Albatross"]
    rep = _fed([(scores, target)], 3)
    js, txt = report_paths(str(tmp_path / "out" / "out_birds.txt"))
    assert js.endswith("out_birds_report.json") and txt.endswith("out_birds_report.txt")
    rep.write(js, txt, names, epoch=4)
    data = json.loads(open(js).read())
    y, p = target.numpy(), scores.argmax(1).numpy()
    ref = sk.classification_report(y, p, labels=[0, 1, 2], target_names=names, output_dict=True,
                                   zero_division=0)
    assert data["epoch"] == 4 and data["classes"] == names
    for n in names:
        assert data["per_class"][n]["recall"] == pytest.approx(ref[n]["recall"], abs=1e-12)
    text = open(txt).read()
    assert text.startswith("Epoch: 4\n")
    header = text.splitlines()[1].split()
    assert header == ["precision", "recall", "f1-score", "support"]
    row = next(line for line in text.splitlines() if line.strip().startswith("Black-footed Albatross"))
    vals = row.split()[-4:]
    assert float(vals[0]) == pytest.approx(ref[names[2]]["precision"], abs=5e-5)
    assert int(vals[3]) == ref[names[2]]["support"]
    assert "Confusion matrix (rows: true class, columns: predicted class):" in text
    cm = sk.confusion_matrix(y, p)
    last = text.strip().splitlines()[-1].split()
    assert [int(v) for v in last[-3:]] == cm[2].tolist()
    big = ConfusionReport(40)
    big.update(torch.randn(10, 40), torch.randint(0, 40, (10,)))
    assert "Confusion matrix: 40x40, see the JSON report" in big.text()


def test_class_names_fallback_and_errors():
    rep = ConfusionReport(4)
    assert rep.class_labels(["a", "b"]) == ["a", "b", "2", "3"]
    assert rep.class_labels(["a", "b", "c", "d", "e"]) == ["a", "b", "c", "d"]
    with pytest.raises(DataError, match="output has 3 channels, expected 4"):
        rep.update(torch.randn(2, 3), torch.tensor([0, 1]))
    with pytest.raises(DataError, match="expected outputs \\(N, C\\)"):
        rep.update(torch.randn(2, 4, 3), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(DataError, match="target shape"):
        rep.update(torch.randn(2, 4), torch.zeros(3, dtype=torch.long))


# ------------------------------------------------------------------------------------------
# predictions.csv (rmldnn_py.io.csv_predictions)

import csv  # noqa: E402

from rmldnn_py.io.csv_predictions import (CsvPredictionWriter, output_source,  # noqa: E402
                                          write_predictions_csv)


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


@pytest.mark.parametrize("source,form", [("log_softmax", "log_softmax"), ("softmax", "softmax"),
                                         ("logits", "logits"), ("logits", "log_softmax")])
def test_predictions_csv_probabilities_and_names(tmp_path, source, form):
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(6, 4, generator=g) * 3
    probs = torch.softmax(logits.double(), dim=1)                        # the reference
    raw = {"log_softmax": torch.log_softmax(logits, 1), "softmax": torch.softmax(logits, 1),
           "logits": logits}[form]
    names = ["Albatross, Black-footed", 'say "hi"', "plain", "ünïcode"]
    samples = [f"{names[i % 4]}/img {i}.jpg" for i in range(6)]
    path = tmp_path / "preds" / "predictions.csv"
    write_predictions_csv(str(path), list(zip(samples, raw.numpy())), names, source)
    rows = _read_csv(path)                              # quoting round-trips through csv
    assert rows[0] == ["sample", "predicted_class", "probability"]
    assert [r[0] for r in rows[1:]] == samples
    best = probs.argmax(1)
    assert [r[1] for r in rows[1:]] == [names[int(c)] for c in best]
    got = np.array([float(r[2]) for r in rows[1:]])
    np.testing.assert_allclose(got, probs.max(1).values.numpy(), rtol=1e-5)
    assert [p.name for p in path.parent.iterdir()] == ["predictions.csv"]   # no temp file left


def test_predictions_csv_indices_and_binary(tmp_path):
    w = CsvPredictionWriter(str(tmp_path / "p.csv"), None, "logits")
    w.add("a.png", np.array([0.1, 2.0, -1.0]))
    w.close()
    assert _read_csv(tmp_path / "p.csv")[1][:2] == ["a.png", "1"]
    x = torch.tensor([[2.0], [-0.5]])                                    # one channel: sigmoid
    p1 = torch.sigmoid(x)[:, 0]
    write_predictions_csv(str(tmp_path / "b.csv"), zip(["x", "y"], x.numpy()), ["neg", "pos"], "logits")
    rows = _read_csv(tmp_path / "b.csv")[1:]
    assert [r[1] for r in rows] == ["pos", "neg"]
    np.testing.assert_allclose([float(r[2]) for r in rows], [p1[0], 1 - p1[1]], rtol=1e-5)
    with pytest.raises(ValueError, match="unknown output source 'probits'"):
        CsvPredictionWriter("x.csv", None, "probits")
    with pytest.raises(DataError, match="one output vector per sample"):
        w.add("seg.png", np.zeros((2, 4, 4)))


def test_predictions_csv_unwritable_keeps_old_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DataError, match="cannot write predictions"):
        write_predictions_csv(str(blocker / "p.csv"), [("a", np.zeros(2))], None, "logits")


def test_output_source_of_networks():
    from rmldnn_py.network import build_network

    repo = __import__("pathlib").Path(__file__).resolve().parents[1]
    net = build_network(str(repo / "networks" / "mnist_keras_net.json"), config_path="c.json")
    assert output_source(net) == "log_softmax"

    def dense(act):
        return build_network([{"class_name": "Dense", "config": {
            "name": "d", "units": 3, "activation": act, "batch_input_shape": [None, 5]}}],
            config_path="c.json")
    assert output_source(dense("softmax")) == "softmax"
    assert output_source(dense("sigmoid")) == "sigmoid"
    assert output_source(dense("linear")) == "logits"
