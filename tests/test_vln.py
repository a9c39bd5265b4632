"""Vision-language navigation: graph geometry, the R2R metrics by hand, file readers, the agent, the objective."""
from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from internvideo.checkpoints import load_model, save_model
from internvideo.cli import main as cli_main
from internvideo.data.vln import (NavGraphs, NavigationDataError, ViewFeatures, direction_features,
                                  read_episodes, snap_heading)
from internvideo.data.vln_world import make_nav_world
from internvideo.errors import UserError
from internvideo.models.vln import NAMED_CONFIGS, VLNAgent
from internvideo.tasks.vln import evaluate_trajectories, random_walk, rollout, score_path, tokenize_instructions
from internvideo.train import train
from internvideo.train.config import load_config


def _connectivity(points: dict[str, tuple[float, float, float]], edges: list[tuple[str, str]],
                  excluded: tuple[str, ...] = ()) -> list[dict]:
    ids = list(points)
    out = []
    for v in ids:
        pose = np.eye(4)
        pose[:3, 3] = points[v]
        row = [(v, w) in edges or (w, v) in edges for w in ids]
        out.append({"image_id": v, "pose": pose.reshape(-1).tolist(), "included": v not in excluded,
                    "unobstructed": row, "height": 1.5})
    return out


def _write_scan(root: Path, scan: str, points, edges, excluded=()) -> Path:
    (root / "connectivity").mkdir(parents=True, exist_ok=True)
    (root / "connectivity" / f"{scan}_connectivity.json").write_text(json.dumps(_connectivity(points, edges, excluded)))
    return root / "connectivity"


@pytest.fixture
def corridor(tmp_path):
    """A straight corridor A-B-C-D-E along +y, 2 m apart; a square loop P-Q-R-S of 4 m sides."""
    pts = {k: (0.0, 2.0 * i, 1.5) for i, k in enumerate("ABCDE")}
    _write_scan(tmp_path, "corridor", pts, [("A", "B"), ("B", "C"), ("C", "D"), ("D", "E")])
    loop = {"P": (0.0, 0.0, 1.5), "Q": (0.0, 4.0, 1.5), "R": (4.0, 4.0, 1.5), "S": (4.0, 0.0, 1.5)}
    return NavGraphs(_write_scan(tmp_path, "loop", loop, [("P", "Q"), ("Q", "R"), ("R", "S"), ("S", "P")]))


# ----------------------------------------------------------------------------- metrics by hand


def test_corridor_follow_stop_short_and_stop_early(corridor):
    g = corridor["corridor"]
    ref = ["A", "B", "C", "D"]  # goal D, 6 m
    s = score_path(g, ref, ref)
    assert (s["nav_error"], s["success"], s["spl"], s["length"], s["dtw"], s["ndtw"]) == (0, 1, 1, 6, 0, 1)
    # stops 2 m short: a success (< 3 m) and SPL = 6 / max(4, 6) = 1 (the script's formula)
    s = score_path(g, ["A", "B", "C"], ref)
    assert s["nav_error"] == pytest.approx(2) and s["success"] == 1 and s["spl"] == pytest.approx(1.0)
    assert s["dtw"] == pytest.approx(2) and s["ndtw"] == pytest.approx(math.exp(-2 / 12))
    assert s["sdtw"] == pytest.approx(s["ndtw"])
    # stops 4 m short: fails; DTW = 0 + 0 + d(B,C) + d(B,D) = 6
    s = score_path(g, ["A", "B"], ref)
    assert s["nav_error"] == pytest.approx(4) and s["success"] == 0 and s["oracle_success"] == 0 and s["spl"] == 0
    assert s["dtw"] == pytest.approx(6) and s["ndtw"] == pytest.approx(math.exp(-0.5)) and s["sdtw"] == 0
    # turning in place repeats a viewpoint: 0 m of length, one more DTW term
    s = score_path(g, ["A", "A", "B", "C", "D"], ref)
    assert s["length"] == pytest.approx(6) and s["steps"] == 4 and s["spl"] == pytest.approx(1)


def test_passing_the_goal_and_leaving(corridor):
    g = corridor["corridor"]
    s = score_path(g, ["A", "B", "C", "D", "E"], ["A", "B", "C"])  # goal C, 4 m
    assert s["nav_error"] == pytest.approx(4) and s["success"] == 0
    assert s["oracle_error"] == 0 and s["oracle_success"] == 1  # it was at the goal
    assert s["length"] == pytest.approx(8) and s["spl"] == 0
    assert s["dtw"] == pytest.approx(0 + 0 + 0 + 2 + 4)
    assert s["ndtw"] == pytest.approx(math.exp(-6 / 9)) and s["sdtw"] == 0


