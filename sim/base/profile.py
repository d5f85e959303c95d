"""Calibration profile: the real-world numbers the engine runs on.

The schema (``acsim-profile/1``) is shared with ``calibrate/``, which writes profiles that
this module reads back. Every block carries ``source`` and ``kind`` (measured, published or
assumed) so a result can always say where its numbers came from. Shipped profiles live in
``calibrate/profiles/<name>.yaml``.

A profile file is typed by the dataclasses below with the same machinery as an experiment file
(:func:`sim.base.config.build`): every error names the file and the dotted field, the bad value
and what is allowed, unknown keys get a did-you-mean. :func:`load_profile` is the one reader
that every command uses (``acsim profiles``, ``validate``, ``run``, ``sweep``, ``calibrate``).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sim.base import strict_yaml
from sim.base.config import build, check_ladder, did_you_mean, positive
from sim.base.errors import ConfigError, InputError
from sim.base.io import exists

SCHEMA = "acsim-profile/1"
PROFILE_DIR = Path(__file__).resolve().parents[2] / "calibrate" / "profiles"
KINDS = ("measured", "published", "assumed")
Kind = Literal["measured", "published", "assumed"]
# Denoising steps a profile may describe (a K level lies in 1..steps-1).
MAX_STEPS = 10_000


# ---------------------------------------------------------------------------
# The file's schema. ``kind``/``source`` are each block's provenance; ``fields`` holds the
# provenance of single numbers that calibrate carried over from a base profile.


def _sourced(block: Any) -> None:
    if not block.source.strip():
        raise ConfigError("source", block.source, "say where the numbers come from")


def _non_negative(block: Any, *names: str) -> None:
    for name in names:
        positive(name, getattr(block, name), allow_zero=True)


def _seconds_by_batch(name: str, table: dict[int, float]) -> None:
    if not table:
        raise ConfigError(name, table, "map at least one batch size to seconds per step")
    for batch, seconds in table.items():
        if batch < 1:
            raise ConfigError(f"{name}.{batch}", seconds, "batch sizes must be >= 1")
        positive(f"{name}.{batch}", seconds)


@dataclass(kw_only=True)
class ModelBlock:
    steps: int
    latent_bytes: int
    kind: Kind
    source: str
    name: str | None = None
    resolution: int | None = None
    latent_shape: list[int] | None = None
    latent_dtype: str | None = None
    latent_file_bytes: int | None = None
    dtype: str | None = None
    random_weights: bool | None = None
    fields: dict[str, Any] | None = None

    def check(self) -> None:
        _sourced(self)
        if not 2 <= self.steps <= MAX_STEPS:
            raise ConfigError("steps", self.steps, f"must be in 2..{MAX_STEPS} denoising steps")
        positive("latent_bytes", self.latent_bytes)
        positive("resolution", self.resolution)


@dataclass(kw_only=True)
class GpuBlock:
    name: str
    price_per_hour_usd: float
    kind: Kind
    source: str
    memory_gb: float | None = None
    peak_memory_bytes_by_batch: dict[int, float | None] | None = None
    fields: dict[str, Any] | None = None

    def check(self) -> None:
        _sourced(self)
        _non_negative(self, "price_per_hour_usd")
        positive("memory_gb", self.memory_gb)


@dataclass(kw_only=True)
class LatencyBlock:
    denoise_step_s: dict[int, float]
    kind: Kind
    source: str
    save_overhead_step_s: float = 0.0
    text_encoder_s: float = 0.0
    vae_decode_s: float = 0.0
    embed_s: float = 0.0
    index_lookup_base_s: float = 0.0
    index_lookup_per_decade_s: float = 0.0
    denoise_step_spread_s: dict[int, Any] | None = None  # calibrate: quantiles of the timed steps
    latent_save_s: float | None = None
    latent_load_s: float | None = None
    fields: dict[str, Any] | None = None

    def check(self) -> None:
        _sourced(self)
        _seconds_by_batch("denoise_step_s", self.denoise_step_s)
        _non_negative(
            self,
            "save_overhead_step_s",
            "text_encoder_s",
            "vae_decode_s",
            "embed_s",
            "index_lookup_base_s",
            "index_lookup_per_decade_s",
            "latent_save_s",
            "latent_load_s",
        )


@dataclass(kw_only=True)
class LadderBlock:
    thresholds: list[list[float]]
    kind: Kind
    source: str
    embedder: str | None = None
    max_loss: float | None = None
    similarity: str | None = None
    transfer: dict[str, Any] | None = None
    fields: dict[str, Any] | None = None

    def check(self) -> None:
        _sourced(self)
        # Empty when a quality calibration accepted no K at any similarity (an honest outcome);
        # a run that needs the ladder then says so (sim.selector).
        check_ladder("thresholds", self.thresholds, allow_empty=True)


@dataclass(kw_only=True)
class QualityBlock:
    vanilla: float
    relative_by_k: dict[int, float]
    kind: Kind
    source: str
    metric: str | None = None
    scorer: str | None = None
    retrieval_at_1: float | None = None
    retrieval_slope_per_unit_s: float = 0.0
    exact: float | None = None
    small_model: float | None = None
    by_similarity_bin: list[Any] | None = None
    fields: dict[str, Any] | None = None

    def check(self) -> None:
        _sourced(self)
        for k, rel in self.relative_by_k.items():
            if not 0 <= k <= MAX_STEPS:
                raise ConfigError(f"relative_by_k.{k}", rel, "keys are K levels >= 0")
            positive(f"relative_by_k.{k}", rel, allow_zero=True)
        # retrieval_slope_per_unit_s may be negative: it is a fit to measured scores, kept as measured.


@dataclass(kw_only=True)
class TierBlock:
    latency_s: float
    bandwidth_Bps: float
    capacity_bytes: float | None
    price_per_gb_month_usd: float
    kind: Kind
    source: str

    def check(self) -> None:
        _sourced(self)
        _non_negative(self, "latency_s", "price_per_gb_month_usd")
        positive("bandwidth_Bps", self.bandwidth_Bps)
        positive("capacity_bytes", self.capacity_bytes)


@dataclass(kw_only=True)
class StorageBlock:
    default_tier: str
    tiers: dict[str, TierBlock]
    kind: Kind | None = None
    source: str | None = None

    def check(self) -> None:
        if not self.tiers:
            raise ConfigError("tiers", self.tiers, "list at least one storage tier")
        if self.default_tier not in self.tiers:
            raise ConfigError(
                "default_tier",
                self.default_tier,
                "must be one of the tiers: " + ", ".join(self.tiers),
                did_you_mean(self.default_tier, self.tiers),
            )


@dataclass(kw_only=True)
class CostBlock:
    kind: Kind
    source: str
    index_per_hour_usd: float = 0.0
    fields: dict[str, Any] | None = None

    def check(self) -> None:
        _sourced(self)
        _non_negative(self, "index_per_hour_usd")


@dataclass(kw_only=True)
class SmallModelBlock:
    denoise_step_s: dict[int, float]
    steps: int
    kind: Kind
    source: str

    def check(self) -> None:
        _sourced(self)
        _seconds_by_batch("denoise_step_s", self.denoise_step_s)
        if not 1 <= self.steps <= MAX_STEPS:
            raise ConfigError("steps", self.steps, f"must be in 1..{MAX_STEPS}")


@dataclass(kw_only=True)
class ProfileFile:
    """One profile YAML file as written (see ``calibrate/profiles/sdxl-a10g.yaml``)."""

    schema: Literal["acsim-profile/1"]
    model: ModelBlock
    gpu: GpuBlock
    latency: LatencyBlock
    ladder: LadderBlock
    k_levels: list[int]
    quality: QualityBlock
    storage: StorageBlock
    name: str | None = None
    description: str | None = None
    created: Any = None
    cost: CostBlock | None = None
    small_model: SmallModelBlock | None = None
    calibration_runs: list[Any] | None = None

    def check(self) -> None:
        steps = self.model.steps
        if not self.k_levels:
            raise ConfigError("k_levels", self.k_levels, "list at least one cached K level")
        for i, k in enumerate(self.k_levels):
            if not 1 <= k < steps:
                raise ConfigError(f"k_levels[{i}]", k, f"a K level lies in 1..{steps - 1} (model.steps = {steps})")
            if k in self.k_levels[:i]:
                raise ConfigError(f"k_levels[{i}]", k, "is listed twice")
        for i, (_, k) in enumerate(self.ladder.thresholds):
            if int(k) not in self.k_levels:
                raise ConfigError(
                    f"ladder.thresholds[{i}]",
                    self.ladder.thresholds[i],
                    f"K must be one of the cached k_levels {sorted(self.k_levels)}",
                )
        missing = [k for k in (0, *self.k_levels) if k not in self.quality.relative_by_k]
        if missing:
            raise ConfigError(
                "quality.relative_by_k", self.quality.relative_by_k, f"lacks the K levels {missing} (0 and every k_level)"
            )



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
    if p.suffix in (".yaml", ".yml") or exists(p):
        return p
    return PROFILE_DIR / f"{name_or_path}.yaml"


def shipped_profiles() -> list[str]:
    """Names of the profiles that ship with acsim."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def load_profile(name_or_path: str) -> Profile:
    """Load and validate a profile by shipped name or path; every problem is an InputError naming the file."""
    path = resolve_path(name_or_path)
    if not exists(path, "file"):
        what = "is a directory, not a profile YAML" if exists(path, "dir") else "not found"
        raise InputError(path, f"profile {name_or_path!r} {what}; shipped profiles: {', '.join(shipped_profiles())}")
    return parse_profile(strict_yaml.read(path, "profile"), path)


