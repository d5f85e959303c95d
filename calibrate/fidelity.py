"""How faithful a fast embedder is to a reference one (``acsim calibrate fidelity``).

Two measures, both against the reference embedder (default: MiniLM fp32 on PyTorch):

* **similarity correlation**: the Pearson correlation of the cosine similarities of every pair of
  a prompt list (the 5,000 DiffusionDB prompts: 12.5M pairs);
* **K agreement**: on a trace (the 1,000-request DiffusionDB sample), each request's best earlier
  prompt (its own prompt at 1.0 when it repeats), mapped to K by each embedder's own carried
  ladder (``calibrate/ladders/<embedder>.yaml``); the share of requests given the same K, and
  per K of the reference, the share of its requests the candidate gives that K too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Fidelity", "best_earlier", "k_for", "k_agreement", "pairwise_pearson"]


def pairwise_pearson(ref: np.ndarray, x: np.ndarray, block: int = 1024) -> float:
    """Pearson correlation of the pairwise cosines (i < j) of two embeddings of the same texts.

    Accumulated block by block, so 5,000 texts never hold a 5,000 x 5,000 matrix per embedder twice.
    """
    n = len(ref)
    sums = np.zeros(5)  # sum a, sum b, sum a^2, sum b^2, sum ab
    count = 0
    for lo in range(0, n, block):
        a = ref[lo : lo + block] @ ref.T
        b = x[lo : lo + block] @ x.T
        rows = np.arange(lo, lo + len(a))[:, None]
        upper = np.arange(n)[None, :] > rows
        a, b = a[upper].astype(np.float64), b[upper].astype(np.float64)
        sums += [a.sum(), b.sum(), (a * a).sum(), (b * b).sum(), (a * b).sum()]
        count += len(a)
    sa, sb, saa, sbb, sab = sums
    cov = sab - sa * sb / count
    return float(cov / np.sqrt((saa - sa * sa / count) * (sbb - sb * sb / count)))


def best_earlier(emb: np.ndarray, prompt_ids: np.ndarray) -> np.ndarray:
    """Per request, the similarity of its most similar prompt first seen before it (its own
    prompt counts 1.0); -inf for a request with no earlier prompt."""
    pids = np.asarray(prompt_ids, dtype=np.int64)
    first = np.full(len(emb), len(pids), np.int64)
    uniq, at = np.unique(pids, return_index=True)
    first[uniq] = at
    sims = emb[pids] @ emb.T
    sims[np.arange(len(pids)), pids] = 1.0
    sims[first[None, :] >= np.arange(len(pids))[:, None]] = -np.inf
    return sims.max(axis=1)


def k_for(sims: np.ndarray, ladder: Sequence[tuple[float, int]]) -> np.ndarray:
    """K per similarity: the first threshold (descending) strictly exceeded; 0 = miss (as sim.reuse.selector)."""
    out = np.zeros(len(sims), np.int64)
    for t, k in sorted(ladder):  # ascending: a higher rung overwrites a lower one
        out[sims > t] = k
    return out


def k_agreement(ref_k: np.ndarray, k: np.ndarray) -> tuple[float, pd.DataFrame]:
    """(share of requests with the same K, per reference K: requests and the share given that K)."""
    rows = []
    for level in sorted(set(ref_k.tolist()) | set(k.tolist()), reverse=True):
        mask = ref_k == level
        rows.append(
            {
                "k": level,
                "requests_ref": int(mask.sum()),
                "requests_candidate": int((k == level).sum()),
                "same_k": float((k[mask] == level).mean()) if mask.any() else float("nan"),
            }
        )
    return float((ref_k == k).mean()), pd.DataFrame(rows)


@dataclass
class Fidelity:
    """One embedder against the reference."""

    embedder: str
    reference: str
    prompts: int
    pearson: float
    requests: int
    k_agreement: float
    per_k: pd.DataFrame
    ladder: list[tuple[float, int]]
    reference_ladder: list[tuple[float, int]]