def test_loop_other_way_round_and_full_circle(corridor):
    g = corridor["loop"]
    ref = ["P", "Q", "R"]  # 8 m
    s = score_path(g, ["P", "S", "R"], ref)  # the other side of the square: same length
    assert s["success"] == 1 and s["spl"] == pytest.approx(1)
    # DTW by hand: cells (P,P)=0, (S,Q)=8 (either way round), (R,R)=0; the best alignment costs 8
    assert s["dtw"] == pytest.approx(8) and s["ndtw"] == pytest.approx(math.exp(-8 / 9))
    s = score_path(g, ["P", "Q", "R", "S", "P", "Q", "R"], ref)  # once round, then to the goal: 24 m
    assert s["success"] == 1 and s["length"] == pytest.approx(24) and s["spl"] == pytest.approx(8 / 24)


def test_bad_trajectories_are_named(corridor):
    g = corridor["corridor"]
    with pytest.raises(NavigationDataError, match="starts at 'B'"):
        score_path(g, ["B", "C"], ["A", "B"])
    with pytest.raises(NavigationDataError, match="from 'A' to 'C'.*no edge"):
        score_path(g, ["A", "C"], ["A", "B", "C"])
    with pytest.raises(NavigationDataError, match="viewpoint 'Z' is not in the navigation graph of scan 'corridor'"):
        score_path(g, ["A", "Z"], ["A", "B"])


def _r2r(path: Path, items: list[dict]) -> Path:
    path.write_text(json.dumps(items))
    return path


def test_evaluate_counts_extra_and_repeated_ids_and_refuses_missing(corridor, tmp_path):
    gt = _r2r(tmp_path / "gt.json", [{"scan": "corridor", "path_id": 7, "path": ["A", "B", "C"], "heading": 0.0,
                                      "instructions": ["go", "walk"]}])
    eps = read_episodes(gt)
    assert [e.instr_id for e in eps] == ["7_0", "7_1"]
    preds = [{"instr_id": "7_0", "trajectory": [["A", 0, 0], ["B", 0, 0], ["C", 0, 0]]},
             {"instr_id": "7_0", "trajectory": [["A", 0, 0]]},  # repeated: the first one counts
             {"instr_id": "9_0", "trajectory": [["A", 0, 0]]},  # not in the ground truth
             {"instr_id": "7_1", "trajectory": [["A", 0, 0], ["B", 0, 0]]}]
    m = evaluate_trajectories(eps, preds, corridor)["metrics"]
    assert (m["scored"], m["extra"], m["duplicates"]) == (2, 1, 1)
    assert m["SR"] == pytest.approx(100.0) and m["NE"] == pytest.approx(1.0)  # 0 m and 2 m
    assert m["SPL"] == pytest.approx(100.0)
    with pytest.raises(NavigationDataError, match="missing for 1 of 2 instruction ids \\(first: 7_1\\)"):
        evaluate_trajectories(eps, preds[:1], corridor)


