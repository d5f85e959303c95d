"""Step-level caches: work skipped *inside* one generation (TeaCache, First-Block Cache, DeepCache).

Approximate caching skips the first K denoising steps of a request by resuming a cached latent;
a step cache skips part of the computation of the steps a generation does run, by reusing a
block's output from the previous step when it barely changed. The two compose, and this module
states how (the ``step_cache:`` block of an experiment, README "Step caches"):

* A run of ``n`` steps (``n = N`` for a fresh image, ``N - K`` for a request resumed at K)
  computes its first ``w`` steps in full: a step cache compares each step with the one before,
  so after a resume it has nothing to reuse until it has seen ``w`` steps of its own.
* Every later step costs ``r`` of a full step, where ``r`` is solved from the kind's published
  run: ``P`` steps at a denoising speed-up ``S`` with the same warm-up, ``w + (P - w) r = P / S``.
* Quality: the published run lost ``L`` of its CLIP score over its ``P - w`` skippable steps; a run
  with ``m`` skippable steps loses ``L * m / (P - w)`` (linear in the steps the cache acts on,
  assumed), so a resumed image, whose cache acted on fewer steps, loses less.

Hence a resumed request gains less from a step cache than a fresh one does: skipping the first K
steps removes steps the step cache would have made cheap, and it pays the warm-up again. Each kind
is one :class:`StepCacheKind` in :data:`STEP_CACHES`, with its published numbers and their sources.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sim.base.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


@dataclass(frozen=True)
class StepCacheKind:
    """One step cache as published: its speed-up and quality cost on one model's run."""

    name: str
    speedup: float  # of the denoising loop on the published run
    published_steps: int  # P: steps of that run
    warmup_steps: int  # w: steps it always computes in full at the start of a run
    clip_loss: float  # relative CLIP-score loss of the published run (0.01 = 1% lower)
    architectures: tuple[str, ...]  # the model architectures it works on ("unet", "dit")
    measured_on: str  # the model of the published run
    source: str
    kind: str  # provenance of the numbers: published | assumed


STEP_CACHES: dict[str, StepCacheKind] = {
    kind.name: kind
    for kind in (
        StepCacheKind(
            name="teacache",
            # 7.11 s -> 3.48 s end to end on an H100 at rel_l1_thresh 0.4; without the profile's
            # fixed 0.13 s (text encoders + VAE) that is 6.98 s -> 3.35 s of denoising.
            speedup=2.08,
            published_steps=28,
            # TeaCache always computes a run's first step (its accumulated distance starts there).
            warmup_steps=1,
            clip_loss=0.0148,
            architectures=("dit",),
            measured_on="FLUX.1-dev, 28 steps, 1024x1024",
            source=(
                "speed-up: github.com/varadrane1707/BenchmarkFlux, FLUX.1-dev bf16 on H100, TeaCache 0.4 "
                "(published); CLIP loss: assumed linear in the skipped share between lossless at 1.4x "
                "(ComfyUI-TeaCache README: 'a 1.4x lossless speedup' on FLUX) and 2.16% at 4.17x (TeaCache "
                "l=0.8 in the FoCa table quoted by vipshop/cache-dit bench/README: CLIP 31.704 vs 32.404)"
            ),
            kind="assumed",
        ),
        StepCacheKind(
            name="fbcache",
            # 7.11 s -> 3.21 s end to end at residual_diff_threshold 0.15: 6.98 s -> 3.08 s of denoising.
            speedup=2.27,
            published_steps=28,
            # The first block's residual is compared with the previous step's: step one is always full.
            warmup_steps=1,
            clip_loss=0.0,
            architectures=("dit", "unet"),
            measured_on="FLUX.1-dev, 28 steps, 1024x1024",
            source=(
                "speed-up: github.com/varadrane1707/BenchmarkFlux, FLUX.1-dev bf16 on H100, FBCache 0.15 "
                "(published); CLIP loss 0: vipshop/cache-dit bench/README, DrawBench on FLUX.1-dev, "
                "first-block caching at 1.80x and 3.94x keeps the CLIP score (32.99 vs 32.92; 32.85 vs "
                "32.40) while ImageReward falls slightly (published)"
            ),
            kind="published",
        ),
        StepCacheKind(
            name="deepcache",
            speedup=2.6,
            published_steps=50,
            # DeepCache runs the full U-Net on the first step to fill its feature cache.
            warmup_steps=1,
            clip_loss=0.0017,
            architectures=("unet",),
            measured_on="SDXL base 1.0, 50 steps",
            source=(
                "speed-up: horseee/DeepCache README, '2.6x acceleration of Stable Diffusion XL' (published); "
                "CLIP loss: the README's SD v1.5 figure, 2.3x with a 0.05 decline in CLIP score, "
                "taken relative to a score near 30 and carried to SDXL (assumed)"
            ),
            kind="assumed",
        ),
    )
}
NAMES = ("none", *STEP_CACHES)


