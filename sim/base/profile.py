"""Calibration profile: the real-world numbers the engine runs on.

The schema (``acsim-profile/1``) is shared with ``calibrate/``, which writes profiles that
this module reads back. Every block carries ``source`` and ``kind`` (measured, published or
assumed) so a result can always say where its numbers came from. Shipped profiles live in
``calibrate/profiles/<name>.yaml``.

A profile file is typed by the dataclasses below with the same machinery as an experiment file
(:func:`sim.base.config.build`): every error names the file and the dotted field, the bad value
and what is allowed, unknown keys get a did-you-mean. :func:`load_profile` is the one reader
that every command uses (``acsim profiles``, ``validate``, ``run``, ``sweep``, ``calibrate``).

Besides the main model (``model``, timed in ``latency``), a profile may carry a ``small_model``
block (a cheaper model some systems generate with: its steps, step times, price and quality);
both are :class:`GpuModel` s, by block name (:meth:`Profile.gpu_model`). Quality comes in three
metrics: CLIP score (``quality.vanilla``, ``relative_by_k``, the retrieval line, optionally
``by_similarity_bin``), PickScore and FID (``quality.pickscore`` / ``quality.fid``), plus the
images of an external corpus (``quality.corpus_retrieval``); :mod:`sim.reuse.quality` turns them into
per-request expectations.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sim.base import strict_yaml
from sim.base.config import build, check_ladder, positive
from sim.base.errors import ConfigError, InputError, did_you_mean
from sim.base.io import exists

if TYPE_CHECKING:
    from sim.base.step_cache import StepCache

SCHEMA = "acsim-profile/1"
PROFILE_DIR = Path(__file__).resolve().parents[2] / "calibrate" / "profiles"
KINDS = ("measured", "published", "assumed", "fitted")  # fitted: solved by `acsim calibrate fit-quality`
Kind = Literal["measured", "published", "assumed", "fitted"]
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
    # What the denoiser is (a step cache works on some only, see sim.base.step_cache): unet | dit.
    architecture: Literal["unet", "dit"] | None = None
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
    # Fixed seconds of one pipeline call beyond its text encoders, steps and VAE decode (set-up,
    # image post-processing), and the extra of a call that resumes a cached latent (the img2img
    # pipeline's set-up): measured by `acsim calibrate serve`, 0 where not measured.
    pipeline_overhead_s: float = 0.0
    resume_overhead_s: float = 0.0
    image_save_s: float = 0.0  # writing a final image for an image cache (encode + write), measured by calibrate serve
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
            "pipeline_overhead_s",
            "resume_overhead_s",
            "image_save_s",
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
        # a run that needs the ladder then says so (sim.reuse.selector).
        check_ladder("thresholds", self.thresholds, allow_empty=True)


@dataclass(kw_only=True)
class PerClipLoss:
    reuse: float = 1.0
    retrieval: float = 1.0
    aligned: float | None = None  # a cached image matched by its alignment with the prompt (None: as retrieval)


@dataclass(kw_only=True)
class MetricBlock:
    """``quality.pickscore`` / ``quality.fid``: a metric other than CLIP (see :class:`MetricValues`)."""

    vanilla: float
    per_clip_loss: PerClipLoss | None = None
    by_k: dict[int, float] | None = None
    retrieved: float | None = None
    vanilla_range: list[float] | None = None
    scorer: str | None = None  # calibrate quality: the PickScore model that measured by_k / retrieved
    note: str | None = None  # calibrate quality: the features and reference set of a measured FID


@dataclass(kw_only=True)
class MetricTriple:
    """The three metrics of one kind of image (``quality.corpus_retrieval``, ``small_model.quality``)."""

    clip_score: float | None = None
    pickscore: float | None = None
    fid: float | None = None


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
    aligned_gate: float | None = None  # CLIP text-image cosine at which an aligned retrieval returns an image
    exact: float | None = None
    small_model: float | None = None  # older profiles: the small model's CLIP score (now small_model.quality)
    by_similarity_bin: list[Any] | None = None
    pickscore: MetricBlock | None = None
    fid: MetricBlock | None = None
    corpus_retrieval: MetricTriple | None = None
    # Set when the quality figures are not published for this model: what they were carried from
    # (every run on the profile prints it).
    extrapolated: str | None = None
    fields: dict[str, Any] | None = None

    def check(self) -> None:
        _sourced(self)
        for k, rel in self.relative_by_k.items():
            if not 0 <= k <= MAX_STEPS:
                raise ConfigError(f"relative_by_k.{k}", rel, "keys are K levels >= 0")
            positive(f"relative_by_k.{k}", rel, allow_zero=True)
        if self.aligned_gate is not None and not -1 <= self.aligned_gate <= 1:
            raise ConfigError("aligned_gate", self.aligned_gate, "must be a cosine in [-1, 1]")
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
class ScalingBlock:
    """What a GPU added to a running cluster waits before it serves (``cluster.autoscale``)."""

    provision_s: float  # from asking for the machine to its boot
    model_load_s: float  # the model's weights from local disk onto the GPU, ready to serve
    kind: Kind
    # The small model's (small_model block) load time, paid by a GPU moved to its pool (cluster.controller).
    small_model_load_s: float | None = None
    # One LoRA adapter loaded onto a running pipeline (trace.request_models).
    lora_load_s: float | None = None
    source: str
    weights_bytes: float | None = None
    fields: dict[str, Any] | None = None

    def check(self) -> None:
        _sourced(self)
        _non_negative(self, "provision_s", "model_load_s", "weights_bytes", "small_model_load_s", "lora_load_s")


@dataclass(kw_only=True)
class SmallModelLatency:
    denoise_step_s: dict[int, float]
    text_encoder_s: float | None = None  # None: the main model's
    vae_decode_s: float | None = None
    denoise_step_spread_s: dict[int, Any] | None = None  # calibrate: quantiles of the timed steps

    def check(self) -> None:
        _seconds_by_batch("denoise_step_s", self.denoise_step_s)
        _non_negative(self, "text_encoder_s", "vae_decode_s")


@dataclass(kw_only=True)
class SmallModelBlock:
    """A cheaper model some systems generate every image with (the SMALLMODEL baseline)."""

    steps: int
    latency: SmallModelLatency
    kind: Kind
    source: str
    name: str | None = None
    guidance: float | None = None
    resolution: int | None = None
    price_per_hour_usd: float | None = None  # None: the profile's GPU price
    quality: MetricTriple | None = None
    fields: dict[str, Any] | None = None

    def check(self) -> None:
        _sourced(self)
        if not 1 <= self.steps <= MAX_STEPS:
            raise ConfigError("steps", self.steps, f"must be in 1..{MAX_STEPS}")
        _non_negative(self, "price_per_hour_usd")


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
    scaling: ScalingBlock | None = None
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


def interpolate_step_s(denoise_step_s: dict[int, float], batch: int) -> float:
    """Seconds per denoising step for a batch, interpolated linearly between profiled sizes.

    Beyond the largest profiled batch the cost per image of that batch is held
    (no silent optimistic extrapolation).
    """
    sizes = sorted(denoise_step_s)
    if batch in denoise_step_s:
        return denoise_step_s[batch]
    if batch < sizes[0]:
        return denoise_step_s[sizes[0]]
    if batch > sizes[-1]:
        big = sizes[-1]
        return denoise_step_s[big] * batch / big
    j = bisect.bisect_left(sizes, batch)
    lo, hi = sizes[j - 1], sizes[j]
    w = (batch - lo) / (hi - lo)
    return denoise_step_s[lo] * (1 - w) + denoise_step_s[hi] * w


# The image-quality metrics a profile can carry: CLIP score and PickScore (higher is better) and
# FID (a distribution metric, lower is better).
QUALITY_METRICS = ("clip", "pickscore", "fid")


@dataclass(frozen=True)
class GpuModel:
    """One model a system generates with, and what an image costs with it on the profile's GPU.

    ``block`` is the profile block it comes from: ``model`` (the main model, whose timings
    live in ``latency``) or ``small_model``. The attribute names match :class:`Profile`'s, so
    the engine's work functions take either. ``quality`` holds the expected value of each
    metric in :data:`QUALITY_METRICS` for a fresh image (NaN when the profile has none).
    """

    block: str
    name: str
    steps: int
    denoise_step_s: dict[int, float]
    save_overhead_step_s: float
    text_encoder_s: float
    vae_decode_s: float
    gpu_price_per_hour_usd: float
    quality: dict[str, float]
    pipeline_overhead_s: float = 0.0  # per call (latency.pipeline_overhead_s)
    resume_overhead_s: float = 0.0  # per call that resumes a cached latent
    image_save_s: float = 0.0  # per job whose final image an image cache keeps
    step_cache: StepCache | None = None  # a step-level cache in this model's execution (main model only)

    def step_s(self, batch: int = 1) -> float:
        """Seconds per denoising step for a batch (see :func:`interpolate_step_s`)."""
        return interpolate_step_s(self.denoise_step_s, batch)

    def denoise_work(self, steps: Any) -> Any:
        """Full-step equivalents of a run of ``steps`` steps: ``steps`` itself without a step cache."""
        return steps if self.step_cache is None else self.step_cache.work(steps)


@dataclass(frozen=True)
class SimilarityBin:
    """One row of ``quality.by_similarity_bin`` (written by ``calibrate quality``)."""

    lo: float
    hi: float
    pairs: int
    relative_loss_by_k: dict[int, float]  # CLIP-score loss vs vanilla of a reuse at K, in this bin
    retrieved_relative_loss: float | None  # the same for the cached prompt's own image


@dataclass(frozen=True)
class MetricValues:
    """A metric other than CLIP (``quality.pickscore``, ``quality.fid``) for each kind of delivered image.

    A reused or retrieved image with relative CLIP-score loss ``L`` gets
    ``vanilla * (1 - per_clip_loss * L)`` (per family), unless measured values are given:
    ``by_k`` (a reuse at K) and ``retrieved`` (another prompt's image).
    """

    name: str
    vanilla: float
    per_clip_loss_reuse: float
    per_clip_loss_retrieval: float
    per_clip_loss_aligned: float
    by_k: dict[int, float]
    retrieved: float | None


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
    pipeline_overhead_s: float
    resume_overhead_s: float
    image_save_s: float
    ladder: tuple[tuple[float, int], ...]  # (threshold, K), thresholds descending
    k_levels: tuple[int, ...]
    quality_vanilla: float
    quality_relative_by_k: dict[int, float]
    retrieval_at_1: float
    retrieval_slope_per_unit_s: float
    quality_exact: float
    # ``quality.aligned_gate``: the gate of a retrieval matched by image-prompt alignment (None: not set).
    aligned_gate: float | None
    tiers: dict[str, Tier]
    default_tier: str
    index_per_hour_usd: float
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)
    # The models systems generate with, by profile block (``model``; ``small_model`` when present).
    gpu_models: dict[str, GpuModel] = field(repr=False, compare=False, default_factory=dict)
    quality_by_bin: tuple[SimilarityBin, ...] = ()
    # PickScore and FID (``quality.pickscore``, ``quality.fid``), when the profile has them.
    quality_metrics: dict[str, MetricValues] = field(default_factory=dict)
    # Metric values of an image retrieved from an external corpus (``quality.corpus_retrieval``).
    corpus_quality: dict[str, float] = field(default_factory=dict)
    architecture: str | None = None  # model.architecture
    quality_extrapolated: str | None = None  # quality.extrapolated: what unpublished figures were carried from
    # scaling.provision_s and scaling.model_load_s: a scaled-out GPU's wait before it serves (None: not given).
    provision_s: float | None = None
    model_load_s: float | None = None
    small_model_load_s: float | None = None  # scaling.small_model_load_s
    lora_load_s: float | None = None  # scaling.lora_load_s

    def step_s(self, batch: int = 1) -> float:
        """Seconds per denoising step of the main model for a batch (see :func:`interpolate_step_s`)."""
        return interpolate_step_s(self.denoise_step_s, batch)

    @property
    def step_cache(self) -> StepCache | None:
        """The main model's step cache (:meth:`with_step_cache`), None without one."""
        return self.gpu_models["model"].step_cache if "model" in self.gpu_models else None

    def denoise_work(self, steps: Any) -> Any:
        """Full-step equivalents of a run of the main model (see :meth:`GpuModel.denoise_work`)."""
        return self.gpu_models["model"].denoise_work(steps)

    def with_step_cache(self, step_cache: StepCache | None) -> Profile:
        """This profile with ``step_cache`` in its main model's execution (the small model keeps none)."""
        main = dataclasses.replace(self.gpu_models["model"], step_cache=step_cache)
        return dataclasses.replace(self, gpu_models={**self.gpu_models, "model": main})

    def gpu_model(self, block: str = "model") -> GpuModel:
        """The model of profile block ``block`` (``model`` or ``small_model``); InputError when absent."""
        found = self.gpu_models.get(block)
        if found is None:
            raise InputError(
                self.name, f"profile has no {block!r} block; blocks with a model: {', '.join(self.gpu_models)}"
            )
        return found

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
    """Load and validate a profile by shipped name or path; every problem is an InputError naming the file."""
    path = resolve_path(name_or_path)
    if not exists(path, "file"):
        what = "is a directory, not a profile YAML" if exists(path, "dir") else "not found"
        raise InputError(path, f"profile {name_or_path!r} {what}; shipped profiles: {', '.join(shipped_profiles())}")
    return parse_profile(strict_yaml.read(path, "profile"), path)


def load_run_profile(name_or_path: str, step_cache: Any = None) -> Profile:
    """:func:`load_profile` with an experiment's ``step_cache`` block (a ``StepCacheConfig``) in its
    main model's execution; ConfigError when the step cache does not work on the model."""
    profile = load_profile(name_or_path)
    if step_cache is None or step_cache.kind == "none":
        return profile
    return profile.with_step_cache(step_cache.built(profile.architecture))


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
    metrics = {name: _metric(name, block) for name, block in (("pickscore", q.pickscore), ("fid", q.fid)) if block}
    main = GpuModel(
        block="model",
        name=f.model.name or "model",
        steps=f.model.steps,
        denoise_step_s=dict(lat.denoise_step_s),
        save_overhead_step_s=lat.save_overhead_step_s,
        text_encoder_s=lat.text_encoder_s,
        vae_decode_s=lat.vae_decode_s,
        gpu_price_per_hour_usd=f.gpu.price_per_hour_usd,
        pipeline_overhead_s=lat.pipeline_overhead_s,
        resume_overhead_s=lat.resume_overhead_s,
        image_save_s=lat.image_save_s,
        quality={"clip": q.vanilla, **{m: metrics[m].vanilla if m in metrics else math.nan for m in ("pickscore", "fid")}},
    )
    gpu_models = {"model": main}
    if f.small_model is not None:
        gpu_models["small_model"] = _small_model(f.small_model, main)
    try:
        bins = _bins(q.by_similarity_bin or [])
    except ConfigError as exc:
        raise InputError(path, str(exc)) from None
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
        pipeline_overhead_s=lat.pipeline_overhead_s,
        resume_overhead_s=lat.resume_overhead_s,
        image_save_s=lat.image_save_s,
        ladder=tuple(sorted(((s, int(k)) for s, k in f.ladder.thresholds), reverse=True)),
        k_levels=tuple(sorted(f.k_levels)),
        quality_vanilla=q.vanilla,
        quality_relative_by_k=dict(q.relative_by_k),
        retrieval_at_1=q.vanilla if q.retrieval_at_1 is None else q.retrieval_at_1,
        retrieval_slope_per_unit_s=q.retrieval_slope_per_unit_s,
        quality_exact=q.vanilla if q.exact is None else q.exact,
        aligned_gate=q.aligned_gate,
        tiers={
            name: Tier(name, t.latency_s, t.bandwidth_Bps, t.capacity_bytes, t.price_per_gb_month_usd)
            for name, t in f.storage.tiers.items()
        },
        default_tier=f.storage.default_tier,
        index_per_hour_usd=f.cost.index_per_hour_usd if f.cost is not None else 0.0,
        raw=data,
        gpu_models=gpu_models,
        quality_by_bin=bins,
        quality_metrics=metrics,
        corpus_quality=_triple(q.corpus_retrieval) if q.corpus_retrieval is not None else {},
        architecture=f.model.architecture,
        quality_extrapolated=q.extrapolated,
        provision_s=f.scaling.provision_s if f.scaling is not None else None,
        model_load_s=f.scaling.model_load_s if f.scaling is not None else None,
        small_model_load_s=f.scaling.small_model_load_s if f.scaling is not None else None,
        lora_load_s=f.scaling.lora_load_s if f.scaling is not None else None,
    )