def _official_r2r(conn_dir: Path, episodes, preds) -> dict:
    """The R2R evaluation script's arithmetic (tasks/R2R/eval.py + utils.load_nav_graphs) with networkx, plus
    google-research's DTW (r4r) with HAMT's success; written independently of internvideo.tasks.vln."""
    dists = {}
    for scan in {e.scan for e in episodes}:
        data = json.loads((conn_dir / f"{scan}_connectivity.json").read_text())
        G = nx.Graph()
        for i, item in enumerate(data):
            if item["included"]:
                for j, conn in enumerate(item["unobstructed"]):
                    if conn and data[j]["included"]:
                        p, q = item["pose"], data[j]["pose"]
                        w = ((p[3] - q[3]) ** 2 + (p[7] - q[7]) ** 2 + (p[11] - q[11]) ** 2) ** 0.5
                        G.add_edge(item["image_id"], data[j]["image_id"], weight=w)
        dists[scan] = dict(nx.all_pairs_dijkstra_path_length(G))
    by_id = {p["instr_id"]: p["trajectory"] for p in preds}
    ne, oe, tl, sp, ndtw = [], [], [], [], []
    for ep in episodes:
        d, path, goal = dists[ep.scan], by_id[ep.instr_id], ep.path[-1]
        ne.append(d[path[-1][0]][goal])
        near = path[0][0]
        for item in path:
            if d[item[0]][goal] < d[near][goal]:
                near = item[0]
        oe.append(d[near][goal])
        tl.append(sum(d[a[0]][b[0]] for a, b in zip(path[:-1], path[1:])))
        sp.append(d[ep.path[0]][goal])
        pred, ref = [x[0] for x in path], list(ep.path)
        m = np.inf * np.ones((len(pred) + 1, len(ref) + 1))
        m[0][0] = 0
        for i in range(1, len(pred) + 1):
            for j in range(1, len(ref) + 1):
                m[i][j] = d[pred[i - 1]][ref[j - 1]] + min(m[i - 1][j], m[i][j - 1], m[i - 1][j - 1])
        ndtw.append(np.exp(-m[len(pred)][len(ref)] / (3.0 * len(ref))))
    success = [float(e < 3.0) for e in ne]
    spl = [s_ / max(t, s_) if e < 3.0 else 0 for e, t, s_ in zip(ne, tl, sp)]
    return {"NE": np.mean(ne), "TL": np.mean(tl), "SR": 100 * np.mean(success),
            "OSR": 100 * np.mean([float(e < 3.0) for e in oe]), "SPL": 100 * np.mean(spl),
            "nDTW": 100 * np.mean(ndtw), "SDTW": 100 * np.mean([s * n for s, n in zip(success, ndtw)])}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("navworld")
    make_nav_world(root, houses=3, unseen=1, rows=3, cols=3, paths_per_house=6, dim=16, seed=0)
    return root


