import internvideo.cli as cli
import pytest
from data_helpers import write_file
from internvideo.train.config import ConfigError


def test_models_lists_paper_sizes(capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert "videomae_vit_h16_pretrain" in out and "94.2M" in out  # VideoMAE-B pretraining model
    line = next(x for x in out.splitlines() if x.startswith("actionformer_thumos14"))
    assert "ActionLocalizer" in line and "29.3M" in line  # the localizers are in the one registry (conv attention)


def test_smoke_runs_tiny_forward(capsys):
    assert cli.main(["smoke"]) == 0
    assert "videomae_tiny_pretrain: input (1, 3, 4, 32, 32) -> loss" in capsys.readouterr().out


def _cli_error(capsys, *argv) -> str:
    from internvideo import cli

    assert cli.main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("internvideo: error: ") and len(err.splitlines()) == 1, err
    return err


def test_cli_user_errors_are_one_line_exit_2(capsys, tmp_path, colours):
    import internvideo
    from internvideo import cli
    from internvideo.checkpoints import save_model

    # Before: every one of these printed a full traceback.
    assert "run.batch_size: must be >= 1, got -4" in _cli_error(capsys, "train", "--set", "run.batch_size=-4")
    assert "--set data.train=[a" in _cli_error(capsys, "train", "--set", "data.train=[a")
    assert str(tmp_path / "none.yaml") in _cli_error(capsys, "train", str(tmp_path / "none.yaml"))
    bad = write_file(tmp_path / "bad.txt", b"videos/red_0.mp4 0\nvideos/caf\xe9.mp4 1\n")
    assert "bad.txt:2: not valid UTF-8" in _cli_error(capsys, "eval", "recognition", "--model", "videomae_tiny",
                                                      "--data", str(bad), "--no-progress")
    err = _cli_error(capsys, "eval", "recognition", "--model", "internvideo_mm_tiny", "--data", str(colours["list"]),
                     "--no-progress")
    assert "video-language model: use `eval zeroshot`" in err  # before: forward() missing 'text_ids'
    save_model(internvideo.create_model("videomae_tiny"), tmp_path / "ckpt")
    (tmp_path / "ckpt/model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    assert "ckpt/model.safetensors: not a readable safetensors file" in _cli_error(
        capsys, "eval", "recognition", "--model", str(tmp_path / "ckpt"), "--data", str(colours["list"]))
    with pytest.raises(ConfigError):
        cli.main(["--debug", "train", "--set", "run.batch_size=-4"])  # --debug: the traceback


def test_cli_bugs_still_show_the_traceback(monkeypatch):
    from internvideo import cli

    def broken(args):
        raise KeyError("a bug")

    monkeypatch.setattr(cli, "cmd_models", broken)
    with pytest.raises(KeyError):
        cli.main(["models"])
