"""Calibration profile: the real-world numbers the engine runs on.

The schema (``acsim-profile/1``) is shared with ``calibrate/``, which writes profiles that
this module reads back. Every block carries ``source`` and ``kind`` (measured, published or
assumed) so a result can always say where its numbers came from. Shipped profiles live in
``calibrate/profiles/<name>.yaml``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sim.base.errors import ConfigError, InputError

SCHEMA = "acsim-profile/1"
PROFILE_DIR = Path(__file__).resolve().parents[2] / "calibrate" / "profiles"
KINDS = ("measured", "published", "assumed")


@dataclass(frozen=True)
class Tier:
    """One storage tier a cached latent can be fetched from."""

    name: str
    latency_s: float
    bandwidth_Bps: float
    capacity_bytes: float | None
    price_per_gb_month_usd: float

    def fetch_s(self, nbytes: float) -> float:
        """Seconds to read ``nbytes`` from this tier."""
        return self.latency_s + nbytes / self.bandwidth_Bps


@dataclass(frozen=True)
class Profile:
    """A validated calibration profile (see ``calibrate/profiles/sdxl-a10g.yaml``)."""

    name: str
    steps: int
    latent_bytes: int
    gpu_name: str
    gpu_price_per_hour_usd: float
    denoise_step_s: dict[int, float]
    save_overhead_step_s: float
    text_encoder_s: float
    vae_decode_s: float
    embed_s: float
    index_lookup_base_s: float
    index_lookup_per_decade_s: float
    ladder: tuple[tuple[float, int], ...]  # (threshold, K), thresholds descending
    k_levels: tuple[int, ...]
    quality_vanilla: float
    quality_relative_by_k: dict[int, float]
    retrieval_at_1: float
    retrieval_slope_per_unit_s: float
    quality_exact: float
    tiers: dict[str, Tier]
    default_tier: str
    index_per_hour_usd: float
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    def step_s(self, batch: int = 1) -> float:
        """Seconds per denoising step for a batch, interpolated linearly between profiled sizes.

        Beyond the largest profiled batch the cost per image of that batch is held
        (no silent optimistic extrapolation).
        """
        sizes = sorted(self.denoise_step_s)
        if batch in self.denoise_step_s:
            return self.denoise_step_s[batch]
        if batch < sizes[0]:
            return self.denoise_step_s[sizes[0]]
        if batch > sizes[-1]:
            big = sizes[-1]
            return self.denoise_step_s[big] * batch / big
        j = bisect.bisect_left(sizes, batch)
        lo, hi = sizes[j - 1], sizes[j]
        w = (batch - lo) / (hi - lo)
        return self.denoise_step_s[lo] * (1 - w) + self.denoise_step_s[hi] * w

    def quality_for_k(self, k: int) -> float:
        """Expected CLIP score of an image whose first ``k`` steps came from a cached latent."""
        return self.quality_vanilla * self.quality_relative_by_k[k]

    def quality_retrieval(self, similarity: float) -> float:
        """Expected CLIP score of a retrieved image (another prompt's final image).

        Similarities are float32 cosines, so an identical prompt may score a hair above 1: it
        counts as 1 (a retrieved image is never better than the prompt's own).
        """
        return self.retrieval_at_1 - self.retrieval_slope_per_unit_s * (1.0 - min(similarity, 1.0))



def resolve_path(name_or_path: str) -> Path:
    """A shipped profile name (``sdxl-a10g``) or a path to a profile YAML."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    return PROFILE_DIR / f"{name_or_path}.yaml"


def shipped_profiles() -> list[str]:
    """Names of the profiles that ship with acsim."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def gpu_types(model_profile: str) -> dict[str, str]:
    """GPU type (lower-case ``gpu.name``) -> profile, for the model of ``model_profile``.

    The profile itself and every shipped profile of the same model (``model.name``, resolution
    and steps) qualify; the given profile wins for its own GPU type, so a custom profile of a
    shipped model keeps its numbers.
    """
    base = load_profile(model_profile)

    def model_of(p: Profile) -> tuple[object, ...]:
        m = p.raw.get("model") or {}
        return (m.get("name"), m.get("resolution"), p.steps)

    out: dict[str, str] = {}
    for name in shipped_profiles():
        p = load_profile(name)
        if model_of(p) == model_of(base):
            out.setdefault(p.gpu_name.lower(), name)
    out[base.gpu_name.lower()] = model_profile
    return out


def profile_for_gpu(model_profile: str, gpu: str, field: str) -> str:
    """The profile of ``model_profile``'s model on GPU type ``gpu`` (any case); ConfigError naming ``field``."""
    types = gpu_types(model_profile)
    found = types.get(str(gpu).strip().lower())
    if found is None:
        raise ConfigError(
            field,
            gpu,
            f"no profile of the model of {model_profile!r} on that GPU; GPU types: {', '.join(sorted(types))}",
            "add a profile with that gpu.name to calibrate/profiles, or give a profile path",
        )
    return found


def load_profile(name_or_path: str) -> Profile:
    """Load and validate a profile by shipped name or path."""
    path = resolve_path(name_or_path)
    if not path.is_file():
        raise InputError(
            path, f"profile {name_or_path!r} not found; shipped profiles: {', '.join(shipped_profiles())}"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not a readable YAML profile: {exc}") from None
    return parse_profile(data, path)


def _get(data: dict[str, Any], dotted: str, path: Path, kind: type | tuple[type, ...] = (int, float)) -> Any:
    node: Any = data
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            raise InputError(path, f"profile field {dotted!r} is missing")
        node = node[key]
    if not isinstance(node, kind) or isinstance(node, bool):
        raise InputError(path, f"profile field {dotted!r} = {node!r} has the wrong type")
    return node


def _check_provenance(data: dict[str, Any], path: Path) -> None:
    for block in ("model", "gpu", "latency", "ladder", "quality"):
        b = data.get(block)
        if not isinstance(b, dict) or not b.get("source"):
            raise InputError(path, f"profile block {block!r} must carry a 'source:' note")
        if b.get("kind") not in KINDS:
            raise InputError(path, f"profile block {block!r}: kind must be one of {', '.join(KINDS)}")


def parse_profile(data: Any, path: Path | str = "<profile>") -> Profile:
    """Validate a profile mapping (as written by ``calibrate``) into a :class:`Profile`."""
    path = Path(path)
    if not isinstance(data, dict):
        raise InputError(path, "a profile must be a YAML mapping")
    if data.get("schema") != SCHEMA:
        raise InputError(path, f"profile schema must be {SCHEMA!r}, found {data.get('schema')!r}")
    _check_provenance(data, path)
    steps = int(_get(data, "model.steps", path, int))
    steps_by_batch = _get(data, "latency.denoise_step_s", path, dict)
    if not steps_by_batch or any(float(v) <= 0 for v in steps_by_batch.values()):
        raise InputError(path, "latency.denoise_step_s must map batch sizes to positive seconds")
    rungs = _get(data, "ladder.thresholds", path, list)
    ladder = tuple(sorted(((float(s), int(k)) for s, k in rungs), reverse=True))
    if any(k <= 0 or k >= steps for _, k in ladder):
        raise InputError(path, f"ladder K values must lie in 1..{steps - 1}")
    k_levels = tuple(sorted(int(k) for k in _get(data, "k_levels", path, list)))
    rel = {int(k): float(v) for k, v in _get(data, "quality.relative_by_k", path, dict).items()}
    missing = [k for k in (0, *k_levels) if k not in rel]
    if missing:
        raise InputError(path, f"quality.relative_by_k lacks K levels {missing}")
    tiers_raw = _get(data, "storage.tiers", path, dict)
    tiers = {
        name: Tier(
            name=name,
            latency_s=float(t["latency_s"]),
            bandwidth_Bps=float(t["bandwidth_Bps"]),
            capacity_bytes=None if t.get("capacity_bytes") is None else float(t["capacity_bytes"]),
            price_per_gb_month_usd=float(t["price_per_gb_month_usd"]),
        )
        for name, t in tiers_raw.items()
    }
    default_tier = _get(data, "storage.default_tier", path, str)
    if default_tier not in tiers:
        raise InputError(path, f"storage.default_tier {default_tier!r} is not one of {', '.join(tiers)}")
    lat = data["latency"]
    q = data["quality"]
    return Profile(
        name=str(data.get("name", path.stem)),
        steps=steps,
        latent_bytes=int(_get(data, "model.latent_bytes", path, int)),
        gpu_name=str(_get(data, "gpu.name", path, str)),
        gpu_price_per_hour_usd=float(_get(data, "gpu.price_per_hour_usd", path)),
        denoise_step_s={int(b): float(v) for b, v in steps_by_batch.items()},
        save_overhead_step_s=float(lat.get("save_overhead_step_s", 0.0)),
        text_encoder_s=float(lat.get("text_encoder_s", 0.0)),
        vae_decode_s=float(lat.get("vae_decode_s", 0.0)),
        embed_s=float(lat.get("embed_s", 0.0)),
        index_lookup_base_s=float(lat.get("index_lookup_base_s", 0.0)),
        index_lookup_per_decade_s=float(lat.get("index_lookup_per_decade_s", 0.0)),
        ladder=ladder,
        k_levels=k_levels,
        quality_vanilla=float(_get(data, "quality.vanilla", path)),
        quality_relative_by_k=rel,
        retrieval_at_1=float(q.get("retrieval_at_1", q["vanilla"])),
        retrieval_slope_per_unit_s=float(q.get("retrieval_slope_per_unit_s", 0.0)),
        quality_exact=float(q.get("exact", q["vanilla"])),
        tiers=tiers,
        default_tier=default_tier,
        index_per_hour_usd=float((data.get("cost") or {}).get("index_per_hour_usd", 0.0)),
        raw=data,
    )
