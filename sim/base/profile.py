"""Calibration profile: the real-world numbers the engine runs on.

The schema (``acsim-profile/1``) is shared with ``calibrate/``, which writes profiles that
this module reads back. Every block carries ``source`` and ``kind`` (measured, published or
assumed) so a result can always say where its numbers came from. Shipped profiles live in
``calibrate/profiles/<name>.yaml``.

Besides the main model (``model``, timed in ``latency``), a profile may carry a ``small_model``
block (a cheaper model some systems generate with: its steps, step times, price and quality);
both are :class:`GpuModel` s, by block name (:meth:`Profile.gpu_model`). Quality comes in three
metrics: CLIP score (``quality.vanilla``, ``relative_by_k``, the retrieval line, optionally
``by_similarity_bin``), PickScore and FID (``quality.pickscore`` / ``quality.fid``), plus the
images of an external corpus (``quality.corpus_retrieval``); :mod:`sim.quality` turns them into
per-request expectations.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sim.base.errors import InputError

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

    def step_s(self, batch: int = 1) -> float:
        """Seconds per denoising step for a batch (see :func:`interpolate_step_s`)."""
        return interpolate_step_s(self.denoise_step_s, batch)


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
    # The models systems generate with, by profile block (``model``; ``small_model`` when present).
    gpu_models: dict[str, GpuModel] = field(repr=False, compare=False, default_factory=dict)
    quality_by_bin: tuple[SimilarityBin, ...] = ()
    # PickScore and FID (``quality.pickscore``, ``quality.fid``), when the profile has them.
    quality_metrics: dict[str, MetricValues] = field(default_factory=dict)
    # Metric values of an image retrieved from an external corpus (``quality.corpus_retrieval``).
    corpus_quality: dict[str, float] = field(default_factory=dict)

    def step_s(self, batch: int = 1) -> float:
        """Seconds per denoising step of the main model for a batch (see :func:`interpolate_step_s`)."""
        return interpolate_step_s(self.denoise_step_s, batch)

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
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    return PROFILE_DIR / f"{name_or_path}.yaml"


def shipped_profiles() -> list[str]:
    """Names of the profiles that ship with acsim."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


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
    optional = [b for b in ("small_model",) if b in data]
    for block in ("model", "gpu", "latency", "ladder", "quality", *optional):
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
    metrics = {name: _metric(q, name, path) for name in ("pickscore", "fid") if name in q}
    main = GpuModel(
        block="model",
        name=str(data["model"].get("name", "model")),
        steps=steps,
        denoise_step_s={int(b): float(v) for b, v in steps_by_batch.items()},
        save_overhead_step_s=float(lat.get("save_overhead_step_s", 0.0)),
        text_encoder_s=float(lat.get("text_encoder_s", 0.0)),
        vae_decode_s=float(lat.get("vae_decode_s", 0.0)),
        gpu_price_per_hour_usd=float(_get(data, "gpu.price_per_hour_usd", path)),
        quality={
            "clip": float(_get(data, "quality.vanilla", path)),
            **{m: metrics[m].vanilla if m in metrics else math.nan for m in ("pickscore", "fid")},
        },
    )
    gpu_models = {"model": main}
    if "small_model" in data:
        gpu_models["small_model"] = _small_model(data, main, path)
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
        gpu_models=gpu_models,
        quality_by_bin=_bins(q, path),
        quality_metrics=metrics,
        corpus_quality=_metric_values(q, "corpus_retrieval", path) if "corpus_retrieval" in q else {},
    )