def parse_profile(data: Any, path: Path | str = "<profile>") -> Profile:
    """Validate a profile mapping (as written by ``calibrate``) into a :class:`Profile`.

    Raises InputError naming ``path`` and the dotted field (``storage.tiers.efs.bandwidth_Bps: 0.0
    is not valid; must be > 0``).
    """
    path = Path(path)
    if not isinstance(data, dict):
        raise InputError(path, "a profile must be a YAML mapping of blocks (schema, model, gpu, latency, ...)")
    if data.get("schema") != SCHEMA:
        raise InputError(path, f"schema: {data.get('schema')!r} is not valid; a profile says schema: {SCHEMA}")
    try:
        f: ProfileFile = build(ProfileFile, data)
    except ConfigError as exc:
        raise InputError(path, str(exc)) from None
    lat, q = f.latency, f.quality
    return Profile(
        name=f.name or path.stem,
        steps=f.model.steps,
        latent_bytes=f.model.latent_bytes,
        gpu_name=f.gpu.name,
        gpu_price_per_hour_usd=f.gpu.price_per_hour_usd,
        denoise_step_s=dict(lat.denoise_step_s),
        save_overhead_step_s=lat.save_overhead_step_s,
        text_encoder_s=lat.text_encoder_s,
        vae_decode_s=lat.vae_decode_s,
        embed_s=lat.embed_s,
        index_lookup_base_s=lat.index_lookup_base_s,
        index_lookup_per_decade_s=lat.index_lookup_per_decade_s,
        ladder=tuple(sorted(((s, int(k)) for s, k in f.ladder.thresholds), reverse=True)),
        k_levels=tuple(sorted(f.k_levels)),
        quality_vanilla=q.vanilla,
        quality_relative_by_k=dict(q.relative_by_k),
        retrieval_at_1=q.vanilla if q.retrieval_at_1 is None else q.retrieval_at_1,
        retrieval_slope_per_unit_s=q.retrieval_slope_per_unit_s,
        quality_exact=q.vanilla if q.exact is None else q.exact,
        tiers={
            name: Tier(name, t.latency_s, t.bandwidth_Bps, t.capacity_bytes, t.price_per_gb_month_usd)
            for name, t in f.storage.tiers.items()
        },
        default_tier=f.storage.default_tier,
        index_per_hour_usd=f.cost.index_per_hour_usd if f.cost is not None else 0.0,
        raw=data,
    )
