"""File writing (``internvideo.fileio``): atomic writes on a full disk, JSON without bare NaN, printable names."""
from __future__ import annotations

import json

import numpy as np
import pytest

from data_helpers import BINARY, enospc
from eval_standins import localization_files


def test_disk_full_through_the_cli_is_one_line(tmp_path, monkeypatch, capsys):
    """Writing scorer results (an unlisted writer of the same class) on a full disk: one line, exit 2."""
    from internvideo import fileio
    from internvideo.cli import main

    gt, pred = localization_files(tmp_path)
    monkeypatch.setattr(fileio.os, "fsync", enospc)
    code = main(["eval", "localization", "--gt", str(gt), "--pred", str(pred), "--out", str(tmp_path / "r.json")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "No space left on device" in err and "r.json" in err
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "r.json.tmp").exists()


def test_results_json_is_valid_json_even_when_a_value_is_not_finite(tmp_path):
    from internvideo import fileio

    path = fileio.write_json(tmp_path / "r.json", {"mAP": float("nan"), "per_class": [1.0, float("inf")],
                                                  "n": np.float32("nan")})
    assert json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"bare {c}")) == {
        "mAP": None, "per_class": [1.0, None], "n": None}


def test_control_characters_in_file_names_are_escaped_when_printed(tmp_path, capsys):
    """A file name can hold ESC, CR or a right-to-left override; printed raw it recolours, overwrites or
    reorders the terminal."""
    from internvideo.cli import main
    from internvideo.fileio import printable
    from internvideo.search.query import Hit, format_hits

    evil = "clip\x1b[2J\rfake\u202egpj.mp4"
    assert printable(evil) == "clip\\x1b[2J\\rfake\\u202egpj.mp4" and printable("plain é.mp4") == "plain é.mp4"
    table = format_hits([Hit(1, 1, 1, evil, 0.0, 1.0, 0.5)])
    assert "\x1b" not in table and "\r" not in table and "\u202e" not in table and "\\x1b[2J" in table
    # Through the CLI's one error line (an unlisted path of the same class).
    bad = tmp_path / "list\x1b]0;pwned\x07.txt"
    bad.write_bytes(b"a.mp4 0\n" + BINARY)
    code = main(["eval", "recognition", "--model", "videomae_tiny", "--data", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and "\x1b" not in err and "\x07" not in err and "\\x1b]0;pwned\\x07" in err
