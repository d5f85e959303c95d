"""Per-request records: one row per (system, request), the engine's only output.

Both replay paths (cache-only and full SimPy) fill a :class:`RecordBuffer` of
preallocated numpy columns and turn it into a DataFrame; metrics and plots read
only these columns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

OUTCOMES = ("bypass", "miss", "hit", "hole", "retrieval", "exact")
OUTCOME_CODE = {name: i for i, name in enumerate(OUTCOMES)}
# Outcomes that reused something from the cache.
REUSE_OUTCOMES = ("hit", "hole", "retrieval", "exact")

FLOAT_COLUMNS = (
    "arrival_s", "start_s", "finish_s", "queue_s", "lookup_s", "fetch_s", "latency_s",
    "similarity", "gpu_s", "quality",
)
INT_COLUMNS = ("request", "prompt_id", "user", "matched", "k_planned", "k_used", "steps", "saved_latents")
# saved_latents: intermediate latents the request's generation saved for the cache (each costs GPU
# time per step while it runs; see System.saved_latents).
COLUMNS = ("system", *INT_COLUMNS[:3], *FLOAT_COLUMNS[:7], "outcome", "matched", "similarity",
           "k_planned", "k_used", "steps", "saved_latents", "gpu_s", "quality")


class RecordBuffer:
    """Preallocated columns for ``n`` requests of one system (NaN until filled)."""

    def __init__(self, system: str, n: int) -> None:
        self.system = system
        self.n = n
        self.f = {c: np.full(n, np.nan) for c in FLOAT_COLUMNS}
        self.i = {c: np.full(n, -1, dtype=np.int64) for c in INT_COLUMNS}
        self.outcome = np.zeros(n, dtype=np.int8)

    def to_frame(self) -> pd.DataFrame:
        """The records as a DataFrame with the columns in :data:`COLUMNS`. The frame takes the
        buffer's arrays as they are (a copy would double the records' memory at millions of
        rows), so the buffer is not to be used afterwards."""
        data: dict[str, object] = {
            "system": pd.Categorical.from_codes(np.zeros(self.n, np.int8), categories=[self.system]),
            "outcome": pd.Categorical.from_codes(self.outcome, categories=list(OUTCOMES)),
            **self.i,
            **self.f,
        }
        return pd.DataFrame({c: data[c] for c in COLUMNS}, copy=False)
