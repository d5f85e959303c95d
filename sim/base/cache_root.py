"""Where acsim caches what it builds once: embeddings, neighbour lists, traces, models.

One root, ``$ACSIM_CACHE`` or ``~/.cache/acsim``; each kind of artefact has a folder under it.
"""

from __future__ import annotations

import os
from pathlib import Path

from sim.base.errors import ConfigError


def cache_root() -> Path:
    """``$ACSIM_CACHE``, else ``~/.cache/acsim``; ConfigError when it is a file."""
    path = Path(os.environ.get("ACSIM_CACHE") or Path.home() / ".cache" / "acsim")
    if path.exists() and not path.is_dir():
        raise ConfigError("ACSIM_CACHE", str(path), "is a file; the cache must be a directory")
    return path
