"""A clean virtual environment with only the core dependencies builds, trains and evaluates; extras say what's missing.

Slow (installs a venv from the package index; torch comes from the local wheel
cache as in ``make``): run with ``-m slow``.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def core_requirements() -> list[str]:
    """The pinned lines of requirements.txt before its optional extras."""
    text = (ROOT / "requirements.txt").read_text().split("# Optional extras")[0]
    return [line.strip() for line in text.splitlines() if re.match(r"^[A-Za-z0-9_.-]+==", line.strip())]


def test_core_requirements_exclude_every_extra():
    import tomllib

    from internvideo.extras import EXTRAS

    core = {line.split("==")[0].lower() for line in core_requirements()}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[<>=\[ ]", d)[0].lower() for d in project["dependencies"]}
    extras = project["optional-dependencies"]
    assert set(EXTRAS) <= set(extras) and "internvideo[search,caption,export]" in extras["all"]
    for name in ("faiss-cpu", "fastapi", "uvicorn", "pycocoevalcap", "onnx", "onnxruntime", "huggingface_hub"):
        assert name not in core and name not in declared, name
    assert declared - {"torch"} <= core  # every core dependency is pinned for make


@pytest.mark.slow
def test_core_only_venv_trains_and_evaluates(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")

    def run(*args, check=True, **kw):
        kw.setdefault("env", env)
        proc = subprocess.run(list(args), cwd=tmp_path, capture_output=True, text=True, timeout=1200, **kw)
        if check:
            assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        return proc

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing from the test's environment
    run(py, "-m", "pip", "install", "-q", "torch==2.13.0", *core_requirements())
    run(py, "-m", "pip", "install", "-q", "--no-deps", "-e", str(ROOT))
    # (huggingface_hub is no test: tokenizers, a core dependency, depends on it)
    for module in ("faiss", "fastapi", "uvicorn", "pycocoevalcap", "onnx", "onnxruntime"):
        assert run(py, "-c", f"import {module}", check=False).returncode != 0, f"{module} is in the core install"
    cli = str(venv / "bin" / "internvideo")
    run(py, "-c", "import internvideo; m = internvideo.create_model('videomae_tiny'); print(m.config.num_classes)")
    run(cli, "synth", "world", "--videos", "20", "--size", "32", "--frames", "8", "--long", "0", "--ava", "0",
        "--images", "0")
    run(cli, "train", "--set", "objective=classify", "model.name=videomae_tiny", "data.root=world",
        "data.train=train.txt", "data.val=val.txt", "run.out_dir=run", "run.max_steps=2", "run.batch_size=4",
        "run.progress=false", "data.num_workers=0")
    checkpoint = json.loads((tmp_path / "run" / "summary.json").read_text())["checkpoint"]
    out = run(cli, "eval", "recognition", "--model", checkpoint, "--data", "world/val.txt", "--out", "r.json",
              "--no-progress")
    assert "top-1" in out.stdout and json.loads((tmp_path / "r.json").read_text())["num_samples"] > 0
    missing = run(cli, "index", "world/videos", "--model", "internvideo_mm_tiny", "--out", "idx", check=False)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1].endswith("pip install 'internvideo[search]'"), missing.stderr