def _triple(t: MetricTriple | None) -> dict[str, float]:
    """{clip, pickscore, fid} of one kind of image (missing: NaN)."""
    if t is None:
        return dict.fromkeys(QUALITY_METRICS, math.nan)
    values = {"clip": t.clip_score, "pickscore": t.pickscore, "fid": t.fid}
    return {m: math.nan if v is None else float(v) for m, v in values.items()}


def _metric(name: str, block: MetricBlock) -> MetricValues:
    ratio = block.per_clip_loss or PerClipLoss()
    return MetricValues(
        name=name,
        vanilla=block.vanilla,
        per_clip_loss_reuse=ratio.reuse,
        per_clip_loss_retrieval=ratio.retrieval,
        per_clip_loss_aligned=ratio.retrieval if ratio.aligned is None else ratio.aligned,
        by_k=dict(block.by_k or {}),
        retrieved=block.retrieved,
    )


def _bins(rows: list[Any]) -> tuple[SimilarityBin, ...]:
    """``quality.by_similarity_bin`` rows (as ``calibrate quality`` writes them), checked and sorted."""
    out: list[SimilarityBin] = []
    for i, row in enumerate(rows):
        where = f"quality.by_similarity_bin[{i}]"
        try:
            lo, hi = (float(x) for x in row["bin"])
            # A loss a run could not compute (vanilla scored 0) is written as null: no value.
            losses = {int(k): float(v) for k, v in (row.get("relative_loss_by_k") or {}).items() if v is not None}
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ConfigError(where, row, "needs bin: [lo, hi] and relative_loss_by_k: {K: loss}") from None
        if not lo < hi:
            raise ConfigError(f"{where}.bin", [lo, hi], "bin edges must increase")
        if out and lo < out[-1].hi - 1e-12:
            raise ConfigError(f"{where}.bin", [lo, hi], "bins must be sorted and must not overlap")
        retrieved = row.get("retrieved_relative_loss")
        out.append(
            SimilarityBin(
                lo=lo,
                hi=hi,
                pairs=int(row.get("pairs", 0)),
                relative_loss_by_k={k: v for k, v in losses.items() if math.isfinite(v)},
                retrieved_relative_loss=None
                if retrieved is None or not math.isfinite(float(retrieved))
                else float(retrieved),
            )
        )
    return tuple(out)


def _small_model(sm: SmallModelBlock, main: GpuModel) -> GpuModel:
    """The ``small_model`` block: a cheaper model some systems generate every image with."""
    lat = sm.latency
    return GpuModel(
        block="small_model",
        name=sm.name or "small model",
        steps=sm.steps,
        denoise_step_s=dict(lat.denoise_step_s),
        # A small model serves every request itself and saves no latents for a cache.
        save_overhead_step_s=0.0,
        text_encoder_s=main.text_encoder_s if lat.text_encoder_s is None else lat.text_encoder_s,
        vae_decode_s=main.vae_decode_s if lat.vae_decode_s is None else lat.vae_decode_s,
        gpu_price_per_hour_usd=main.gpu_price_per_hour_usd if sm.price_per_hour_usd is None else sm.price_per_hour_usd,
        quality=_triple(sm.quality),
    )
