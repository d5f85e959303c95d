"""Profile writer: merge measured blocks into a base profile, record provenance, validate, write atomically.

A calibration run measures some numbers and not others (latency does not measure prices or
quality; quality does not measure step times). The writer starts from a base profile (a shipped
one such as ``sdxl-a10g`` or an earlier calibration output), replaces what was measured, marks it
``kind: measured``, and lists under each touched block's ``fields:`` where every other number came
from, so a carried-over figure keeps its original ``kind`` and ``source``. The result must pass
:func:`sim.base.profile.parse_profile` before anything is written.
"""

from __future__ import annotations

import copy
import datetime as dt
import importlib.metadata
import math
import platform
import sys
from pathlib import Path
from typing import Any

import torch
import yaml

from sim.base.errors import InputError
from sim.base.io import atomic_write_text, check_own_file
from sim.base.machine import cpu_name
from sim.base.profile import Profile, load_profile, parse_profile

MEASURED = "measured"


def load_base(name_or_path: str) -> dict[str, Any]:
    """The raw mapping of a valid base profile (shipped name or path), deep-copied for editing."""
    profile = load_profile(name_or_path)
    data = copy.deepcopy(profile.raw)
    data["_base_name"] = str(name_or_path)
    return data




def _version(pkg: str) -> str | None:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment(device: torch.device | str) -> dict[str, Any]:
    """Hardware, library versions and date of a calibration run on ``device``."""
    device = torch.device(device)
    env: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "device": str(device),
        "cpu": cpu_name(),
        "cpu_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": {p: _version(p) for p in ("torch", "diffusers", "transformers", "acsim")},
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env["gpu"] = props.name
        env["gpu_memory_bytes"] = int(props.total_memory)
        env["cuda"] = torch.version.cuda
    return env


def hardware_name(env: dict[str, Any]) -> str:
    """The name a profile's ``gpu.name`` gets: the GPU, or ``CPU (<model>)`` on a CPU run."""
    return env.get("gpu") or f"CPU ({env['cpu']})"


def carried(block: dict[str, Any], fields: list[str], base_name: str) -> dict[str, dict[str, str]]:
    """Provenance entries for ``fields`` of a base ``block`` that a run did not measure."""
    kind = block.get("kind", "assumed")
    source = f"carried over from base profile {base_name}: {block.get('source', 'no source given')}"
    prior = block.get("fields") or {}
    out = {}
    for f in fields:
        # A field that was itself carried or measured earlier keeps that earlier provenance.
        out[f] = prior.get(f, {"kind": kind, "source": source})
    return out


def to_plain(obj: Any) -> Any:
    """Numpy/torch scalars and tuples -> plain YAML-safe Python values."""
    if isinstance(obj, dict):
        return {(k if isinstance(k, str | int) else str(k)): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_plain(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):
        obj = obj.item()
    if isinstance(obj, float):
        # YAML null for a quantity that could not be computed; 6 significant digits for the rest.
        return None if math.isnan(obj) else float(f"{obj:.6g}")
    return obj


def finish(data: dict[str, Any], name: str, description: str, calibration: dict[str, Any]) -> dict[str, Any]:
    """Set name, description, creation date and the run's provenance; drop writer-internal keys."""
    data = copy.deepcopy(data)
    base = data.pop("_base_name", None)
    data["name"] = name
    data["description"] = description
    data["created"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    runs = list(data.get("calibration_runs") or [])
    runs.append({**calibration, "base_profile": base})
    data["calibration_runs"] = runs
    return to_plain(data)


PROFILE_HEADER = "# acsim calibration profile written by `acsim calibrate`; schema acsim-profile/1.\n"
LADDER_HEADER = "# A similarity->K ladder carried to another embedder (selector.carried: true uses it).\n"
_HEADERS = {"profile": PROFILE_HEADER, "ladder": LADDER_HEADER}


def written_by_acsim(path: Path, kind: str) -> bool:
    """Whether ``path`` is a ``kind`` file (profile or ladder) that ``acsim calibrate`` wrote."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.readline() == _HEADERS[kind]
    except (OSError, UnicodeDecodeError):
        return False


def check_out(path: str | Path, flag: str = "--out", kind: str = "profile") -> None:
    """Raise unless ``path`` can take a ``kind`` file (profile or ladder): a writable ``.yaml`` path
    that is free or holds a file of that kind acsim wrote, checked before measuring; ``flag`` is
    the option named in the error."""
    dest = Path(path)
    check_own_file(dest, flag, f"calibration {kind}", lambda p: written_by_acsim(p, kind))
    if dest.suffix not in (".yaml", ".yml"):
        raise InputError(dest, f"written as YAML: give {flag} a .yaml path")


def write_profile(path: str | Path, data: dict[str, Any]) -> Profile:
    """Validate ``data`` with :func:`sim.base.profile.parse_profile`, then write it as YAML atomically."""
    dest = Path(path)
    check_out(dest)
    profile = parse_profile(data, dest)
    atomic_write_text(dest, PROFILE_HEADER + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110))
    return profile


def profile_name(out: str | Path) -> str:
    """A profile's name from its output path (``results/my-gpu.yaml`` -> ``my-gpu``)."""
    return Path(out).stem
