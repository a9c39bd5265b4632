"""Room-to-Room (R2R) navigation from plain files: instructions, navigation graphs, view features.

No simulator is needed for discrete R2R: the agent moves between the
viewpoints of a scan's navigation graph, and what it sees at a viewpoint is the
precomputed features of the 36 discretised views of its panorama.

* **Instructions**: ``R2R_{split}.json``, a list of ``{"scan", "path_id",
  "path": [viewpoint ids], "heading", "distance", "instructions": [3 texts]}``.
  Each instruction is one episode, ``instr_id = f"{path_id}_{i}"`` (the R2R
  evaluation script's ids).
* **Navigation graphs**: ``connectivity/{scan}_connectivity.json``, per
  viewpoint ``image_id``, a row-major 4x4 camera ``pose``, ``included``,
  ``unobstructed`` (adjacency by position in the file) and ``height``. As the
  R2R evaluation script's ``load_nav_graphs``
  (peteanderson80/Matterport3DSimulator ``tasks/R2R/utils.py``): an edge joins
  two *included* viewpoints that are mutually unobstructed, weighted by the
  Euclidean distance between the pose translations (``pose[3], pose[7],
  pose[11]``, metres); shortest distances are Dijkstra's over those weights.
* **Navigable neighbours** (:meth:`NavGraph.candidates`), as MatterSim's
  ``Simulator::populateNavigable`` and HAMT's ``make_candidate``
  (cshizhe/VLN-HAMT ``finetune_src/r2r/env.py``): headings are measured from
  the +y axis, clockwise (turning right is positive); a neighbour's heading is
  ``atan2(dx, dy)`` and its elevation ``atan2(dz, |(dx, dy)|)`` between the
  two camera positions. View ``k`` of the 36 looks at heading ``30° * (k %
  12)`` and elevation ``30° * (k // 12 - 1)`` (0-11 down, 12-23 horizon,
  24-35 up). A neighbour belongs to the view, among those whose horizontal
  field of view holds it (MatterSim's test ``cos angle >= cos(vfov * 4/3 / 2)``
  with the 60° vertical FOV of a 640x480 camera), at the smallest angular
  distance ``sqrt(rel_heading² + rel_elevation²)``; ties go to the lower
  index (HAMT keeps the first view and replaces it only when strictly
  closer). This reproduces the simulator's assignment exactly but in float64
  where MatterSim uses float32 (a neighbour within ~1e-6 rad of a view
  boundary could fall the other way; none does on the R2R graphs' 30° grid in
  practice). The agent's heading snaps to the 30° grid as with
  ``setDiscretizedViewingAngles(True)``.
* **View features**: ``{scan}_{viewpoint}`` -> ``(36, D)`` (HAMT's released
  features have this layout) in a folder of ``.npy`` files, one ``.npz``, or
  an HDF5 file (when ``h5py`` is installed). ``internvideo extract
  --vln-views`` computes the folder from view images
  ``views/{scan}/{viewpoint}/{k}.jpg`` (:func:`view_images` lists them).

Every bad input raises :class:`NavigationDataError` naming the file and the
scan, viewpoint, key or field.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ..errors import UserError

NUM_VIEWS = 36
HEADINGS = 12
VIEW_STEP = math.radians(30.0)
#: MatterSim's field-of-view test: cos(vfov * width / height / 2) for the 60° VFOV, 640x480 camera of R2R
COS_HALF_HFOV = math.cos(math.radians(60.0) * 640 / 480 / 2.0)
#: the R2R evaluation script's error margin (metres)
ERROR_MARGIN = 3.0

__all__ = ["Candidate", "Episode", "NUM_VIEWS", "NavGraph", "NavGraphs", "NavigationDataError", "ViewFeatures",
           "direction_features", "read_episodes", "read_r2r", "snap_heading", "view_angles", "view_images",
           "ERROR_MARGIN"]


class NavigationDataError(UserError):
    """A navigation file, scan, viewpoint or feature key that is missing or malformed; the message names it."""


# ----------------------------------------------------------------------------- instructions


@dataclass(frozen=True)
class Episode:
    """One instruction of an R2R path: what the agent is given and where it should go."""

    instr_id: str
    scan: str
    path: tuple[str, ...]
    heading: float
    instruction: str
    path_id: int | str

    @property
    def start(self) -> str:
        return self.path[0]

    @property
    def goal(self) -> str:
        return self.path[-1]


def load_json(path: Path, what: str):
    if not path.exists():
        raise NavigationDataError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise NavigationDataError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None


def read_r2r(path: str | os.PathLike) -> list[dict]:
    """The items of an R2R JSON file, checked for ``scan``, ``path_id``, ``path``, ``heading``, ``instructions``."""
    path = Path(path)
    data = load_json(path, "R2R file")
    if not isinstance(data, list):
        raise NavigationDataError(f"{path}: expected a JSON list of R2R items")
    for i, item in enumerate(data):
        where = f"{path}: item {i}"
        if not isinstance(item, dict):
            raise NavigationDataError(f"{where}: expected an object")
        for key in ("scan", "path_id", "path", "instructions"):
            if key not in item:
                raise NavigationDataError(f"{where}: missing field {key!r}")
        if not isinstance(item["path"], list) or not item["path"] or not all(isinstance(v, str) for v in item["path"]):
            raise NavigationDataError(f"{where}: 'path' must be a non-empty list of viewpoint ids")
        if not isinstance(item["instructions"], list) or not all(isinstance(t, str) for t in item["instructions"]):
            raise NavigationDataError(f"{where}: 'instructions' must be a list of strings")
        heading = item.get("heading", 0.0)
        if not isinstance(heading, (int, float)) or not math.isfinite(heading):
            raise NavigationDataError(f"{where}: 'heading' must be a finite number (radians), got {heading!r}")
    return data


def read_episodes(path: str | os.PathLike) -> list[Episode]:
    """One :class:`Episode` per instruction, ids ``{path_id}_{i}``; a repeated id is an error naming it."""
    episodes, seen = [], set()
    for item in read_r2r(path):
        for i, text in enumerate(item["instructions"]):
            instr_id = f"{item['path_id']}_{i}"
            if instr_id in seen:
                raise NavigationDataError(f"{path}: instruction id {instr_id!r} occurs twice (repeated path_id)")
            seen.add(instr_id)
            episodes.append(Episode(instr_id, str(item["scan"]), tuple(item["path"]),
                                    float(item.get("heading", 0.0)), text, item["path_id"]))
    return episodes


# ----------------------------------------------------------------------------- geometry


def view_angles(index: int) -> tuple[float, float]:
    """(heading, elevation) in radians of discretised view ``index`` (0..35)."""
    return (index % HEADINGS) * VIEW_STEP, (index // HEADINGS - 1) * VIEW_STEP


def snap_heading(heading: float) -> float:
    """MatterSim's discretised heading: the nearest multiple of 30° in [0, 2π)."""
    h = math.fmod(heading, 2 * math.pi)
    if h < 0:
        h += 2 * math.pi
    step = round(h / VIEW_STEP)  # lround: halves away from zero, as round() is only for exact .5 (never here)
    return (0 if step == HEADINGS else step) * VIEW_STEP


