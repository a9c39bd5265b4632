"""``internvideo demo --seeds N``: the mean and spread of every number, computed from the seeded reports."""

from __future__ import annotations

import pytest

from internvideo.cli import build_parser
from internvideo.demo.report import aggregate_seeds, seeds_markdown


def _report(seed, values, wall):
    rows = [{"family": "Action recognition", "model": f"m{i}", "metric": "top-1", "short": f"r{i}", "value": v,
             "chance": 10.0} for i, v in enumerate(values)]
    stages = [{"stage": "world", "seconds": wall / 4, "cpu_seconds": wall / 8},
              {"stage": "mae", "seconds": 3 * wall / 4, "cpu_seconds": wall / 2}]
    return {"seed": seed, "table": rows, "stages": stages, "wall_seconds": wall, "cpu_seconds": 5 * wall / 8}


def test_mean_and_spread_by_hand():
    summary = aggregate_seeds([_report(0, [40.0, 20.0], 100.0), _report(1, [50.0, 20.0], 200.0),
                               _report(2, [60.0, 20.0], 300.0)])
    first, second = summary["table"]
    assert (first["mean"], first["std"], first["min"], first["max"]) == (50.0, 10.0, 40.0, 60.0)
    assert (second["mean"], second["std"]) == (20.0, 0.0)
    assert summary["wall_seconds"]["mean"] == 200.0 and summary["stages"][1]["seconds"]["mean"] == 150.0
    text = seeds_markdown(summary)
    assert "| 50.0 ± 10.0 (40.0-60.0) | 10.0 |" in text and "3 seeds (0, 1, 2)" in text


def test_seeds_option(capsys):
    args = build_parser().parse_args(["demo", "--seeds", "3"])
    assert args.seeds == 3
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["demo", "--seeds", "0"])
    assert e.value.code == 2 and "--seeds" in capsys.readouterr().err


def test_data_dependent_baselines_are_averaged_and_tables_must_align():
    reports = [_report(s, [40.0, 20.0], 100.0) for s in range(3)]
    for report, baseline, beams in zip(reports, (20.0, 23.0, 29.0), (5, 5, 3), strict=True):
        report["table"][1].update(chance=baseline, model=f"decoder (beam {beams})")
    row = aggregate_seeds(reports)["table"][1]
    assert row["chance"] == 24.0 and row["chance_values"] == [20.0, 23.0, 29.0]  # not the first seed's 20
    assert row["model"] == "decoder (beam 5) / decoder (beam 3)"
    reports[2]["table"][1]["short"] = "other"
    with pytest.raises(ValueError, match="tables differ at row 1"):
        aggregate_seeds(reports)
