"""Dollars: GPU hours (provisioned and busy), latent storage and the vector index.

Prices come from the profile (each with its source there): the GPU's $/hour, each
storage tier's $/GB-month and the vector index's $/hour. Storage is billed on the bytes
the cache holds over the run (a GB-month is 2^30 bytes for 730 hours, as AWS bills).

Two GPU bills are reported: *busy* (GPU-seconds actually spent generating, i.e. an
elastic or serverless deployment that pays per use) and *provisioned* (every GPU of the
cluster for the whole run). ``total_usd`` uses the busy bill, so that caching shows up
as money saved; ``total_provisioned_usd`` is the fixed-cluster view. An autoscaled cluster
(``cluster.autoscale``) is provisioned with the GPUs it held, second by second
(:func:`held_gpu_seconds`), not with a fixed count for the whole run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from sim.cache.tiers import TierPath

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sim.base.profile import Profile

GB = 2**30
HOURS_PER_MONTH = 730.0


@dataclass(frozen=True)
class Cost:
    """One run's bill in US dollars."""

    gpu_hours_busy: float
    gpu_hours_provisioned: float
    gpu_busy_usd: float
    gpu_provisioned_usd: float
    storage_usd: float
    index_usd: float

    @property
    def total_usd(self) -> float:
        """Busy GPU time plus storage and index (pay-per-use GPUs)."""
        return self.gpu_busy_usd + self.storage_usd + self.index_usd

    @property
    def total_provisioned_usd(self) -> float:
        """Every provisioned GPU for the whole run plus storage and index."""
        return self.gpu_provisioned_usd + self.storage_usd + self.index_usd

    def as_dict(self) -> dict[str, float]:
        """The fields and both totals as plain floats."""
        return {
            **asdict(self),
            "total_usd": self.total_usd,
            "total_provisioned_usd": self.total_provisioned_usd,
        }


def storage_usd(profile: Profile, tier: str | None, mean_cached_bytes: float, duration_s: float) -> float:
    """Dollars for keeping ``mean_cached_bytes`` in ``tier`` (a name or hierarchy) for ``duration_s``."""
    if mean_cached_bytes <= 0 or duration_s <= 0:
        return 0.0
    price = TierPath(profile, tier).price_per_gb_month_usd(mean_cached_bytes)
    return mean_cached_bytes / GB * price * duration_s / 3600.0 / HOURS_PER_MONTH


class GpuGroup(NamedTuple):
    """GPUs of one type in a run: how many, their busy seconds and their $/hour each."""

    gpus: int
    busy_s: float
    price_per_hour_usd: float


def held_gpu_seconds(t_s: np.ndarray, held: np.ndarray, start: float, end: float) -> float:
    """The integral over ``[start, end]`` of the step function that is ``held[k]`` from ``t_s[k]`` on
    (0 before ``t_s[0]``)."""
    t = np.asarray(t_s, dtype=float)
    h = np.asarray(held, dtype=float)
    edges = np.clip(np.append(t, max(end, t[-1])), start, end)
    return float(np.sum(h * np.diff(edges)))


def run_cost(
    profile: Profile,
    *,
    gpu_price_per_hour_usd: float | None = None,
    gpus: int,
    duration_s: float,
    gpu_busy_s: float,
    mean_cached_bytes: float = 0.0,
    tier: str | None = None,
    uses_index: bool = False,
    groups: Sequence[GpuGroup] | None = None,
    held_gpu_s: float | None = None,
) -> Cost:
    """The bill of a run of ``duration_s`` seconds on ``gpus`` GPUs that kept them busy ``gpu_busy_s``.

    The GPU's hourly price is the profile's unless ``gpu_price_per_hour_usd`` gives the one of the
    model's own worker (e.g. the small model's block). A cluster of several GPU types gives
    ``groups`` (one per replica or type), each billed at its own price; ``gpus`` and
    ``gpu_busy_s`` are then their totals and neither price above is used. ``held_gpu_s``: the
    GPU-seconds an autoscaled cluster held, its provisioned bill (one GPU type).
    """
    if groups is None:
        price = profile.gpu_price_per_hour_usd if gpu_price_per_hour_usd is None else gpu_price_per_hour_usd
        groups = [GpuGroup(gpus, gpu_busy_s, price)]
    busy_h = sum(g.busy_s for g in groups) / 3600.0
    if held_gpu_s is None:
        prov_h = sum(g.gpus for g in groups) * duration_s / 3600.0
        prov_usd = sum(g.gpus * g.price_per_hour_usd for g in groups) * duration_s / 3600.0
    else:
        prov_h = held_gpu_s / 3600.0
        prov_usd = prov_h * groups[0].price_per_hour_usd
    return Cost(
        gpu_hours_busy=busy_h,
        gpu_hours_provisioned=prov_h,
        gpu_busy_usd=sum(g.busy_s * g.price_per_hour_usd for g in groups) / 3600.0,
        gpu_provisioned_usd=prov_usd,
        storage_usd=storage_usd(profile, tier, mean_cached_bytes, duration_s),
        index_usd=profile.index_per_hour_usd * duration_s / 3600.0 if uses_index else 0.0,
    )
