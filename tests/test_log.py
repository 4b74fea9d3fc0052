"""Standard-output formatting (SPEC §7.2.1, §7.2.4)."""

import datetime as dt
import re

from rmldnn_py.engine.run import printed
from rmldnn_py.log import block_header, fmt_g, kv_row, timestamp


def test_timestamp_format():
    assert timestamp(dt.datetime(2022, 3, 24, 21, 44, 12, 182169)) == "[2022-Mar-24 21:44:12.182169]"


def test_block_headers_match_the_original():
    # exact strings from the original's logs (SPEC §7.2.1)
    assert block_header("Device(s)") == "----------------- Device(s) -----------------"
    assert block_header("Neural Network") == "--------------- Neural Network --------------"
    assert block_header("Loss") == "-------------------- Loss -------------------"
    for title in ("Optimizer", "Dataset", "Gradient reducer", "Learning rate scheduler"):
        assert len(block_header(title)) == 45


def test_fmt_g_is_cpp_stream_formatting():
    assert fmt_g(0.01) == "0.01"
    assert fmt_g(1e-8) == "1e-08"
    assert fmt_g(1e-4) == "0.0001"
    assert fmt_g(1 / 255) == "0.00392157"
    assert fmt_g(True) == "1" and fmt_g(False) == "0"
    assert fmt_g(None) == "None"
    assert fmt_g([28, 28]) == "[28, 28]"


def test_kv_row():
    assert kv_row("Learning rate", "0.01", 13) == "   Learning rate: 0.01"
    assert kv_row("Type", "SGD", 13) == "   Type         : SGD"


def test_print_cadence_matches_the_screenshot():
    # SS-MNIST, 469 batches: 5, 10, 15, 19, 24, 29, 33, 38, 43, 47, 52, ...
    shown = [b for b in range(1, 470) if printed(b, 469)]
    assert shown[:11] == [5, 10, 15, 19, 24, 29, 33, 38, 43, 47, 52]
    assert shown[-1] == 469 and len(shown) == 100
    assert [b for b in range(1, 14) if printed(b, 13)] == list(range(1, 14))
    # never more than 100 lines, the last batch always printed
    for nb in (1, 7, 99, 100, 101, 250, 1000, 12345):
        s = [b for b in range(1, nb + 1) if printed(b, nb)]
        assert len(s) == min(nb, 100) and s[-1] == nb


def test_train_line_format():
    line = (f"Train Epoch [{1:3d}/{10:3d}] : Batch [{1:5d}/{13:5d}] "
            f"(Loss = {0.70281:.4f}; |g| = {0.51234:.4f}) [Data: 27%; Compute: 72%]")
    assert line == ("Train Epoch [  1/ 10] : Batch [    1/   13] (Loss = 0.7028; |g| = 0.5123) "
                    "[Data: 27%; Compute: 72%]")
    assert re.match(r"Train Epoch \[ +\d+/ +\d+\]", line)
