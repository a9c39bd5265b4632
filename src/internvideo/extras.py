"""Optional extras: which ``pip install internvideo[EXTRA]`` provides a module, and the one-line error when it is missing.

The core install (models, training, recognition and the other core
evaluations) needs none of them. ``make demo`` / ``make test`` install
everything, pinned (requirements.txt, requirements-test.txt).
"""
from __future__ import annotations

import importlib
from types import ModuleType

from .errors import UserError

#: extra -> the modules it installs (the pip names are in pyproject.toml)
EXTRAS: dict[str, tuple[str, ...]] = {
    "search": ("faiss", "fastapi", "uvicorn"),
    "caption": ("pycocoevalcap",),
    "export": ("onnx", "onnxruntime", "onnxscript", "huggingface_hub"),
}

__all__ = ["EXTRAS", "MissingExtra", "require"]


class MissingExtra(UserError, ImportError):
    """A command needs an optional dependency that is not installed; the message names the extra to install."""


def require(module: str, extra: str, needed_for: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtra` saying ``pip install 'internvideo[extra]'``."""
    if module.split(".")[0] not in EXTRAS[extra]:
        raise ValueError(f"{module} is not part of the {extra!r} extra ({', '.join(EXTRAS[extra])})")
    try:
        return importlib.import_module(module)
    except ImportError as e:
        if e.name is not None and not module.startswith(e.name) and e.name.split(".")[0] not in EXTRAS[extra]:
            raise  # a broken install of something else, not a missing extra
        raise MissingExtra(f"{needed_for} needs {module.split('.')[0]}, which is not installed: "
                           f"pip install 'internvideo[{extra}]'") from None
