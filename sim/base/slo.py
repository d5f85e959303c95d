"""Service-level objectives as a user writes them (``p95<=30``), and durations (``2h``).

An SLO is ``METRIC OP VALUE``: a latency percentile or mean in seconds (``p50``, ``p95``,
``p99``, ``mean``; a unit ``s``, ``ms`` or ``min`` may follow the number) that must stay at or
below a bound, or the share of requests within ``selector.slo_s`` (``attainment``, a fraction
or a percentage) or the mean expected CLIP score (``quality``) that must stay at or above one.
The direction is part of the grammar: adding GPUs can only lower latency and raise attainment,
which is what lets ``acsim plan`` bisect over GPU counts, so ``p95>=30`` is refused.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from sim.base.errors import ConfigError

# metric -> (summary column, "upper" (must stay below) or "lower" (must stay above), unit)
METRICS: dict[str, tuple[str, str, str]] = {
    "p50": ("p50_latency_s", "upper", "s"),
    "p95": ("p95_latency_s", "upper", "s"),
    "p99": ("p99_latency_s", "upper", "s"),
    "mean": ("mean_latency_s", "upper", "s"),
    "attainment": ("slo_attainment", "lower", ""),
    "quality": ("quality_clip", "lower", ""),
}
_OPS = ("<=", ">=", "<", ">")
_SLO = re.compile(r"^\s*([A-Za-z0-9_]+)\s*(<=|>=|<|>|==|=|!=)\s*([-+0-9.eE]+)\s*([A-Za-z%]*)\s*$")
_SECONDS = {"": 1.0, "s": 1.0, "ms": 1e-3, "min": 60.0}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(s|min|h|d)\s*$")
_DURATION_UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
EXAMPLE = "e.g. p95<=30, p99<2min, attainment>=0.99, attainment>=99%, quality>=29"


@dataclass(frozen=True)
class Slo:
    """One objective: ``metric op value`` on the summary column ``column``."""

    metric: str
    op: str
    value: float
    column: str
    text: str

    def met(self, row: Any) -> bool:
        """Whether a summary row (a mapping with ``column``) meets the objective; NaN never does."""
        x = float(row[self.column])
        if math.isnan(x):
            return False
        return {"<=": x <= self.value, "<": x < self.value, ">=": x >= self.value, ">": x > self.value}[
            self.op
        ]

    @property
    def upper(self) -> bool:
        """True when the metric must stay below its bound (latency), False when above."""
        return self.op in ("<=", "<")

    @property
    def label(self) -> str:
        """How tables and figures show it: ``p95 <= 30 s``, ``attainment >= 99%``."""
        unit = METRICS[self.metric][2]
        value = f"{100 * self.value:.4g}%" if self.metric == "attainment" else f"{self.value:g}"
        return f"{self.metric} {self.op} {value}" + (f" {unit}" if unit else "")


def parse_slo(text: Any, field: str = "--slo") -> Slo:
    """Parse ``METRIC OP VALUE``; ConfigError naming ``field`` for anything else."""
    if not isinstance(text, str):
        raise ConfigError(field, text, f"expected METRIC OP VALUE as a string, {EXAMPLE}")
    m = _SLO.match(text)
    if not m:
        raise ConfigError(field, text, f"expected METRIC OP VALUE, {EXAMPLE}")
    metric, op, number, unit = m.group(1).lower(), m.group(2), m.group(3), m.group(4)
    if metric not in METRICS:
        raise ConfigError(field, text, f"unknown metric {metric!r}; metrics: {', '.join(METRICS)}")
    if op not in _OPS:
        raise ConfigError(field, text, f"unknown operator {op!r}; operators: {', '.join(_OPS)}")
    try:
        value = float(number)
    except ValueError:
        raise ConfigError(field, text, f"{number!r} is not a number; {EXAMPLE}") from None
    if not math.isfinite(value):
        raise ConfigError(field, text, "the bound must be a finite number")
    column, direction, _ = METRICS[metric]
    upper = op in ("<=", "<")
    if upper != (direction == "upper"):
        need = "<= or <" if direction == "upper" else ">= or >"
        moves = "falls" if direction == "upper" else "rises"
        raise ConfigError(field, text, f"{metric} {moves} as GPUs are added, so bound it with {need}")
    if direction == "upper":
        if unit not in _SECONDS:
            raise ConfigError(
                field, text, f"latency unit {unit!r} unknown; use s, ms or min (or none: seconds)"
            )
        value *= _SECONDS[unit]
        if value <= 0:
            raise ConfigError(field, text, "a latency bound must be > 0 seconds")
    elif metric == "attainment":
        if unit == "%":
            value /= 100.0
        elif unit:
            raise ConfigError(
                field, text, f"attainment is a fraction (0.99) or a percentage (99%), not {unit!r}"
            )
        if not 0 < value <= 1:
            raise ConfigError(field, text, "attainment must be in (0, 1] (or (0%, 100%])")
    elif unit:
        raise ConfigError(field, text, f"{metric} takes no unit, not {unit!r}")
    return Slo(metric, op, value, column, text.strip())


def parse_duration(text: Any, field: str) -> float:
    """Seconds of a duration written ``90s``, ``30min``, ``2h`` or ``1.5d``; ConfigError naming ``field``."""
    m = _DURATION.match(text) if isinstance(text, str) else None
    if not m:
        raise ConfigError(field, text, "expected a duration with a unit: 90s, 30min, 2h or 1.5d")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]
