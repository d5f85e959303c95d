"""The arguments every command that reads an experiment file takes: the file and ``--set``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse


def add_config_args(p: argparse.ArgumentParser, file_help: str = "experiment YAML file") -> None:
    """Add the positional experiment file and the repeatable ``--set FIELD.PATH=VALUE`` override."""
    p.add_argument("file", type=Path, help=file_help)
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD.PATH=VALUE",
        help="override any config field by its dotted path (repeatable), e.g. --set cache.capacity=1500",
    )