def _number(value: Any, where: str, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(path, f"profile field {where!r} = {value!r} must be a finite number")
    return float(value)


def _metric_values(block: dict[str, Any], key: str, path: Path) -> dict[str, float]:
    """``{clip_score, pickscore, fid}`` of one kind of image -> {metric: value} (missing: NaN)."""
    values = block.get(key)
    if not isinstance(values, dict):
        raise InputError(path, f"profile field {key!r} must map clip_score, pickscore, fid to numbers")
    names = {"clip_score": "clip", "pickscore": "pickscore", "fid": "fid"}
    unknown = set(values) - set(names)
    if unknown:
        raise InputError(path, f"profile field {key!r}: unknown metrics {sorted(unknown)}; allowed: {', '.join(names)}")
    return {m: _number(values[k], f"{key}.{k}", path) if k in values else math.nan for k, m in names.items()}


def _metric(q: dict[str, Any], name: str, path: Path) -> MetricValues:
    block = q[name]
    if not isinstance(block, dict):
        raise InputError(path, f"profile field 'quality.{name}' must be a mapping")
    where = f"quality.{name}"
    ratio = block.get("per_clip_loss") or {}
    by_k = {int(k): _number(v, f"{where}.by_k.{k}", path) for k, v in (block.get("by_k") or {}).items()}
    retrieved = block.get("retrieved")
    return MetricValues(
        name=name,
        vanilla=_number(block.get("vanilla"), f"{where}.vanilla", path),
        per_clip_loss_reuse=_number(ratio.get("reuse", 1.0), f"{where}.per_clip_loss.reuse", path),
        per_clip_loss_retrieval=_number(ratio.get("retrieval", 1.0), f"{where}.per_clip_loss.retrieval", path),
        by_k=by_k,
        retrieved=None if retrieved is None else _number(retrieved, f"{where}.retrieved", path),
    )


def _bins(q: dict[str, Any], path: Path) -> tuple[SimilarityBin, ...]:
    rows = q.get("by_similarity_bin") or []
    if not isinstance(rows, list):
        raise InputError(path, "profile field 'quality.by_similarity_bin' must be a list of bins")
    out = []
    for i, row in enumerate(rows):
        where = f"quality.by_similarity_bin[{i}]"
        try:
            lo, hi = (float(x) for x in row["bin"])
            # A loss a run could not compute (vanilla scored 0) is written as null: no value.
            losses = {int(k): float(v) for k, v in (row.get("relative_loss_by_k") or {}).items() if v is not None}
        except (KeyError, TypeError, ValueError):
            raise InputError(path, f"profile field {where!r} needs bin: [lo, hi] and relative_loss_by_k: {{K: loss}}") from None
        if not lo < hi:
            raise InputError(path, f"profile field {where!r}: bin edges must increase, found [{lo}, {hi}]")
        if out and lo < out[-1].hi - 1e-12:
            raise InputError(path, f"profile field {where!r}: bins must be sorted and must not overlap")
        retrieved = row.get("retrieved_relative_loss")
        out.append(
            SimilarityBin(
                lo=lo,
                hi=hi,
                pairs=int(row.get("pairs", 0)),
                relative_loss_by_k={k: v for k, v in losses.items() if math.isfinite(v)},
                retrieved_relative_loss=None if retrieved is None or not math.isfinite(float(retrieved)) else float(retrieved),
            )
        )
    return tuple(out)


def _small_model(data: dict[str, Any], main: GpuModel, path: Path) -> GpuModel:
    """The ``small_model`` block: a cheaper model some systems generate every image with."""
    sm = data["small_model"]
    steps = int(_get(data, "small_model.steps", path, int))
    if steps < 1:
        raise InputError(path, f"small_model.steps must be >= 1, found {steps}")
    lat = sm.get("latency") or {}
    by_batch = lat.get("denoise_step_s")
    if not isinstance(by_batch, dict) or not by_batch or any(float(v) <= 0 for v in by_batch.values()):
        raise InputError(path, "small_model.latency.denoise_step_s must map batch sizes to positive seconds")
    quality = _metric_values(sm, "quality", path) if "quality" in sm else dict.fromkeys(QUALITY_METRICS, math.nan)
    return GpuModel(
        block="small_model",
        name=str(sm.get("name", "small model")),
        steps=steps,
        denoise_step_s={int(b): float(v) for b, v in by_batch.items()},
        # A small model serves every request itself and saves no latents for a cache.
        save_overhead_step_s=0.0,
        text_encoder_s=float(lat.get("text_encoder_s", main.text_encoder_s)),
        vae_decode_s=float(lat.get("vae_decode_s", main.vae_decode_s)),
        gpu_price_per_hour_usd=float(sm.get("price_per_hour_usd", main.gpu_price_per_hour_usd)),
        quality=quality,
    )
