"""End-to-end: the original smoke test (SPEC §11.1) through the ``rmldnn`` command, with stdout
compared structurally with SPEC Appendix A (timestamps stripped, numbers of losses, norms and
percentages masked)."""

import re

from conftest import run_rmldnn, strip_ts

APPENDIX_A_HEAD = """\
RocketML : dnn
<version>
RocketML : 1 MPI process
----------------- Device(s) -----------------
   CPU
---------------------------------------------
--------------- Neural Network --------------
   Model name          : Unknown
   Total parameters    : 21432
   Trainable parameters: 21432
   Num of operations   : 14
---------------------------------------------
----------------- Optimizer -----------------
   Type         : SGD
   Learning rate: 0.01
   Momentum     : 0.5
   Dampening    : 0
   Weight decay : 0
   Nesterov     : 0
-------------------- Loss -------------------
   Function    : NLL (Negative Log-Likelihood)
   Weight      : None
   Ignore index: None
---------------------------------------------
Discovering training input images...
Discovering training labels...
Number of class labels: 2
Discovering test input images...
Discovering test labels...
Number of class labels: 2
------------------ Dataset ------------------
Training dataset:
   Type                     : images
   Num images  (total)      : 200
   Num images  (per process): 200
   Batch size  (requested)  : 16
   Batch size  (per process): 16
   Num batches (per process): 13
   Transforms:
      resize                : [28, 28]
Test dataset:
   Type                     : images
   Num images  (total)      : 20
   Num images  (per process): 20
   Batch size  (requested)  : 64
   Batch size  (per process): 64
   Num batches (per process): 1
   Transforms:
      resize                : [28, 28]
---------------------------------------------"""

TRAIN = re.compile(r"^Train Epoch \[ *(\d+)/ *(\d+)\] : Batch \[ *(\d+)/ *(\d+)\] "
                   r"\(Loss = (\d+\.\d{4}); \|g\| = (\d+\.\d{4})\) \[Data: \d+%; Compute: \d+%\]$")
EVAL = re.compile(r"^Eval  Epoch \[ *(\d+)/ *(\d+)\] : Batch \[ *(\d+)/ *(\d+)\] "
                  r"\(Loss: (\d+\.\d{4})\) \| Accuracy: (\d\.\d{3})$")
SEP = "-" * 45


def test_smoke_transcript_and_logs(smoke_dir):
    proc = run_rmldnn(["--config=", "./config_rmldnn_test.json"], cwd=smoke_dir)
    assert proc.returncode == 0, proc.stderr
    lines = strip_ts(proc.stdout)
    # banner lines (free form) come before "RocketML : dnn"
    lines = lines[lines.index("RocketML : dnn"):]
    head = APPENDIX_A_HEAD.splitlines()
    assert re.match(r"^rmldnn_py \S+ \(.+\) \(torch .+\) \(python .+\)$", lines[1])
    lines[1] = "<version>"
    assert lines[:len(head)] == head
    body = lines[len(head):]
    assert body[-1] == "All done (return value = 0)."
    body = body[:-1]
    assert len(body) == 10 * (13 + 1 + 1 + 1)
    losses = []
    for e in range(10):
        chunk = body[e * 16:(e + 1) * 16]
        for b in range(13):
            m = TRAIN.match(chunk[b])
            assert m, chunk[b]
            assert [int(v) for v in m.groups()[:4]] == [e + 1, 10, b + 1, 13]
            losses.append(float(m.group(5)))
        assert chunk[13] == SEP
        m = EVAL.match(chunk[14])
        assert m and [int(v) for v in m.groups()[:4]] == [e + 1, 10, 1, 1], chunk[14]
        assert chunk[15] == SEP
    # the loss falls (BASE: ~0.70 → ~0.01)
    assert sum(losses[-13:]) / 13 < 0.5 * sum(losses[:13]) / 13
    train_log = (smoke_dir / "out_dnn_mnist_sgd_train.txt").read_text().splitlines()
    test_log = (smoke_dir / "out_dnn_mnist_sgd_test.txt").read_text().splitlines()
    assert len(train_log) == 130 and len(test_log) == 10
    first = train_log[0].split()
    assert first[:3] == ["1", "1", f"{1 / 13:.6f}"] and len(first) == 6
    assert abs(float(first[4]) - losses[0]) < 1e-4
    assert test_log[-1].startswith("Epoch: 10 Loss: ")
    assert float(test_log[-1].split("Accuracy: ")[1]) >= 0.9
    assert proc.stderr == ""


def test_config_spellings_give_identical_structure(smoke_dir):
    cfg = smoke_dir / "config_rmldnn_test.json"
    cfg.write_text(cfg.read_text().replace('"num_epochs": 10', '"num_epochs": 1'))
    outs = []
    for args in (["--config=./config_rmldnn_test.json"], ["--config", "./config_rmldnn_test.json"]):
        proc = run_rmldnn(args, cwd=smoke_dir)
        assert proc.returncode == 0, proc.stderr
        outs.append([re.sub(r"\d+\.\d+|\d+%", "#", line) for line in strip_ts(proc.stdout)])
    assert outs[0] == outs[1]


def test_no_outfile_no_logs(smoke_dir):
    cfg = smoke_dir / "config_rmldnn_test.json"
    text = cfg.read_text().replace('"outfile": "out_dnn_mnist_sgd.txt", ', "")
    cfg.write_text(text.replace('"num_epochs": 10', '"num_epochs": 1'))
    proc = run_rmldnn(["--config=", "./config_rmldnn_test.json"], cwd=smoke_dir)
    assert proc.returncode == 0, proc.stderr
    assert not list(smoke_dir.glob("out_*"))
