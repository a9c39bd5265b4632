"""The README's snippets run as written (like doctest): Python blocks executed, commands checked."""

from __future__ import annotations

import ast
import os
import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_python_snippets():
    assert len(_blocks("python")) >= 2


@pytest.mark.slow
def test_readme_python_snippets_run_in_order(tmp_path, monkeypatch):
    # One namespace for all blocks: later snippets use the imports of the first, as a reader's session would.
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    for number, block in enumerate(_blocks("python")):
        exec(compile(block, f"README.md python block {number}", "exec"), namespace)
    assert (tmp_path / "my_model" / "config.json").is_file()


def _alternatives(block: str) -> list[str]:
    """Commented-out alternative lines (``#   call(...)``): real checkpoints the reader must download."""
    return [line.strip()[1:].strip() for line in block.splitlines()
            if re.match(r"\s*#\s{2,}\S+\s*(=|\()", line) or re.match(r"\s*#\s{2,}internvideo\.", line)]


def test_readme_alternative_lines_call_real_api():
    import internvideo

    names = set(internvideo.list_models())
    calls = [line for block in _blocks("python") for line in _alternatives(block)]
    assert calls, "the README should show the real-checkpoint lines as marked alternatives"
    for line in calls:
        code = line.split("  (")[0]  # drop a trailing explanation in parentheses
        tree = ast.parse(code)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    isinstance(node.func.value, ast.Name) and node.func.value.id == "internvideo":
                assert hasattr(internvideo, node.func.attr), line
                if node.func.attr == "create_model":
                    assert node.args[0].value in names, line


def test_readme_has_no_bare_placeholders():
    # Placeholder paths may appear only on commented alternative lines, never in code that runs.
    for block in _blocks("python"):
        for line in block.splitlines():
            code = line.split("#")[0]
            assert not re.search(r"checkpoint\.pth|path/to|ViT-L-14\.pt", code), line


def test_readme_commands_are_real_subcommands():
    from internvideo.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    commands = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#")[0].strip()
            words = shlex.split(line) if line else []
            if words[:1] == ["internvideo"] and len(words) > 1:
                commands.append(words[1])
    assert {"train", "synth"} <= set(commands)
    for name in commands:
        assert name in sub.choices, f"README runs `internvideo {name}`, which is no sub-command"


def test_readme_points_to_the_tiny_configs():
    text = README.read_text(encoding="utf-8")
    assert "configs/tiny/" in text
    for cfg in re.findall(r"configs/tiny/\w+\.yaml", text):
        assert (README.parent / cfg).is_file(), cfg


def test_tiny_configs_keep_their_data_inside_the_working_folder():
    import yaml

    for cfg in sorted((README.parent / "configs" / "tiny").glob("*.yaml")):
        data = yaml.safe_load(cfg.read_text())
        root = data["data"]["root"]
        assert not os.path.isabs(root), f"{cfg.name}: data.root {root!r} points outside the working folder"
        assert "python -c" not in cfg.read_text(), f"{cfg.name}: tell users to run `internvideo synth`"


def test_help_shows_defaults():
    from internvideo.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    text = sub.choices["synth"].format_help()
    assert "(default: 600)" in text and "(default: 0)" in text
    assert "(default: False)" not in sub.choices["demo"].format_help()
