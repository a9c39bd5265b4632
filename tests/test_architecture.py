"""The package's layers stay one-way, and every named model builds, runs and round-trips.

Data flows one way: ``data``, ``models`` -> ``checkpoints`` -> ``factory`` ->
``train`` / ``tasks`` -> ``search``, ``experiments``, ``demo`` -> ``cli``. Checked on
the source (every import, at module level or inside functions), so a violation
fails here rather than as an import cycle somewhere else; import circles
inside a layer are refused too.
"""
from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import torch

import internvideo
from internvideo.models import NAMED_CONFIGS, list_models
from internvideo.models.protocols import Localizer, MaskedVideoModel, VideoClassifier, VideoLanguageModel, VideoModel

PACKAGE = Path(internvideo.__file__).parent

#: layer -> layers it must never import
_APPS = {"search", "experiments", "demo", "cli"}
FORBIDDEN = {
    "models": {"data", "tasks", "train", "checkpoints", "factory"} | _APPS,
    "data": {"models", "tasks", "train", "checkpoints", "factory"} | _APPS,
    "checkpoints": {"data", "tasks", "train", "factory"} | _APPS,
    "factory": {"data", "tasks", "train"} | _APPS,
    "tasks": {"train"} | _APPS,
    "train": _APPS,
    "search": {"experiments", "demo", "cli"},
    "experiments": {"search", "demo", "cli"},
    "demo": {"cli"},
    "constants": {"models", "data", "tasks", "train", "checkpoints", "factory", "errors"} | _APPS,
    # extras.py (which extra provides a module) sits beside errors.py: every layer may import it
    "extras": {"models", "data", "tasks", "train", "checkpoints", "factory", "constants", "recipe"} | _APPS,
    "errors": {"models", "data", "tasks", "train", "checkpoints", "factory", "constants"} | _APPS,
    "recipe": {"models", "data", "tasks", "train", "checkpoints", "factory"} | _APPS,  # below models and data
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import; ``from X import name`` yields ``X.name`` when that is a module."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for a in node.names:
                sub = f"{target}.{a.name}"
                is_module = (PACKAGE.parent / Path(*sub.split("."))).with_suffix(".py").exists() or \
                    (PACKAGE.parent / Path(*sub.split(".")) / "__init__.py").exists()
                out.append((node.lineno, sub if is_module else target))
    return out


def _violations() -> list[str]:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        me = _module_name(path)
        if me == "internvideo":
            continue
        layer = me.split(".")[1]
        for line, target in _imports(path):
            if target == "internvideo":
                bad.append(f"{me}:{line} imports the package root")
                continue
            if not target.startswith("internvideo."):
                continue
            other = target.split(".")[1]
            if other in FORBIDDEN.get(layer, set()):
                bad.append(f"{me}:{line} ({layer}) imports {target} ({other})")
    return bad


def test_imports_follow_the_layers():
    assert _violations() == []


def _import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (inside functions too: a lazy import circle is still a circle)."""
    return {_module_name(p): {t for _, t in _imports(p) if t.startswith("internvideo.")}
            for p in sorted(PACKAGE.rglob("*.py"))}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import circles between modules (a package importing its own submodules is not a circle)."""
    found, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt.startswith(node + "."):
                continue  # a package's __init__ re-exporting its modules
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                if not any(m.startswith(c + ".") for c in cycle for m in cycle):
                    found.append(cycle)
            elif nxt in graph and not state.get(nxt):
                visit(nxt, stack + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if not state.get(module):
            visit(module, [module])
    return found


def test_no_import_circles():
    graph = _import_graph()
    assert "internvideo.tasks.common" in graph["internvideo.search.query"]  # the graph sees real imports
    assert _circles(graph) == []


def test_the_circle_check_catches_a_circle():
    assert _circles({"internvideo.a": {"internvideo.b"}, "internvideo.b": {"internvideo.a"}}) == \
        [["internvideo.a", "internvideo.b", "internvideo.a"]]


def test_the_layer_check_catches_a_violation(tmp_path, monkeypatch):
    # The checker itself must be able to fail: a fake models module importing the trainer and the root.
    fake = tmp_path / "internvideo"
    (fake / "models").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "models" / "__init__.py").write_text("")
    (fake / "models" / "bad.py").write_text("import internvideo\n\ndef f():\n    from ..train import loop\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    found = _violations()
    assert any("imports the package root" in v for v in found)
    assert any("internvideo.train" in v for v in found)


# ----------------------------------------------------------------------------- the registry


@pytest.mark.parametrize("name", list_models())
def test_every_named_config_builds_on_the_meta_device(name):
    with torch.device("meta"):
        model = internvideo.create_model(name)
    assert sum(p.numel() for p in model.parameters()) > 0
    if isinstance(model, Localizer):  # reads feature sequences, not clips
        assert not isinstance(model, VideoModel) and model.config.input_dim > 0
        return
    assert isinstance(model, VideoModel)
    recipe = model.input_recipe()
    assert recipe.num_frames == model.config.num_frames and recipe.img_size == model.config.img_size


def _parameters(name: str) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in internvideo.create_model(name).parameters())


#: every named model small enough to run here (the *_tiny configs, the small and ActivityNet localizers)
TINY = [n for n in list_models() if _parameters(n) < 10_000_000]


def _run(model: torch.nn.Module) -> torch.Tensor:
    """One forward pass on (seeded) random input of the model's kind; its outputs."""
    from internvideo.models.videomae import tube_mask

    g = torch.Generator().manual_seed(1)

    if isinstance(model, Localizer):
        width = model.config.input_dim
        feats, mask = model.pad([torch.randn(24, width, generator=g), torch.randn(13, width, generator=g)])
        out = model(feats, mask)
        assert [x.shape[:2] for x in out["cls_logits"]] == [m.shape for m in out["masks"]]
        return torch.cat([x.flatten() for x in out["cls_logits"] + out["offsets"]])
    r = model.input_recipe()
    video = torch.randn(2, 3, r.num_frames, r.img_size, r.img_size, generator=g)
    if isinstance(model, MaskedVideoModel):
        mask = tube_mask(2, model.config.grid, model.config.mask_ratio, g)
        return model(video, mask)["loss"][None]
    if isinstance(model, VideoLanguageModel):
        ids = internvideo.get_tokenizer("clip", context_length=model.config.context_length)(["a", "b c"])
        out = torch.cat([model.encode_video(video), model.encode_text(ids)])
        assert out.shape == (4, model.config.embed_dim)
        return out
    assert isinstance(model, VideoClassifier)
    tokens = model.forward_features(video)
    assert tokens.ndim == 3 and tokens.shape[0] == 2
    out = model.forward_head(tokens)
    torch.testing.assert_close(out, model(video))
    assert out.shape == (2, model.config.num_classes)
    return out


def test_the_localizers_are_in_the_registry():
    assert {"actionformer_thumos14", "actionformer_activitynet", "actionformer_small"} <= set(list_models())
    assert {"actionformer_small", "videomae_tiny", "internvideo_mm_tiny"} <= set(TINY)


@pytest.mark.parametrize("name", TINY)
def test_every_tiny_model_runs_and_round_trips(name, tmp_path):
    torch.manual_seed(0)
    model = internvideo.create_model(name).eval()
    with torch.no_grad():
        out = _run(model)
    assert torch.isfinite(out).all()
    internvideo.save_model(model, tmp_path / "m")
    loaded = internvideo.load_model(tmp_path / "m").eval()
    assert type(loaded) is type(model)
    assert dataclasses.asdict(loaded.config) == dataclasses.asdict(model.config)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v, rtol=0, atol=0)
    if isinstance(model, VideoModel):
        assert loaded.input_recipe() == model.input_recipe()
    with torch.no_grad():
        torch.testing.assert_close(_run(loaded), out)


def test_the_registry_lists_every_family():
    classes = {cls.__name__ for cls, _ in NAMED_CONFIGS.values()}
    assert {"VideoMAEPretrain", "VideoMAEClassifier", "InternVideoMM", "VideoMAEDetector", "ActionLocalizer"} <= classes
