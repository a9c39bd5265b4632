"""Vision-language navigation (discrete R2R): the R2R metrics, agent roll-outs and ``internvideo eval vln``.

**Metrics** (:func:`score_path`, :func:`evaluate_trajectories`), per
instruction and averaged, as the R2R evaluation script
(peteanderson80/Matterport3DSimulator ``tasks/R2R/eval.py``): the trajectory is
the viewpoint ids of the leaderboard format ``[viewpoint, heading,
elevation]``, which must start at the path's start; each move between two
different viewpoints must follow a graph edge.

* NE, navigation error: shortest-path distance (metres) from the final
  viewpoint to the goal (the last viewpoint of the reference ``path``);
* SR, success: NE < 3 m (strictly); OSR, oracle success: the viewpoint of the
  trajectory nearest the goal is < 3 m from it;
* TL, trajectory length: the sum of shortest distances between consecutive
  entries (repeated viewpoints add 0);
* SPL: ``success * d(start, goal) / max(TL, d(start, goal))`` (a path whose
  start is its goal would divide 0 by 0: it scores 0, as HAMT's guard
  ``max(., 0.01)`` gives);
* nDTW and SDTW (Ilharco et al. 2019; google-research ``r4r``'s ``DTW`` and
  HAMT's ``cal_dtw``): DTW over the shortest distances between the
  trajectory's viewpoints (every entry, as given) and the reference path's,
  ``nDTW = exp(-DTW / (3 m * len(reference)))``, ``SDTW = SR * nDTW``, with
  success as above (HAMT passes the R2R success; google-research's own code
  counts exactly 3 m as success, which does not occur on real graphs).

Rates are percentages; NE, OE and TL are metres. Predictions for instruction
ids outside the ground truth are counted as ``extra`` and ignored, repeated ids
after the first are counted as ``duplicates`` and ignored (the script keeps
the first); a missing id is an error, as in the script.

**Roll-outs** (:func:`rollout`) run a :class:`~internvideo.models.vln.VLNAgent`
on the graphs from files: greedy (evaluation), teacher (imitation along the
shortest path to the goal) or sampled actions (student forcing), and give the
per-step logits and teacher actions the ``vln`` training objective needs.
:func:`random_walk` is the chance baseline.
"""
from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from .. import argtypes
from ..data.vln import (ERROR_MARGIN, NUM_VIEWS, Candidate, Episode, NavGraph, NavGraphs, NavigationDataError,
                        ViewFeatures, direction_features, read_episodes, snap_heading, view_angles)

__all__ = ["EpisodeState", "RolloutResult", "dtw", "evaluate_agent", "evaluate_trajectories", "random_walk",
           "read_predictions", "results_table", "rollout", "score_path", "tokenize_instructions", "add_arguments",
           "main"]

Policy = Literal["greedy", "teacher", "sample"]
VIEW_HEADINGS = np.array([view_angles(k)[0] for k in range(NUM_VIEWS)])
VIEW_ELEVATIONS = np.array([view_angles(k)[1] for k in range(NUM_VIEWS)])


# ----------------------------------------------------------------------------- metrics


def dtw(distance, prediction: Sequence[str], reference: Sequence[str]) -> float:
    """Dynamic time warping cost between two viewpoint sequences under ``distance(a, b)``."""
    n, m = len(prediction), len(reference)
    cost = np.full((n + 1, m + 1), np.inf)
    cost[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i, j] = distance(prediction[i - 1], reference[j - 1]) + min(cost[i - 1, j], cost[i, j - 1],
                                                                               cost[i - 1, j - 1])
    return float(cost[n, m])


