"""Models by Hugging Face hub id: ``hf:ORG/NAME`` (optionally ``@REVISION``) -> a local snapshot directory.

Downloaded with ``huggingface_hub.snapshot_download`` into its usual cache
(``HF_HUB_CACHE``/``HF_HOME``), so a model fetched once is reused, and
``HF_HUB_OFFLINE=1`` serves it from the cache without touching the network.
The directory is then loaded like any local one (ours or an HF transformers
directory).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from ..extras import require
from .base import CheckpointError

HUB_PREFIX = "hf:"
_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

__all__ = ["HUB_PREFIX", "HubError", "download", "is_hub_id", "parse_hub_id"]


class HubError(CheckpointError):
    """A hub id that cannot be resolved (malformed, unknown, or not cached while offline)."""


def is_hub_id(spec: object) -> bool:
    return isinstance(spec, str) and spec.startswith(HUB_PREFIX)


def parse_hub_id(spec: str) -> tuple[str, str | None]:
    """``hf:ORG/NAME[@REVISION]`` -> ``(ORG/NAME, REVISION or None)``."""
    body = spec[len(HUB_PREFIX):]
    repo, _, revision = body.partition("@")
    if not _REPO.match(repo) or (_ and not revision):
        raise HubError(f"{spec!r} is not a hub id: expected hf:ORG/NAME or hf:ORG/NAME@REVISION "
                       "(a branch, tag or commit)")
    return repo, revision or None


def _offline() -> bool:
    # Read at call time: huggingface_hub reads it once at import.
    hub = require("huggingface_hub", "export", "loading a model by hub id")
    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return env or bool(hub.constants.HF_HUB_OFFLINE)


def download(spec: str) -> Path:
    """The local snapshot directory of hub id ``spec`` (downloaded unless cached, or offline)."""
    repo, revision = parse_hub_id(spec)
    hub = require("huggingface_hub", "export", "loading a model by hub id")
    offline = _offline()
    errors = hub.errors
    try:
        path = hub.snapshot_download(repo, revision=revision, cache_dir=os.environ.get("HF_HUB_CACHE") or None,
                                     local_files_only=offline, library_name="internvideo")
    except errors.LocalEntryNotFoundError:
        pinned = f" --revision {revision}" if revision else ""
        why = ("downloads are off (HF_HUB_OFFLINE)" if offline else
               "the hub could not be reached")  # huggingface_hub falls back to the cache when offline by accident
        raise HubError(f"{spec}: not in the Hugging Face cache and {why}; download it on a machine with network "
                       f"first: hf download {repo}{pinned} (then copy the cache or point HF_HUB_CACHE at it)"
                       + (", or unset HF_HUB_OFFLINE" if offline else "")) from None
    except errors.RevisionNotFoundError:
        raise HubError(f"{spec}: the repository {repo} has no revision {revision!r}") from None
    except errors.RepositoryNotFoundError:
        raise HubError(f"{spec}: no model repository {repo} on the hub (or it is private: log in with "
                       "`hf auth login`)") from None
    return Path(path)
