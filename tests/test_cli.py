import internvideo.cli as cli


def test_models_lists_paper_sizes(capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert "videomae_vit_h16_pretrain" in out and "94.2M" in out  # VideoMAE-B pretraining model
    line = next(x for x in out.splitlines() if x.startswith("actionformer_thumos14"))
    assert "ActionLocalizer" in line and "29.2M" in line  # the localizers are in the one registry


def test_smoke_runs_tiny_forward(capsys):
    assert cli.main(["smoke"]) == 0
    assert "videomae_tiny_pretrain: input (1, 3, 4, 32, 32) -> loss" in capsys.readouterr().out
