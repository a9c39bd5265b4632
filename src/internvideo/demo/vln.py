"""Demo stage: vision-language navigation (R2R protocol) in the synthetic navigation world.

A navigation world in the R2R file formats (:mod:`internvideo.data.vln_world`:
houses as graphs, landmark view features, templated instructions; two houses
held out) trains the HAMT-style agent through the one training loop (``vln``
objective: teacher forcing plus sampled actions), once with its history
encoder and once without (the ablation). Both are scored on the unseen houses
with the R2R metrics (greedy roll-outs); the chance row is a random walk of
five moves scored the same way. The two agents train at once, each in its own
process on one thread (a tiny model stepping through graphs gains little from
a second thread; two processes use both cores of a 2-core machine, and give
the same numbers as training one after the other). The view features are
the world's own stand-ins for an image encoder's, not the demo's video
encoders: this stage shows the navigation machinery, not InternVideo's
features.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from ..data.vln import NavGraphs, ViewFeatures, read_episodes
from ..data.vln_world import make_nav_world
from ..tasks.vln import evaluate_agent, evaluate_trajectories, random_walk
from ..train import train
from ..train.config import load_config
from .context import DemoContext

STEPS = {"smoke": 4, "quick": 150, "default": 300}
MAX_STEPS = 8  # decisions per episode: the world's paths have at most 5 moves


def _train_agent(ctx: DemoContext, world, name: str, use_history: bool):
    steps = STEPS.get(ctx.preset, 300)
    cfg = load_config(None, [
        "objective=vln", "model.name=vln_agent_tiny", f"model.overrides.use_history={str(use_history).lower()}",
        f"data.root={world}", "data.train=R2R_train.json", "vln.connectivity=connectivity",
        "vln.features=view_features.npz", f"vln.max_steps={MAX_STEPS}", "data.num_workers=0",
        "optim.lr=3e-3", "optim.weight_decay=0.01", "optim.scale_lr=false",
        f"optim.warmup_steps={min(20, steps // 10)}",  # the smoke preset's 4 steps cannot hold 20 warmup steps
        "run.batch_size=16", "run.epochs=1000", f"run.max_steps={steps}", f"run.out_dir={ctx.work / name}",
        f"run.progress={str(ctx.progress).lower()}", f"run.seed={ctx.seed}", "run.save_every=100000",
        "run.resume=false"])
    return train(cfg).model


def _train_and_score(ctx: DemoContext, world: Path, name: str, use_history: bool) -> dict[str, float]:
    """In a worker process: train one agent on one thread, then its R2R metrics on the unseen houses."""
    torch.set_num_threads(1)  # a tiny model stepping through graphs: more threads only contend
    agent = _train_agent(ctx, world, name, use_history)
    graphs, feats = NavGraphs(world / "connectivity"), ViewFeatures(world / "view_features.npz")
    return evaluate_agent(agent, read_episodes(world / "R2R_val_unseen.json"), graphs, feats, MAX_STEPS)[0]


def demo_stage(ctx: DemoContext) -> list[dict[str, Any]]:
    world = ctx.work / "navworld"
    small = ctx.preset == "smoke"
    make_nav_world(world, houses=4 if small else 8, unseen=1 if small else 2, rows=3 if small else 4,
                   cols=3 if small else 4, paths_per_house=6 if small else 40, seed=ctx.seed)
    # spawn, not fork: the parent's compute threads must not be inherited mid-flight
    with ProcessPoolExecutor(min(2, os.cpu_count() or 1), mp_context=multiprocessing.get_context("spawn")) as pool:
        jobs = {name: pool.submit(_train_and_score, ctx, world, name, history)
                for name, history in (("history", True), ("no_history", False))}
        scores = {name: job.result() for name, job in jobs.items()}
    graphs, unseen = NavGraphs(world / "connectivity"), read_episodes(world / "R2R_val_unseen.json")
    chance = evaluate_trajectories(unseen, random_walk(unseen, graphs, seed=ctx.seed), graphs)["metrics"]
    rows = []
    for key, model in (("history", "HAMT-style agent with history"), ("no_history", "same agent without history")):
        for metric in ("SR", "SPL"):
            rows.append({"family": "Vision-language navigation", "model": model,
                         "metric": f"{metric} on unseen houses, R2R protocol (baseline: random walk)",
                         "short": f"VLN {metric}" + ("" if key == "history" else " (no hist.)"),
                         "value": round(scores[key][metric], 1), "chance": round(chance[metric], 1)})
    return rows
