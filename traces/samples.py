"""The trace samples that ship inside acsim (``traces/data/``), named ``sample:FILE``.

A path written ``sample:diffusiondb_2m_first1k.csv`` in an experiment file or on the command line
is the packaged file of that name, wherever acsim is installed; any other path is a path. The
name stays in the resolved config (it means the same file on every machine); only the reader
turns it into a file system path, through :func:`resolve`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from sim.base.errors import ConfigError, did_you_mean

PREFIX = "sample:"


def sample_dir() -> Path:
    """The directory of the packaged samples."""
    return Path(str(resources.files("traces") / "data"))


def sample_names() -> list[str]:
    """File names of the shipped samples (the README beside them excluded)."""
    return sorted(p.name for p in sample_dir().iterdir() if p.is_file() and p.name != "README.md")


def is_sample(path: str | Path) -> bool:
    """Whether ``path`` names a shipped sample (``sample:FILE``)."""
    return isinstance(path, str) and path.startswith(PREFIX)


def resolve(path: str | Path, field: str = "trace.path") -> Path:
    """The file ``path`` names: a shipped sample's packaged file, or ``path`` itself.

    ConfigError naming ``field`` for a ``sample:`` name that is not shipped.
    """
    if not is_sample(path):
        return Path(path)
    name = str(path)[len(PREFIX) :]
    names = sample_names()
    if name not in names:
        raise ConfigError(
            field, str(path), "allowed samples: " + ", ".join(PREFIX + n for n in names), did_you_mean(name, names)
        )
    return sample_dir() / name