def test_metrics_match_the_official_script_on_random_walks(world):
    graphs = NavGraphs(world / "connectivity")
    eps = read_episodes(world / "R2R_train.json") + read_episodes(world / "R2R_val_unseen.json")
    preds = random_walk(eps, graphs, steps=4, seed=3)
    # and some that follow the path: a mix of successes and failures
    preds[::3] = [{"instr_id": e.instr_id, "trajectory": [[v, 0, 0] for v in e.path]} for e in eps[::3]]
    ours = evaluate_trajectories(eps, preds, graphs)["metrics"]
    ref = _official_r2r(world / "connectivity", eps, preds)
    assert 0 < ours["SR"] < 100
    for key, value in ref.items():
        assert ours[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key


# ----------------------------------------------------------------------------- geometry and readers


def test_neighbour_headings_elevations_and_view_indices(tmp_path):
    pts = {"O": (1.0, 1.0, 1.5), "N": (1.0, 3.0, 1.5), "E": (3.0, 1.0, 1.5), "S": (1.0, -1.0, 1.5),
           "W": (-1.0, 1.0, 1.5), "UP": (1.0 + 2 * math.sin(math.radians(40)), 1.0 + 2 * math.cos(math.radians(40)),
                                          3.5),
           "DOWN": (1.0, 3.0, 0.0), "NNE": (1.0 + 2 * math.sin(math.radians(16)), 1.0 + 2 * math.cos(math.radians(16)),
                                            1.5),
           "FAR": (9.0, 9.0, 1.5)}  # FAR: excluded, so not a neighbour
    edges = [("O", k) for k in pts if k != "O"]
    g = NavGraphs(_write_scan(tmp_path, "s", pts, edges, excluded=("FAR",)))["s"]
    assert "FAR" not in g
    cands = {c.viewpoint: c for c in g.candidates("O")}
    assert set(cands) == {"N", "E", "S", "W", "UP", "DOWN", "NNE"}
    # heading from +y clockwise; views 0-11 look down, 12-23 level, 24-35 up, 30° apart
    assert cands["N"].view_index == 12 and cands["N"].heading == pytest.approx(0)
    assert cands["E"].view_index == 15 and cands["E"].heading == pytest.approx(math.pi / 2)
    assert cands["S"].view_index == 18 and cands["W"].view_index == 21
    assert cands["UP"].elevation == pytest.approx(math.atan2(2, 2)) and cands["UP"].view_index == 24 + 1
    assert cands["DOWN"].elevation == pytest.approx(math.atan2(-1.5, 2)) and cands["DOWN"].view_index == 0
    assert cands["NNE"].view_index == 13  # 16° is nearer the 30° view than the 0° one
    assert cands["N"].distance == pytest.approx(2.0)
    # MatterSim's relative heading (populateNavigable): atan2 of cross and dot with the camera direction
    for c in cands.values():
        h = (c.view_index % 12) * math.radians(30)
        cam = (math.cos(math.pi / 2 - h), math.sin(math.pi / 2 - h))
        d = np.subtract(g.positions[g.index[c.viewpoint]], g.positions[g.index["O"]])
        rel = math.atan2(d[0] * cam[1] - d[1] * cam[0], d[0] * cam[0] + d[1] * cam[1])
        assert c.heading - h == pytest.approx(rel, abs=1e-9)
    # the agent's heading snaps to the 30° grid; directions are [sin, cos] of relative heading and elevation
    assert snap_heading(math.radians(44)) == pytest.approx(math.radians(30))
    assert snap_heading(-math.radians(10)) == pytest.approx(0)
    np.testing.assert_allclose(direction_features(math.pi / 2, 0.0), [1, 0, 0, 1], atol=1e-7)


def test_readers_name_what_is_missing(tmp_path, corridor):
    bad = _r2r(tmp_path / "bad.json", [{"scan": "x", "path_id": 1, "path": ["A"]}])
    with pytest.raises(NavigationDataError, match="item 0: missing field 'instructions'"):
        read_episodes(bad)
    with pytest.raises(NavigationDataError, match="scan 'nowhere': no navigation graph"):
        corridor["nowhere"]
    eps = read_episodes(_r2r(tmp_path / "gt.json", [{"scan": "corridor", "path_id": 1, "path": ["A", "Q"],
                                                      "heading": 0, "instructions": ["go"]}]))
    with pytest.raises(NavigationDataError, match="1_0: viewpoint 'Q' is not in the navigation graph of scan"):
        corridor.check_episodes(eps, "gt.json")
    asym = _connectivity({"A": (0, 0, 0), "B": (0, 2, 0)}, [("A", "B")])
    asym[1]["unobstructed"][0] = False
    (tmp_path / "connectivity" / "asym_connectivity.json").write_text(json.dumps(asym))
    with pytest.raises(NavigationDataError, match="undirected: A -> B"):
        corridor["asym"]
    assert issubclass(NavigationDataError, UserError)


def test_view_features_from_npy_folder_and_npz(tmp_path):
    f = np.arange(36 * 5, dtype=np.float32).reshape(36, 5)
    (tmp_path / "feats").mkdir()
    np.save(tmp_path / "feats" / "scan1_vp1.npy", f)
    np.savez(tmp_path / "feats.npz", scan1_vp1=f, scan1_vp2=f[:10])
    for store in (ViewFeatures(tmp_path / "feats"), ViewFeatures(tmp_path / "feats.npz")):
        np.testing.assert_array_equal(store("scan1", "vp1"), f)
        assert store.dim == 5
        with pytest.raises(NavigationDataError, match="no view features for key 'scan1_vp9'"):
            store("scan1", "vp9")
    with pytest.raises(NavigationDataError, match="'scan1_vp2' have shape \\(10, 5\\); expected \\(36, D\\)"):
        ViewFeatures(tmp_path / "feats.npz")("scan1", "vp2")
    with pytest.raises(NavigationDataError, match="view features not found"):
        ViewFeatures(tmp_path / "none.npz")


def test_view_features_extracted_from_rendered_view_images(tmp_path, capsys):
    from internvideo import create_model
    from internvideo.data import VideoDataset
    from internvideo.tasks.common import dataset_features, eval_view
    from internvideo.tasks.vln import evaluate_agent

    kw = dict(houses=2, unseen=1, rows=2, cols=2, paths_per_house=3, seed=0)
    world = make_nav_world(tmp_path / "w", view_images=32, **kw)
    make_nav_world(tmp_path / "plain", **kw)  # the images take their own random stream
    for name in ("R2R_train.json", "R2R_val_unseen.json"):
        assert (tmp_path / "w" / name).read_text() == (tmp_path / "plain" / name).read_text()
    torch.manual_seed(0)
    model = create_model("videomae_tiny")
    save_model(model, tmp_path / "mae")
    argv = ["extract", "--model", str(tmp_path / "mae"), "--vln-views", str(tmp_path / "w" / "views"), "--out",
            str(tmp_path / "store"), "--no-progress"]
    assert cli_main(argv) == 0
    assert "viewpoints" in capsys.readouterr().out
    store, graphs = ViewFeatures(tmp_path / "store"), NavGraphs(tmp_path / "w" / "connectivity")
    assert store.dim == 64
    for scan in world.train_scans + world.unseen_scans:
        for vp in graphs[scan].ids:
            f = store(scan, vp)
            assert f.shape == (36, 64)
            np.testing.assert_array_equal(f[25:], np.broadcast_to(f[24], (11, 64)))  # the ceiling: one picture
            assert not np.allclose(f[0], f[24])  # looking down: the viewpoint's own landmark
    # row k is the model's embedding of image k
    image = tmp_path / "w" / "views" / "house01" / "house01_vp02" / "13.jpg"
    direct = dataset_features(model, VideoDataset([str(image)], eval_view(model)), progress=False)
    np.testing.assert_allclose(store("house01", "house01_vp02")[13], direct[0], rtol=1e-5, atol=1e-5)
    # the agent reads the store
    agent = _agent(feature_dim=64).eval()
    metrics, preds = evaluate_agent(agent, read_episodes(tmp_path / "w" / "R2R_val_unseen.json"), graphs, store, 3)
    assert len(preds) == 9 and 0 <= metrics["SR"] <= 100
    # a rerun resumes; a missing or an extra view is one line naming scan, viewpoint and view
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"extracted\s+0\n", out) and re.search(r"already done \(skipped\)\s+8\n", out)
    vp_dir = tmp_path / "w" / "views" / "house00" / "house00_vp01"
    (vp_dir / "36.jpg").write_bytes(b"")
    assert cli_main(argv) == 2
    assert "scan 'house00', viewpoint 'house00_vp01': unexpected file '36.jpg'" in capsys.readouterr().err
    (vp_dir / "36.jpg").unlink()
    (vp_dir / "7.jpg").unlink()
    assert cli_main(argv) == 2
    assert "viewpoint 'house00_vp01': view k=7 (7.jpg) is missing" in capsys.readouterr().err