def _wrap(angle: np.ndarray | float):
    """Angle in (-π, π], as ``atan2(sin, cos)``."""
    return np.arctan2(np.sin(angle), np.cos(angle))


def direction_features(heading: np.ndarray | float, elevation: np.ndarray | float) -> np.ndarray:
    """HAMT's angle feature ``[sin h, cos h, sin e, cos e]`` (``angle_feat_size=4``), last axis."""
    h, e = np.asarray(heading, dtype=np.float64), np.asarray(elevation, dtype=np.float64)
    return np.stack([np.sin(h), np.cos(h), np.sin(e), np.cos(e)], axis=-1).astype(np.float32)


@dataclass(frozen=True)
class Candidate:
    """A navigable neighbour: its id, the view it falls in, its absolute heading/elevation and distance (m)."""

    viewpoint: str
    view_index: int
    heading: float  # from +y, clockwise, radians (world frame)
    elevation: float
    distance: float


class NavGraph:
    """One scan's navigation graph with all shortest distances (metres) and paths."""

    def __init__(self, scan: str, ids: Sequence[str], positions: np.ndarray, edges: Iterable[tuple[int, int]],
                 source: str = ""):
        from scipy.sparse import csr_matrix
        from scipy.sparse.csgraph import shortest_path

        self.scan, self.source = scan, source or scan
        self.ids = list(ids)
        self.index = {v: i for i, v in enumerate(self.ids)}
        self.positions = np.asarray(positions, dtype=np.float64).reshape(len(self.ids), 3)
        n = len(self.ids)
        self.neighbours: list[list[int]] = [[] for _ in range(n)]
        rows, cols, weights = [], [], []
        for a, b in edges:
            if b in self.neighbours[a]:
                continue
            self.neighbours[a].append(b)
            self.neighbours[b].append(a)
            w = float(np.linalg.norm(self.positions[a] - self.positions[b]))
            # scipy treats an explicit 0 as "no edge"; two viewpoints at one position are 0 m apart anyway
            w = w if w > 0 else 1e-12
            rows += [a, b]
            cols += [b, a]
            weights += [w, w]
        graph = csr_matrix((weights, (rows, cols)), shape=(n, n))
        self.dist, self.pred = shortest_path(graph, method="D", directed=False, return_predecessors=True)
        self.dist[self.dist < 1e-9] = 0.0
        self._candidates: dict[int, list[Candidate]] = {}

    @classmethod
    def from_connectivity(cls, path: str | os.PathLike, scan: str | None = None) -> NavGraph:
        """Read ``{scan}_connectivity.json`` with the R2R evaluation script's rules (see the module doc)."""
        path = Path(path)
        scan = scan or path.name.removesuffix("_connectivity.json")
        data = load_json(path, f"connectivity graph of scan {scan!r}")
        if not isinstance(data, list):
            raise NavigationDataError(f"{path}: expected a JSON list of viewpoints")
        for i, item in enumerate(data):
            for key in ("image_id", "pose", "included", "unobstructed"):
                if key not in item:
                    raise NavigationDataError(f"{path}: viewpoint {i} has no field {key!r}")
            if len(item["pose"]) != 16:
                raise NavigationDataError(f"{path}: viewpoint {item['image_id']!r}: 'pose' must hold 16 numbers "
                                          f"(a row-major 4x4 matrix), got {len(item['pose'])}")
            if len(item["unobstructed"]) != len(data):
                raise NavigationDataError(f"{path}: viewpoint {item['image_id']!r}: 'unobstructed' has "
                                          f"{len(item['unobstructed'])} entries for {len(data)} viewpoints")
        # The script's graph holds the included viewpoints that have at least one edge.
        edges_by_id: list[tuple[str, str]] = []
        for i, item in enumerate(data):
            if not item["included"]:
                continue
            for j, conn in enumerate(item["unobstructed"]):
                if conn and data[j]["included"]:
                    if not data[j]["unobstructed"][i]:
                        raise NavigationDataError(f"{path}: the graph must be undirected: {item['image_id']} -> "
                                                  f"{data[j]['image_id']} is unobstructed but not the reverse")
                    edges_by_id.append((item["image_id"], data[j]["image_id"]))
        ids = sorted({v for e in edges_by_id for v in e})
        index = {v: i for i, v in enumerate(ids)}
        pose = {item["image_id"]: item["pose"] for item in data}
        positions = np.array([[pose[v][3], pose[v][7], pose[v][11]] for v in ids], dtype=np.float64).reshape(-1, 3)
        return cls(scan, ids, positions, [(index[a], index[b]) for a, b in edges_by_id], source=str(path))

    # -- lookups
    def __contains__(self, viewpoint: str) -> bool:
        return viewpoint in self.index

    def _ix(self, viewpoint: str) -> int:
        try:
            return self.index[viewpoint]
        except KeyError:
            raise NavigationDataError(f"viewpoint {viewpoint!r} is not in the navigation graph of scan "
                                      f"{self.scan!r} ({self.source})") from None

    def distance(self, a: str, b: str) -> float:
        """Shortest-path distance in metres (inf when not connected)."""
        return float(self.dist[self._ix(a), self._ix(b)])

    def has_edge(self, a: str, b: str) -> bool:
        return self._ix(b) in self.neighbours[self._ix(a)]

    def shortest_path(self, a: str, b: str) -> list[str]:
        """Viewpoints from ``a`` to ``b`` inclusive along a shortest path."""
        i, j = self._ix(a), self._ix(b)
        if not math.isfinite(self.dist[i, j]):
            raise NavigationDataError(f"scan {self.scan!r}: no path from {a!r} to {b!r}")
        out = [j]
        while out[-1] != i:
            out.append(int(self.pred[i, out[-1]]))
        return [self.ids[k] for k in reversed(out)]

    def next_hop(self, a: str, goal: str) -> str | None:
        """The next viewpoint from ``a`` along a shortest path to ``goal``; None when ``a`` is the goal."""
        path = self.shortest_path(a, goal)
        return path[1] if len(path) > 1 else None

    # -- what the agent can see and where it can go
    def candidates(self, viewpoint: str) -> list[Candidate]:
        """The navigable neighbours of ``viewpoint`` with their view index (cached; order: by view index)."""
        i = self._ix(viewpoint)
        if i not in self._candidates:
            self._candidates[i] = self._make_candidates(i)
        return self._candidates[i]

    def _make_candidates(self, i: int) -> list[Candidate]:
        if not self.neighbours[i]:
            return []
        view_h = np.array([view_angles(k)[0] for k in range(NUM_VIEWS)])
        view_e = np.array([view_angles(k)[1] for k in range(NUM_VIEWS)])
        out = []
        for j in self.neighbours[i]:
            d = self.positions[j] - self.positions[i]
            flat = math.hypot(d[0], d[1])
            heading = math.atan2(d[0], d[1])
            elevation = math.atan2(d[2], flat)
            rel_h = _wrap(heading - view_h)
            rel_e = elevation - view_e
            # MatterSim lists a neighbour in a view only when it lies within the view's horizontal FOV.
            visible = np.cos(rel_h) >= COS_HALF_HFOV if flat > 0 else np.ones(NUM_VIEWS, bool)
            cost = np.where(visible, np.sqrt(rel_h ** 2 + rel_e ** 2), np.inf)
            k = int(np.argmin(cost))  # first minimum: HAMT replaces a view only when strictly closer
            out.append(Candidate(self.ids[j], k, float(view_h[k] + rel_h[k]), float(elevation),
                                 float(np.linalg.norm(d))))
        return sorted(out, key=lambda c: (c.view_index, c.viewpoint))


