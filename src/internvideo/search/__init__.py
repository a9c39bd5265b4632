"""Text-to-video search over a folder of videos.

* :mod:`.index` — ``internvideo index FOLDER --model DIR``: windows, embeddings, SQLite rows, FAISS, thumbnails.
* :mod:`.query` — ``internvideo search INDEX_DIR "query"``: prompt-ensembled text queries.
* :mod:`.server` — ``internvideo serve INDEX_DIR``: a FastAPI app and a single web page.

Each module has ``add_arguments(parser)`` / ``main(args)`` for its command.
"""
from __future__ import annotations

from .index import build_index
from .query import SEARCH_TEMPLATES, Hit, Searcher
from .store import SearchIndexError

__all__ = ["build_index", "Searcher", "Hit", "SEARCH_TEMPLATES", "SearchIndexError"]