def score_path(graph: NavGraph, path: Sequence[str], reference: Sequence[str],
               margin: float = ERROR_MARGIN) -> dict[str, float]:
    """The R2R metrics of one trajectory (viewpoint ids) against the reference path; rates as 0/1."""
    goal, start = reference[-1], reference[0]
    if path[0] != start:
        raise NavigationDataError(f"the trajectory starts at {path[0]!r}, not at the path's start {start!r} "
                                  "(trajectories must include the start position)")
    for a, b in zip(path[:-1], path[1:]):
        if a != b and not graph.has_edge(a, b):
            raise NavigationDataError(f"the trajectory moves from {a!r} to {b!r} but the navigation graph of scan "
                                      f"{graph.scan!r} has no edge between them")
    to_goal = [graph.distance(v, goal) for v in path]
    nav_error = to_goal[-1]
    oracle_error = min(to_goal)  # the script's nearest position: its first minimum, whose distance is the minimum
    length = float(sum(graph.distance(a, b) for a, b in zip(path[:-1], path[1:])))
    shortest = graph.distance(start, goal)
    values = [nav_error, oracle_error, length, shortest]
    if not all(math.isfinite(v) for v in values):
        raise NavigationDataError(f"scan {graph.scan!r}: the trajectory or the reference path leaves the connected "
                                  f"part of the graph (no finite distance to goal {goal!r})")
    success = float(nav_error < margin)
    cost = dtw(graph.distance, path, reference)
    ndtw = math.exp(-cost / (margin * len(reference)))
    return {"nav_error": nav_error, "oracle_error": oracle_error, "steps": float(len(path) - 1),
            "length": length, "shortest": shortest, "success": success,
            "oracle_success": float(oracle_error < margin),
            "spl": success * shortest / max(length, shortest) if max(length, shortest) > 0 else 0.0,
            "dtw": cost, "ndtw": ndtw, "sdtw": success * ndtw}