@dataclass(frozen=True)
class StepCache:
    """A step cache as a run uses it: the work and quality of a run of ``steps`` steps."""

    kind: str
    warmup_steps: int
    compute_fraction: float  # r: share of a full step that a step after the warm-up costs
    loss_per_step: float  # relative CLIP loss per step the cache acts on

    def work(self, steps: ArrayLike) -> np.ndarray | float:
        """Full-step equivalents of a run of ``steps`` denoising steps (0 for none)."""
        n = np.asarray(steps, dtype=float)
        full = np.minimum(n, self.warmup_steps)
        out = full + (n - full) * self.compute_fraction
        return float(out) if out.ndim == 0 else out

    def quality_factor(self, steps: ArrayLike) -> np.ndarray | float:
        """What a run of ``steps`` steps keeps of its CLIP score (1 for runs within the warm-up)."""
        n = np.asarray(steps, dtype=float)
        out = 1.0 - self.loss_per_step * np.maximum(n - self.warmup_steps, 0.0)
        out = np.clip(out, 0.0, 1.0)
        return float(out) if out.ndim == 0 else out


def build_step_cache(
    kind: str,
    *,
    speedup: float | None = None,
    warmup_steps: int | None = None,
    clip_loss: float | None = None,
    architecture: str | None = None,
    field: str = "step_cache",
) -> StepCache | None:
    """The :class:`StepCache` of kind ``kind`` (None for ``none``), its published figures overridden
    by those given; ConfigError naming ``field`` when a figure or the model's architecture does not fit."""

    def at(name: str) -> str:
        return f"{field}.{name}" if field else name

    if kind == "none":
        return None
    found = STEP_CACHES.get(kind)
    if found is None:
        raise ConfigError(at("kind"), kind, f"allowed: {', '.join(NAMES)}", did_you_mean(kind, NAMES))
    if architecture is not None and architecture not in found.architectures:
        raise ConfigError(
            at("kind"),
            kind,
            f"{kind} works on {' and '.join(found.architectures)} models; this profile's model is a {architecture}",
        )
    s = found.speedup if speedup is None else float(speedup)
    w = found.warmup_steps if warmup_steps is None else int(warmup_steps)
    loss = found.clip_loss if clip_loss is None else float(clip_loss)
    p = found.published_steps
    if not 0 <= w < p:
        raise ConfigError(
            at("warmup_steps"), w, f"must be in 0..{p - 1} ({kind}'s published run has {p} steps)"
        )
    if not 1.0 <= s <= p / max(w, 1e-9):
        raise ConfigError(
            at("speedup"), s, f"must be in 1..{p / max(w, 1e-9):.3g}: with {w} of {p} steps computed in full"
        )
    if not 0.0 <= loss < 1.0:
        raise ConfigError(at("clip_loss"), loss, "must be a relative loss in [0, 1)")
    return StepCache(
        kind=kind, warmup_steps=w, compute_fraction=(p / s - w) / (p - w), loss_per_step=loss / (p - w)
    )
