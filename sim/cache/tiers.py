"""Where cached latents live and how long a fetch takes.

A cache sits in one storage tier (``cache.tier: efs``) or in a hierarchy of tiers listed
fastest first (``cache.tier: host,nvme,efs``). In a hierarchy the most recently stored
bytes occupy the fastest tier and older bytes spill down in the order they were stored
(each tier holds its ``capacity_bytes``; the last tier takes the rest). A fetch costs the
latency and bandwidth of the tier the wanted latent has spilled to, which is a cheap,
deterministic stand-in for demotion by age.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sim.base.errors import ConfigError

if TYPE_CHECKING:
    from sim.base.profile import Profile, Tier


class TierPath:
    """The tier (or hierarchy of tiers) one cache stores its latents in."""

    def __init__(self, profile: Profile, spec: str | None) -> None:
        names = [n.strip() for n in (spec or profile.default_tier).split(",") if n.strip()]
        if not names:
            raise ConfigError("cache.tier", spec, "allowed: " + ", ".join(profile.tiers))
        for name in names:
            if name not in profile.tiers:
                raise ConfigError(
                    "cache.tier", spec, f"unknown tier {name!r}; allowed: {', '.join(profile.tiers)}"
                )
        self.tiers: list[Tier] = [profile.tiers[n] for n in names]
        for t in self.tiers[:-1]:
            if t.capacity_bytes is None:
                raise ConfigError(
                    "cache.tier",
                    spec,
                    f"tier {t.name!r} is unbounded, so it can only be the last of a hierarchy",
                )
        self.latent_bytes = profile.latent_bytes
        # Cumulative byte boundaries: a latent whose age (bytes stored after it) is below
        # bounds[j] sits in tier j.
        bounds, total = [], 0.0
        for t in self.tiers[:-1]:
            total += float(t.capacity_bytes or 0.0)
            bounds.append(total)
        self.bounds = bounds
        self.fetch_by_tier = [t.fetch_s(self.latent_bytes) for t in self.tiers]

    @property
    def name(self) -> str:
        """The tier names joined as in the config (``host,efs``)."""
        return ",".join(t.name for t in self.tiers)

    def fetch_s(self, age_bytes: float) -> float:
        """Seconds to fetch one latent that has ``age_bytes`` of newer bytes stored after it."""
        for j, bound in enumerate(self.bounds):
            if age_bytes < bound:
                return self.fetch_by_tier[j]
        return self.fetch_by_tier[-1]

    def price_per_gb_month_usd(self, cached_bytes: float) -> float:
        """Blended $/GB-month of ``cached_bytes`` filled into the tiers fastest first."""
        if cached_bytes <= 0:
            return self.tiers[-1].price_per_gb_month_usd
        left, dollars = cached_bytes, 0.0
        for j, t in enumerate(self.tiers):
            cap = (
                left if j == len(self.tiers) - 1 or t.capacity_bytes is None else min(left, t.capacity_bytes)
            )
            dollars += cap * t.price_per_gb_month_usd
            left -= cap
            if left <= 0:
                break
        return dollars / cached_bytes