class NavGraphs:
    """The connectivity folder: ``{scan}_connectivity.json`` read on first use, kept in memory."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise NavigationDataError(f"connectivity folder not found: {self.directory}")
        self._graphs: dict[str, NavGraph] = {}

    def __getitem__(self, scan: str) -> NavGraph:
        if scan not in self._graphs:
            path = self.directory / f"{scan}_connectivity.json"
            if not path.exists():
                raise NavigationDataError(f"scan {scan!r}: no navigation graph {path}")
            self._graphs[scan] = NavGraph.from_connectivity(path, scan)
        return self._graphs[scan]

    def check_episodes(self, episodes: Iterable[Episode], source: object = "") -> None:
        """Every scan and path viewpoint exists (errors name the episode, scan and viewpoint)."""
        for ep in episodes:
            graph = self[ep.scan]
            for vp in ep.path:
                if vp not in graph:
                    raise NavigationDataError(f"{source or 'episode'} {ep.instr_id}: viewpoint {vp!r} is not in "
                                              f"the navigation graph of scan {ep.scan!r} ({graph.source})")


# ----------------------------------------------------------------------------- view features


class ViewFeatures:
    """``{scan}_{viewpoint}`` -> float32 ``(36, D)`` from a folder of ``.npy``, an ``.npz`` or an HDF5 file."""

    def __init__(self, path: str | os.PathLike, cache: bool = True):
        self.path = Path(path)
        self._cache: dict[str, np.ndarray] | None = {} if cache else None
        if self.path.is_dir():
            self._kind = "dir"
        elif not self.path.exists():
            raise NavigationDataError(f"view features not found: {self.path}")
        elif self.path.suffix == ".npz":
            self._kind, self._file = "npz", np.load(self.path)
        elif self.path.suffix in (".h5", ".hdf5", ".hdf"):
            try:
                import h5py
            except ImportError:
                raise NavigationDataError(f"{self.path}: reading HDF5 needs h5py (pip install h5py), or convert the "
                                          "store to a folder of {scan}_{viewpoint}.npy files") from None
            self._kind, self._file = "h5", h5py.File(self.path, "r")
        else:
            raise NavigationDataError(f"{self.path}: view features must be a folder of .npy files, an .npz or an "
                                      f"HDF5 (.h5/.hdf5) file")

    @staticmethod
    def key(scan: str, viewpoint: str) -> str:
        return f"{scan}_{viewpoint}"

    def _read(self, key: str) -> np.ndarray | None:
        if self._kind == "dir":
            f = self.path / f"{key}.npy"
            return np.load(f) if f.exists() else None
        if key not in self._file:
            return None
        return np.asarray(self._file[key][...])

    def __call__(self, scan: str, viewpoint: str) -> np.ndarray:
        key = self.key(scan, viewpoint)
        if self._cache is not None and key in self._cache:
            return self._cache[key]
        feats = self._read(key)
        if feats is None:
            raise NavigationDataError(f"{self.path}: no view features for key {key!r} (scan {scan!r}, viewpoint "
                                      f"{viewpoint!r})")
        if feats.ndim != 2 or feats.shape[0] != NUM_VIEWS:
            raise NavigationDataError(f"{self.path}: features {key!r} have shape {tuple(feats.shape)}; expected "
                                      f"({NUM_VIEWS}, D), one row per discretised view")
        feats = np.ascontiguousarray(feats, dtype=np.float32)
        if not np.isfinite(feats).all():
            raise NavigationDataError(f"{self.path}: features {key!r} hold NaN or inf")
        if self._cache is not None:
            self._cache[key] = feats
        return feats

    @cached_property
    def dim(self) -> int:
        """Feature width D, from the first stored entry."""
        if self._kind == "dir":
            first = next(iter(sorted(self.path.glob("*.npy"))), None)
            if first is None:
                raise NavigationDataError(f"{self.path}: no .npy view features in the folder")
            return int(np.load(first, mmap_mode="r").shape[-1])
        keys = list(self._file.keys())
        if not keys:
            raise NavigationDataError(f"{self.path}: the feature store is empty")
        return int(self._file[keys[0]].shape[-1])


def _subfolders(path: Path) -> list[Path]:
    out = []
    for p in sorted(path.iterdir()):
        if p.name.startswith("."):
            continue  # .DS_Store and the like
        if not p.is_dir():
            raise NavigationDataError(f"{p}: expected only folders here (views/{{scan}}/{{viewpoint}}/{{k}}.jpg)")
        out.append(p)
    return out


def view_images(root: str | os.PathLike) -> dict[tuple[str, str], list[Path]]:
    """``(scan, viewpoint)`` -> the 36 images ``root/{scan}/{viewpoint}/{k}.jpg`` in view order ``k = 0..35``.

    A missing view, or any other file in a viewpoint's folder, is an error naming the scan, viewpoint and view.
    """
    root = Path(root)
    if not root.is_dir():
        raise NavigationDataError(f"view image folder not found: {root}")
    expected = {f"{k}.jpg": k for k in range(NUM_VIEWS)}
    out: dict[tuple[str, str], list[Path]] = {}
    for scan_dir in _subfolders(root):
        for vp_dir in _subfolders(scan_dir):
            where = f"{vp_dir}: scan {scan_dir.name!r}, viewpoint {vp_dir.name!r}"
            names = {p.name for p in vp_dir.iterdir() if not p.name.startswith(".")}
            extra = sorted(names - expected.keys())
            if extra:
                raise NavigationDataError(f"{where}: unexpected file {extra[0]!r} (views are 0.jpg .. "
                                          f"{NUM_VIEWS - 1}.jpg)")
            missing = [k for name, k in expected.items() if name not in names]
            if missing:
                raise NavigationDataError(f"{where}: view k={missing[0]} ({missing[0]}.jpg) is missing"
                                          + (f", and {len(missing) - 1} more" if len(missing) > 1 else ""))
            out[scan_dir.name, vp_dir.name] = [vp_dir / f"{k}.jpg" for k in range(NUM_VIEWS)]
    if not out:
        raise NavigationDataError(f"{root}: no view images (expected {{scan}}/{{viewpoint}}/{{k}}.jpg, k = 0..35)")
    return out