def read_predictions(path: str | Path) -> list[dict]:
    """A leaderboard file ``[{"instr_id", "trajectory": [[viewpoint, heading, elevation], ...]}]``, checked."""
    path = Path(path)
    if not path.exists():
        raise NavigationDataError(f"predictions not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise NavigationDataError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
    if not isinstance(data, list):
        raise NavigationDataError(f"{path}: expected a JSON list of {{instr_id, trajectory}} objects")
    for i, item in enumerate(data):
        if not isinstance(item, dict) or "instr_id" not in item or "trajectory" not in item:
            raise NavigationDataError(f"{path}: item {i}: expected an object with 'instr_id' and 'trajectory'")
        traj = item["trajectory"]
        if not isinstance(traj, list) or not traj or not all(
                isinstance(s, (list, tuple)) and s and isinstance(s[0], str) for s in traj):
            raise NavigationDataError(f"{path}: item {i} ({item['instr_id']}): 'trajectory' must be a non-empty list "
                                      "of [viewpoint, heading, elevation]")
    return data


def evaluate_trajectories(episodes: Sequence[Episode], predictions: Sequence[dict], graphs: NavGraphs,
                          margin: float = ERROR_MARGIN, source: object = "predictions") -> dict:
    """Average R2R metrics over ``episodes`` (rates in percent, distances in metres) plus per-item scores."""
    if not episodes:
        raise NavigationDataError(f"{source}: the ground truth holds no instructions to score")
    gt = {ep.instr_id: ep for ep in episodes}
    scores: dict[str, dict[str, float]] = {}
    extra = duplicates = 0
    for item in predictions:
        instr_id = str(item["instr_id"])
        if instr_id not in gt:
            extra += 1
            continue
        if instr_id in scores:
            duplicates += 1
            continue
        ep = gt[instr_id]
        try:
            scores[instr_id] = score_path(graphs[ep.scan], [s[0] for s in item["trajectory"]], ep.path, margin)
        except NavigationDataError as e:
            raise NavigationDataError(f"{source}: instruction {instr_id}: {e}") from None
    missing = [i for i in gt if i not in scores]
    if missing:
        raise NavigationDataError(f"{source}: trajectories missing for {len(missing)} of {len(gt)} instruction ids "
                                  f"(first: {', '.join(missing[:5])})")
    rows = [scores[ep.instr_id] for ep in episodes]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    out = {"NE": mean["nav_error"], "OE": mean["oracle_error"], "TL": mean["length"], "steps": mean["steps"],
           "SR": 100 * mean["success"], "OSR": 100 * mean["oracle_success"], "SPL": 100 * mean["spl"],
           "nDTW": 100 * mean["ndtw"], "SDTW": 100 * mean["sdtw"],
           "scored": len(rows), "extra": extra, "duplicates": duplicates}
    return {"metrics": out, "per_item": scores}


def results_table(metrics: dict) -> str:
    head = f"{'NE (m)':>8s} {'TL (m)':>8s} {'SR %':>7s} {'OSR %':>7s} {'SPL %':>7s} {'nDTW %':>7s} {'SDTW %':>7s}"
    m = metrics
    line = (f"{m['NE']:8.2f} {m['TL']:8.2f} {m['SR']:7.1f} {m['OSR']:7.1f} {m['SPL']:7.1f} {m['nDTW']:7.1f} "
            f"{m['SDTW']:7.1f}")
    notes = f"{m['scored']} instructions scored"
    if m["extra"] or m["duplicates"]:
        notes += f"; ignored: {m['extra']} not in the ground truth, {m['duplicates']} repeated ids"
    return f"{head}\n{line}\n{notes}"


# ----------------------------------------------------------------------------- roll-outs


def tokenize_instructions(texts: Sequence[str], context_length: int) -> tuple[torch.Tensor, int]:
    """CLIP token ids ``(N, context_length)`` and how many instructions were cut to fit (end token kept)."""
    from ..tokenizer import get_tokenizer

    tok = get_tokenizer("clip", context_length)
    truncated = sum(len(ids) + 2 > context_length for ids in tok.encode_batch(list(texts)))
    return tok(list(texts)), truncated


@dataclass
class EpisodeState:
    """Where one episode's agent is: viewpoint, heading (snapped), the trajectory and the history so far."""

    episode: Episode
    viewpoint: str
    heading: float
    elevation: float = 0.0
    trajectory: list[list] = field(default_factory=list)
    pano: list[np.ndarray] = field(default_factory=list)
    action_feat: list[np.ndarray] = field(default_factory=list)
    action_dir: list[np.ndarray] = field(default_factory=list)
    done: bool = False

    @classmethod
    def start(cls, ep: Episode) -> EpisodeState:
        heading = snap_heading(ep.heading)
        return cls(ep, ep.start, heading, 0.0, [[ep.start, heading, 0.0]])


@dataclass
class RolloutResult:
    predictions: list[dict]
    logits: list[torch.Tensor]  # per step, (active episodes, 1 + max candidates)
    targets: list[torch.Tensor]  # per step, the teacher's action index (0 = STOP)


def _observe(state: EpisodeState, graph: NavGraph, features: ViewFeatures):
    cands = graph.candidates(state.viewpoint)
    views = features(state.episode.scan, state.viewpoint)
    feat = views[[c.view_index for c in cands]] if cands else np.zeros((0, views.shape[1]), np.float32)
    dirs = direction_features([c.heading - state.heading for c in cands], [c.elevation for c in cands])
    return cands, views, feat, dirs.reshape(len(cands), 4)


def _teacher(state: EpisodeState, graph: NavGraph, cands: Sequence[Candidate]) -> int:
    nxt = graph.next_hop(state.viewpoint, state.episode.goal)
    if nxt is None:
        return 0
    return 1 + [c.viewpoint for c in cands].index(nxt)


def _pad(arrays: Sequence[np.ndarray], length: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = arrays[0].shape[-1]
    out = np.zeros((len(arrays), length, width), np.float32)
    keep = np.zeros((len(arrays), length), bool)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
        keep[i, : len(a)] = True
    return torch.from_numpy(out).to(device), torch.from_numpy(keep).to(device)


def rollout(agent, episodes: Sequence[Episode], ids: torch.Tensor, graphs: NavGraphs, features: ViewFeatures,
            policy: Policy = "greedy", max_steps: int = 15, generator: torch.Generator | None = None) -> RolloutResult:
    """Run ``agent`` on a batch of episodes for at most ``max_steps`` decisions.

    ``ids``: the instructions' token ids ``(B, L)``. ``policy``: ``greedy`` (argmax), ``teacher`` (the next
    viewpoint on a shortest path to the goal, STOP there) or ``sample`` (from the softmax, with
    ``generator``). Logits keep their graph when gradients are enabled.
    """
    core = getattr(agent, "module", agent)
    core = getattr(core, "_orig_mod", core)
    device = next(core.parameters()).device
    ids = ids[:, : max(int((ids != 0).sum(dim=1).max()), 2)]  # drop the padding columns no instruction uses
    text, text_keep = core.encode_text(ids.to(device))
    states = [EpisodeState.start(ep) for ep in episodes]
    logits_out, targets_out = [], []
    for t in range(max_steps):
        active = [i for i, s in enumerate(states) if not s.done]
        if not active:
            break
        obs = [_observe(states[i], graphs[states[i].episode.scan], features) for i in active]
        c_max = max(len(o[0]) for o in obs)
        cand_feat, cand_keep = _pad([o[2] for o in obs], max(c_max, 1), device)
        cand_dir, _ = _pad([o[3] for o in obs], max(c_max, 1), device)
        history = None
        if core.config.use_history:
            # every active episode has taken exactly t steps: no padding in time
            def stack(name: str, width: int) -> torch.Tensor:
                rows = [np.stack(getattr(states[i], name)) if t else np.zeros((0, width), np.float32)
                        for i in active]
                return torch.from_numpy(np.stack(rows)).to(device)

            dim = obs[0][1].shape[1]
            history = (stack("pano", dim), stack("action_feat", dim), stack("action_dir", 4),
                       torch.ones(len(active), t, dtype=torch.bool, device=device))
        pano_feat = torch.from_numpy(np.stack([o[1] for o in obs])).to(device)
        pano_dir = torch.from_numpy(np.stack([direction_features(VIEW_HEADINGS - states[i].heading, VIEW_ELEVATIONS)
                                              for i in active])).to(device)
        sel = torch.tensor(active, device=device)
        logits = agent(text[sel], text_keep[sel], cand_feat, cand_dir, cand_keep, pano_feat, pano_dir, history)
        targets = torch.tensor([_teacher(states[i], graphs[states[i].episode.scan], o[0])
                                for i, o in zip(active, obs)], device=device)
        logits_out.append(logits)
        targets_out.append(targets)
        if policy == "teacher":
            actions = targets
        elif policy == "sample":
            probs = torch.softmax(logits.detach().float(), dim=-1)
            actions = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(device)
        else:
            actions = logits.detach().argmax(dim=-1)
        for k, (i, o, a) in enumerate(zip(active, obs, actions.tolist())):
            s = states[i]
            if a == 0:
                s.done = True
                continue
            cand = o[0][a - 1]
            s.pano.append(o[1].mean(axis=0))
            s.action_feat.append(o[2][a - 1])
            s.action_dir.append(o[3][a - 1])
            s.heading, s.elevation = view_angles(cand.view_index)
            s.viewpoint = cand.viewpoint
            s.trajectory.append([cand.viewpoint, s.heading, s.elevation])
    preds = [{"instr_id": s.episode.instr_id, "trajectory": s.trajectory} for s in states]
    return RolloutResult(preds, logits_out, targets_out)


@torch.no_grad()
def evaluate_agent(agent, episodes: Sequence[Episode], graphs: NavGraphs, features: ViewFeatures,
                   max_steps: int = 15, batch_size: int = 32) -> tuple[dict, list[dict]]:
    """Greedy roll-outs of every episode, scored: ``(metrics, predictions)``."""
    agent.eval()
    context = getattr(agent, "module", agent).config.context_length
    ids, _ = tokenize_instructions([ep.instruction for ep in episodes], context)
    preds: list[dict] = []
    for lo in range(0, len(episodes), batch_size):
        batch = episodes[lo:lo + batch_size]
        preds += rollout(agent, batch, ids[lo:lo + batch_size], graphs, features, "greedy", max_steps).predictions
    return evaluate_trajectories(episodes, preds, graphs)["metrics"], preds


def random_walk(episodes: Sequence[Episode], graphs: NavGraphs, steps: int = 5, seed: int = 0) -> list[dict]:
    """Chance: a uniformly random neighbour at each of ``steps`` moves, then STOP.

    R2R's ``RandomAgent`` also moves five steps (it keeps a random heading and walks straight).
    """
    rng = np.random.default_rng(seed)
    preds = []
    for ep in episodes:
        graph, s = graphs[ep.scan], EpisodeState.start(ep)
        for _ in range(steps):
            cands = graph.candidates(s.viewpoint)
            if not cands:
                break
            c = cands[int(rng.integers(len(cands)))]
            s.viewpoint = c.viewpoint
            s.heading, s.elevation = view_angles(c.view_index)
            s.trajectory.append([c.viewpoint, s.heading, s.elevation])
        preds.append({"instr_id": ep.instr_id, "trajectory": s.trajectory})
    return preds


# ----------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``internvideo eval vln``."""
    parser.add_argument("--gt", required=True, help="R2R JSON of the split (e.g. R2R_val_unseen.json)")
    parser.add_argument("--connectivity", required=True, help="folder of {scan}_connectivity.json")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--pred", help="trajectories in the R2R leaderboard format to score")
    what.add_argument("--model", help="a trained agent (checkpoint folder of the vln objective) to run greedily")
    what.add_argument("--baseline", choices=["random", "stop", "shortest"],
                      help="score a baseline: random walk (5 moves), stop at the start, or the shortest path")
    parser.add_argument("--features", help="with --model: the view features ({scan}_{viewpoint} -> (36, D))")
    parser.add_argument("--max-steps", type=argtypes.positive_int, default=15, help="with --model: decisions per episode (HAMT: 15)")
    parser.add_argument("--seed", type=argtypes.nonnegative_int, default=0, help="with --baseline random")
    parser.add_argument("--write-pred", help="also write the trajectories (leaderboard format) here")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    parser.add_argument("--out", help="also write the metrics (and per-instruction scores) as JSON here")


def _baseline(name: str, episodes: Sequence[Episode], graphs: NavGraphs, seed: int) -> list[dict]:
    if name == "random":
        return random_walk(episodes, graphs, seed=seed)
    preds = []
    for ep in episodes:
        path = [ep.start] if name == "stop" else graphs[ep.scan].shortest_path(ep.start, ep.goal)
        preds.append({"instr_id": ep.instr_id, "trajectory": [[v, 0.0, 0.0] for v in path]})
    return preds


def main(args: argparse.Namespace) -> int:
    episodes = read_episodes(args.gt)
    graphs = NavGraphs(args.connectivity)
    graphs.check_episodes(episodes, args.gt)
    if args.pred:
        preds, source = read_predictions(args.pred), args.pred
    elif args.baseline:
        preds, source = _baseline(args.baseline, episodes, graphs, args.seed), f"baseline {args.baseline}"
    else:
        from ..checkpoints import load_model
        from ..models.vln import VLNAgent

        if not args.features:
            raise NavigationDataError("--model needs --features (the view features the agent was trained on)")
        agent = load_model(args.model)
        if not isinstance(agent, VLNAgent):
            raise NavigationDataError(f"{args.model} holds a {type(agent).__name__}, not a navigation agent "
                                      "(train one with the vln objective)")
        _, preds = evaluate_agent(agent, episodes, graphs, ViewFeatures(args.features), args.max_steps)
        source = args.model
    if args.write_pred:
        Path(args.write_pred).write_text(json.dumps(preds) + "\n")
    result = evaluate_trajectories(episodes, preds, graphs, source=source)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["metrics"], indent=1) if args.json else results_table(result["metrics"]))
    return 0
