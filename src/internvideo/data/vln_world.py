"""A synthetic navigation world in the R2R file formats, so the real-data code path runs on it unchanged.

Each "house" is a jittered grid of viewpoints (3.5 m apart, so that stopping
next to the goal is not a success under R2R's 3 m rule) joined by a random
spanning tree plus a few extra doors. Every viewpoint holds one landmark, a
coloured object ("the red box"), unique within its house. View features
stand in for what an image encoder would see in each of the 36 discretised
directions: view ``k`` of a viewpoint holds the landmarks of the viewpoints
that lie in that direction (the same view-assignment rule the environment
uses for navigable neighbours), fainter with distance, its own landmark in the
downward views (the thing at your feet), a per-house wall tint and noise.
Landmark vectors are the sum of a colour and an object embedding, so an agent
must relate the words of the instruction to feature directions.

Instructions are templated from the landmarks along the shortest path, every
one in order ("walk past the green lamp, then the red box and stop at the blue
door"), three per path. Written: ``R2R_train.json`` and ``R2R_val_seen.json`` (the training
houses), ``R2R_val_unseen.json`` (held-out houses),
``connectivity/{scan}_connectivity.json`` with ``scans.txt``, and
``view_features.npz`` keyed ``{scan}_{viewpoint}`` -> ``(36, dim)``.

With ``view_images=SIZE`` it also renders the same scene as pictures,
``views/{scan}/{viewpoint}/{k}.jpg`` (SIZE x SIZE), for ``internvideo extract
--vln-views``: the house's wall colour (darker looking down, lighter looking
up), in a horizon view the landmarks lying in that direction as rectangles of
their colour, shaped by their object (a door tall and narrow, a sofa wide and
low) and smaller with distance, and in the downward views the viewpoint's own
landmark, large. The images take their own random stream, so the rest of the
world is the same with or without them.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .vln import NUM_VIEWS, NavGraph, view_angles

COLOURS = ("red", "green", "blue", "yellow", "white", "black", "orange", "purple")
OBJECTS = ("box", "door", "lamp", "chair", "plant", "table", "sofa", "picture")
TEMPLATES = (
    "walk past the {via} and stop at the {goal}.",
    "go by the {via}, then wait at the {goal}.",
    "head past the {via}. stop when you reach the {goal}.",
)
SPACING = 3.5
RGB = {"red": (200, 30, 30), "green": (30, 160, 50), "blue": (30, 60, 200), "yellow": (230, 210, 40),
       "white": (245, 245, 245), "black": (15, 15, 15), "orange": (240, 130, 20), "purple": (130, 40, 160)}
#: (width, height) of each object as a fraction of the image, at the grid spacing
SHAPES = {"box": (0.4, 0.4), "door": (0.25, 0.7), "lamp": (0.1, 0.6), "chair": (0.3, 0.45), "plant": (0.2, 0.5),
          "table": (0.6, 0.3), "sofa": (0.7, 0.35), "picture": (0.45, 0.25)}

__all__ = ["NavWorld", "make_nav_world"]


@dataclass
class NavWorld:
    root: Path
    train_scans: list[str]
    unseen_scans: list[str]
    counts: dict[str, int]  # instructions per split

    def __str__(self) -> str:
        split = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        return (f"navigation world in {self.root}: {len(self.train_scans)} training houses, "
                f"{len(self.unseen_scans)} unseen; instructions: {split}")


def _house(rng: np.random.Generator, rows: int, cols: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    n = rows * cols
    grid = np.array([(c * SPACING, r * SPACING) for r in range(rows) for c in range(cols)], dtype=np.float64)
    xy = grid + rng.uniform(-0.3, 0.3, size=grid.shape)
    z = 1.5 + rng.uniform(-0.05, 0.05, size=(n, 1))
    pairs = [(r * cols + c, r * cols + c + 1) for r in range(rows) for c in range(cols - 1)]
    pairs += [(r * cols + c, (r + 1) * cols + c) for r in range(rows - 1) for c in range(cols)]
    order = rng.permutation(len(pairs))
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    edges, rest = [], []
    for k in order:  # a random spanning tree (Kruskal on shuffled edges), then some doors more
        a, b = pairs[k]
        if find(a) != find(b):
            parent[find(a)] = find(b)
            edges.append((a, b))
        else:
            rest.append((a, b))
    edges += [e for e in rest if rng.random() < 0.35]
    return np.concatenate([xy, z], axis=1), edges


def _connectivity(ids: list[str], pos: np.ndarray, edges: list[tuple[int, int]]) -> list[dict]:
    adj = np.zeros((len(ids), len(ids)), bool)
    for a, b in edges:
        adj[a, b] = adj[b, a] = True
    out = []
    for i, vp in enumerate(ids):
        pose = np.eye(4)
        pose[:3, 3] = pos[i]
        out.append({"image_id": vp, "pose": [float(x) for x in pose.reshape(-1)], "included": True,
                    "visible": [bool(x) for x in adj[i]], "unobstructed": [bool(x) for x in adj[i]],
                    "height": 1.5})
    return out


def _view_features(graph: NavGraph, landmark_vec: np.ndarray, tint: np.ndarray, rng: np.random.Generator,
                   noise: float) -> dict[str, np.ndarray]:
    feats = {}
    down = [k for k in range(NUM_VIEWS) if view_angles(k)[1] < 0]
    for i, vp in enumerate(graph.ids):
        f = np.tile(tint, (NUM_VIEWS, 1))
        f[down] += landmark_vec[i]
        for j in range(len(graph.ids)):
            if j == i:
                continue
            d = graph.positions[j] - graph.positions[i]
            heading = math.atan2(d[0], d[1])
            k = 12 + int(round(heading / math.radians(30))) % 12  # the horizon view facing it
            f[k] += landmark_vec[j] * math.exp(-(np.linalg.norm(d) - SPACING) / SPACING)
        feats[vp] = (f + noise * rng.standard_normal(f.shape)).astype(np.float32)
    return feats


def _render_views(graph: NavGraph, names: list[str], wall: np.ndarray, size: int, out: Path) -> None:
    from PIL import Image

    def draw(img: np.ndarray, name: str, scale: float, x: float) -> None:
        colour, obj = name.split(" ")
        w, h = (max(1, round(f * scale * size)) for f in SHAPES[obj])
        left, top = round(x * size - w / 2), round(0.65 * size - h / 2)
        img[max(top, 0):max(top + h, 0), max(left, 0):max(left + w, 0)] = RGB[colour]

    for i, vp in enumerate(graph.ids):
        views = [np.empty((size, size, 3), np.uint8) for _ in range(NUM_VIEWS)]
        for k, img in enumerate(views):
            img[:] = np.clip(wall * (1.0 + 0.4 * view_angles(k)[1] / math.radians(30)), 0, 255)
            if view_angles(k)[1] < 0:
                draw(img, names[i], 1.5, 0.5)  # the thing at your feet
        others = sorted((float(np.linalg.norm(graph.positions[j] - graph.positions[i])), j)
                        for j in range(len(graph.ids)) if j != i)
        for dist, j in reversed(others):  # far ones first: near ones cover them
            d = graph.positions[j] - graph.positions[i]
            heading = math.atan2(d[0], d[1])
            k = int(round(heading / math.radians(30))) % 12
            rel = math.remainder(heading - view_angles(k)[0], 2 * math.pi)
            # the camera's 80° horizontal field of view spans the image
            draw(views[12 + k], names[j], math.exp(-(dist - SPACING) / SPACING), 0.5 + rel / math.radians(80))
        folder = out / graph.scan / vp
        folder.mkdir(parents=True, exist_ok=True)
        for k, img in enumerate(views):
            Image.fromarray(img).save(folder / f"{k}.jpg", quality=90)


def _instruction(names: list[str], template: str, rng: np.random.Generator) -> str:
    via, goal = names[1:-1], names[-1]
    if not via:
        return f"stop at the {goal}." if rng.random() < 0.5 else f"go to the {goal} and stop."
    return template.format(via=", then the ".join(via), goal=goal)


def make_nav_world(out: str | Path, houses: int = 8, unseen: int = 2, rows: int = 4, cols: int = 4,
                   paths_per_house: int = 40, dim: int = 64, noise: float = 0.1, seed: int = 0,
                   view_images: int = 0) -> NavWorld:
    """Write the world (see the module doc); everything is a function of ``seed``."""
    if not 0 < unseen < houses:
        raise ValueError(f"unseen houses must be between 1 and houses - 1, got {unseen} of {houses}")
    rng = np.random.default_rng(seed)
    root = Path(out)
    (root / "connectivity").mkdir(parents=True, exist_ok=True)
    colour_vec = rng.standard_normal((len(COLOURS), dim)) / math.sqrt(dim) * 2.0
    object_vec = rng.standard_normal((len(OBJECTS), dim)) / math.sqrt(dim) * 2.0
    features: dict[str, np.ndarray] = {}
    splits: dict[str, list[dict]] = {"train": [], "val_seen": [], "val_unseen": []}
    scans = [f"house{h:02d}" for h in range(houses)]
    path_id = 0
    for h, scan in enumerate(scans):
        pos, edges = _house(rng, rows, cols)
        ids = [f"{scan}_vp{i:02d}" for i in range(len(pos))]
        conn = _connectivity(ids, pos, edges)
        (root / "connectivity" / f"{scan}_connectivity.json").write_text(json.dumps(conn))
        graph = NavGraph(scan, ids, pos, edges)
        pairs = rng.choice(len(COLOURS) * len(OBJECTS), size=len(ids), replace=False)
        names = [f"{COLOURS[p // len(OBJECTS)]} {OBJECTS[p % len(OBJECTS)]}" for p in pairs]
        vecs = np.stack([colour_vec[p // len(OBJECTS)] + object_vec[p % len(OBJECTS)] for p in pairs])
        tint = rng.standard_normal(dim) * 0.3 / math.sqrt(dim)
        for vp, f in _view_features(graph, vecs, tint, rng, noise).items():
            features[f"{scan}_{vp}"] = f
        if view_images:
            wall = np.random.default_rng([seed, h]).uniform(70, 180, size=3)
            _render_views(graph, names, wall, view_images, root / "views")
        held_out = h >= houses - unseen
        for k in range(paths_per_house):
            while True:
                a, b = (int(x) for x in rng.choice(len(ids), size=2, replace=False))
                path = graph.shortest_path(ids[a], ids[b])
                if 3 <= len(path) <= 6:
                    break
            texts = [_instruction([names[graph.index[v]] for v in path], TEMPLATES[t], rng) for t in range(3)]
            item = {"scan": scan, "path_id": path_id, "path": path, "heading": float(rng.uniform(0, 2 * math.pi)),
                    "distance": float(sum(graph.distance(x, y) for x, y in zip(path[:-1], path[1:]))),
                    "instructions": texts}
            path_id += 1
            split = "val_unseen" if held_out else ("val_seen" if k % 5 == 0 else "train")
            splits[split].append(item)
    for split, items in splits.items():
        (root / f"R2R_{split}.json").write_text(json.dumps(items, indent=1))
    (root / "connectivity" / "scans.txt").write_text("\n".join(scans) + "\n")
    np.savez(root / "view_features.npz", **features)
    return NavWorld(root, scans[: houses - unseen], scans[houses - unseen:],
                    {k: 3 * len(v) for k, v in splits.items()})