def test_long_instructions_are_truncated_with_a_count():
    ids, truncated = tokenize_instructions(["go left", "walk " * 100], 16)
    assert truncated == 1 and ids.shape == (2, 16) and int(ids[1].argmax()) == 15  # end token kept last


# ----------------------------------------------------------------------------- agent


def _agent(feature_dim=16, **kw) -> VLNAgent:
    _, cfg = NAMED_CONFIGS["vln_agent_tiny"]
    return VLNAgent(dataclasses.replace(cfg, feature_dim=feature_dim, **kw))


def test_agent_scores_stop_and_candidates_and_masks_padding():
    torch.manual_seed(0)
    agent = _agent().eval()
    text, keep = agent.encode_text(tokenize_instructions(["go to the red box", "stop"], 77)[0][:, :8])
    cand_keep = torch.tensor([[True, True, False], [True, False, False]])
    hist = (torch.randn(2, 2, 16), torch.randn(2, 2, 16), torch.randn(2, 2, 4), torch.ones(2, 2, dtype=torch.bool))
    pano = (torch.randn(2, 36, 16), torch.randn(2, 36, 4))
    logits = agent(text, keep, torch.randn(2, 3, 16), torch.randn(2, 3, 4), cand_keep, *pano, hist)
    assert logits.shape == (2, 4)
    assert torch.isinf(logits[0, 3]) and torch.isinf(logits[1, 2:]).all() and torch.isfinite(logits[:, :2]).all()
    no_hist = _agent(use_history=False)
    assert not any(n.startswith("history") for n, _ in no_hist.named_parameters())
    assert no_hist(text, keep, torch.randn(2, 3, 16), torch.randn(2, 3, 4), cand_keep, *pano).shape == (2, 4)


def test_agent_round_trips_through_a_checkpoint(tmp_path, world):
    torch.manual_seed(0)
    agent = _agent().eval()
    save_model(agent, tmp_path / "agent")
    loaded = load_model(tmp_path / "agent").eval()
    assert isinstance(loaded, VLNAgent) and loaded.config == agent.config
    graphs, feats = NavGraphs(world / "connectivity"), ViewFeatures(world / "view_features.npz")
    eps = read_episodes(world / "R2R_val_unseen.json")[:3]
    ids = tokenize_instructions([e.instruction for e in eps], 77)[0]
    with torch.no_grad():
        a = rollout(agent, eps, ids, graphs, feats, "greedy", max_steps=3)
        b = rollout(loaded, eps, ids, graphs, feats, "greedy", max_steps=3)
    assert a.predictions == b.predictions
    for x, y in zip(a.logits, b.logits):
        torch.testing.assert_close(x, y)


