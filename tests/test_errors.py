"""The one error contract (``internvideo.errors``): user errors print one line, bugs keep their traceback."""
from __future__ import annotations

import errno

import pytest

from internvideo import cli
from internvideo.checkpoints import CheckpointError
from internvideo.checkpoints.base import UnsureArchitecture
from internvideo.data import VideoError
from internvideo.data.datasets import AnnotationError
from internvideo.errors import MissingFile, UsageError, UserError, run_command, user_error_line
from internvideo.search import SearchIndexError
from internvideo.search import query as search_query
from internvideo.search.__main__ import main as search_main
from internvideo.tasks.common import WrongModelError
from internvideo.tasks.metrics import NonFiniteError
from internvideo.train.config import ConfigError
from internvideo.train.loop import TrainingDiverged
from internvideo.train.setup import RunDirLocked
from internvideo.train.state import NoIntactCheckpoint

USER_ERRORS = [ConfigError, AnnotationError, CheckpointError, UnsureArchitecture, WrongModelError, SearchIndexError,
               VideoError, NonFiniteError, RunDirLocked, NoIntactCheckpoint, TrainingDiverged, UsageError,
               MissingFile]


@pytest.mark.parametrize("kind", USER_ERRORS, ids=lambda k: k.__name__)
def test_every_user_error_kind_is_a_user_error_and_not_a_bug_type(kind):
    assert issubclass(kind, UserError)
    # A plain ValueError/TypeError is a bug; a user error must not be caught as one by accident.
    assert not issubclass(kind, (ValueError, TypeError, RuntimeError))


def test_missing_file_is_also_a_file_not_found_error():
    assert issubclass(MissingFile, FileNotFoundError)  # `except FileNotFoundError` callers keep working
    assert user_error_line(MissingFile("no model at 'x'")) == "no model at 'x'"


def _command(monkeypatch, error: BaseException) -> None:
    def command(args):
        raise error

    monkeypatch.setattr(cli, "cmd_models", command)


def test_cli_prints_a_user_error_as_one_line_exit_2(monkeypatch, capsys):
    _command(monkeypatch, UsageError("--beam must be at least 1,\n  got 0"))
    assert cli.main(["models"]) == 2
    assert capsys.readouterr().err == "internvideo: error: --beam must be at least 1, got 0\n"
    with pytest.raises(UsageError):
        cli.main(["--debug", "models"])
    monkeypatch.setenv("INTERNVIDEO_DEBUG", "1")
    with pytest.raises(UsageError):
        cli.main(["models"])


@pytest.mark.parametrize("bug", [TypeError("unsupported operand"), ValueError("too many values to unpack"),
                                 KeyError("a bug"), RuntimeError("shape mismatch")], ids=lambda e: type(e).__name__)
def test_cli_shows_the_traceback_of_a_bug(monkeypatch, capsys, bug):
    _command(monkeypatch, bug)
    with pytest.raises(type(bug)):
        cli.main(["models"])
    assert "internvideo: error" not in capsys.readouterr().err  # no one-line summary hiding the bug


def test_cli_os_errors_naming_a_file_are_one_line(monkeypatch, capsys, tmp_path):
    missing = tmp_path / "nope.txt"
    _command(monkeypatch, FileNotFoundError(errno.ENOENT, "No such file or directory", str(missing)))
    assert cli.main(["models"]) == 2
    assert capsys.readouterr().err == f"internvideo: error: No such file or directory: {missing}\n"
    _command(monkeypatch, OSError("an OSError that names no file"))  # not the user's to act on: a bug
    with pytest.raises(OSError):
        cli.main(["models"])


def test_python_m_search_uses_the_same_printer(monkeypatch, capsys, tmp_path):
    # One line for a user error (a missing index), the traceback for a bug, exactly as cli.main.
    assert search_main(["search", str(tmp_path / "nowhere"), "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("internvideo: error: ") and "not a search index" in err and err.count("\n") == 1

    def broken(args):
        raise TypeError("a bug in the search command")

    monkeypatch.setattr(search_query, "main", broken)
    with pytest.raises(TypeError, match="a bug in the search command"):
        search_main(["search", str(tmp_path / "nowhere"), "x"])


def test_run_command_returns_the_command_status():
    assert run_command(lambda args: 7, None) == 7


def test_fusion_ablation_option_error_is_one_line(capsys, tmp_path):
    # Before: a SystemExit with the message, raised inside the experiment.
    argv = ["eval", "fusion", "--mae", "m", "--mm", "mm", "--root", str(tmp_path), "--train", "t.txt", "--val",
            "v.txt", "--out", str(tmp_path / "out"), "--set", "model.overrides={}"]
    assert cli.main(argv) == 2
    assert capsys.readouterr().err == ("internvideo: error: --set model.overrides would replace each variant's "
                                       "settings; use --width/--heads\n")
