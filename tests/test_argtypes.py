"""Typed command-line options (``internvideo.argtypes``): numbers refuse NaN, inf and meaningless zeros."""
from __future__ import annotations

import pytest


@pytest.mark.parametrize("argv, option", [
    (["index", "f", "--model", "m", "--window", "nan"], "--window"),
    (["index", "f", "--model", "m", "--stride", "0"], "--stride"),
    (["index", "f", "--model", "m", "--target-recall", "inf"], "--target-recall"),
    (["index", "f", "--model", "m", "--batch-size", "0"], "--batch-size"),
    (["search", "i", "q", "-k", "0"], "-k"),
    (["serve", "i", "--port", "70000"], "--port"),
    (["eval", "ava", "--gt", "a", "--pred", "b", "--iou", "nan"], "--iou"),
    (["eval", "ava", "--gt", "a", "--pred", "b", "--capacity", "-1"], "--capacity"),
    (["eval", "localization", "--gt", "a", "--pred", "b", "--tiou", "0.5", "inf"], "--tiou"),
    (["extract", "l", "--model", "m", "--out", "o", "--window", "-inf"], "--window"),
    (["extract", "l", "--model", "m", "--out", "o", "--num-workers", "1.5"], "--num-workers"),
])
def test_numeric_options_refuse_nan_inf_and_zero_where_meaningless(argv, option, capsys):
    from internvideo.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1  # one line, like every other user error (no usage block)
    assert err[0].startswith("internvideo") and f"argument {option}: expected" in err[0]