def test_teacher_rollout_follows_the_shortest_path(world):
    graphs, feats = NavGraphs(world / "connectivity"), ViewFeatures(world / "view_features.npz")
    eps = read_episodes(world / "R2R_train.json")[:4]
    ids = tokenize_instructions([e.instruction for e in eps], 77)[0]
    with torch.no_grad():
        r = rollout(_agent().eval(), eps, ids, graphs, feats, "teacher", max_steps=10)
    for ep, pred in zip(eps, r.predictions):
        assert [s[0] for s in pred["trajectory"]] == list(ep.path)  # the synthetic paths are shortest paths
    assert int(r.targets[-1][-1]) == 0  # the last decision is STOP


# ----------------------------------------------------------------------------- objective, resume, CLI


def _vln_args(world: Path, out: Path, *extra: str) -> list[str]:
    return ["objective=vln", "model.name=vln_agent_tiny", f"data.root={world}", "data.train=R2R_train.json",
            "data.val=R2R_val_unseen.json", "vln.connectivity=connectivity", "vln.features=view_features.npz",
            "vln.max_steps=3", "vln.val_episodes=4", f"run.out_dir={out}", "run.batch_size=4", "run.log_every=1",
            "run.progress=false", "data.num_workers=0", "optim.lr=1e-3", "optim.scale_lr=false", *extra]


def test_vln_objective_trains_and_resumes_exactly(world, tmp_path):
    args = _vln_args(world, tmp_path / "run", "run.max_steps=4", "run.save_every=2", "run.keep_last=0")
    result = train(load_config(None, args))
    assert result.steps == 4 and result.metric_name == "SR"
    rows = [r for r in result.history if r["kind"] == "train"]
    assert all(math.isfinite(r["teacher_loss"]) and math.isfinite(r["sample_loss"]) for r in rows)
    evals = [r for r in result.history if r["kind"] == "eval"]
    assert evals and 0 <= evals[-1]["SR"] <= 100
    ckpts = tmp_path / "run" / "checkpoints"
    final = load_file(str(ckpts / "step_0000004" / "model.safetensors"))
    shutil.rmtree(ckpts / "step_0000004")  # as if killed after step 2 was saved
    resumed = train(load_config(None, args))
    assert resumed.steps == 4
    again = load_file(str(ckpts / "step_0000004" / "model.safetensors"))
    assert final.keys() == again.keys()
    for k in final:
        assert torch.equal(final[k], again[k]), k


def test_eval_vln_cli_scores_files_and_baselines(world, tmp_path, capsys):
    eps = read_episodes(world / "R2R_val_unseen.json")
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps([{"instr_id": e.instr_id, "trajectory": [[v, 0.0, 0.0] for v in e.path]}
                                for e in eps]))
    base = ["eval", "vln", "--gt", str(world / "R2R_val_unseen.json"), "--connectivity", str(world / "connectivity")]
    assert cli_main([*base, "--pred", str(pred), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["SR"] == 100 and m["SPL"] == 100 and m["nDTW"] == 100 and m["scored"] == len(eps)
    assert cli_main([*base, "--baseline", "stop", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["SR"] == 0
    pred.write_text(json.dumps([{"instr_id": eps[0].instr_id, "trajectory": [["elsewhere", 0, 0]]}]))
    assert cli_main([*base, "--pred", str(pred)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("internvideo: error:") and "starts at 'elsewhere'" in err


@pytest.mark.slow  # the smoke demo (tests/test_demo.py) runs this stage too
def test_demo_stage_rows(tmp_path):
    from internvideo.demo.context import DemoContext
    from internvideo.demo.vln import demo_stage

    ctx = DemoContext(world=tmp_path, work=tmp_path / "vln", seed=0, progress=False, mae_checkpoint=tmp_path,
                      mae_pretrain_checkpoint=tmp_path, mm_checkpoint=tmp_path, img_size=32, preset="smoke")
    rows = demo_stage(ctx)
    assert [r["short"] for r in rows] == ["VLN SR", "VLN SPL", "VLN SR (no hist.)", "VLN SPL (no hist.)"]
    assert all(0 <= r["value"] <= 100 and 0 <= r["chance"] <= 100 for r in rows)
    assert (tmp_path / "vln" / "navworld" / "R2R_val_unseen.json").is_file()
