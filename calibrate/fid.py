"""Fréchet distance between two sets of images, on the image features of a local scorer model.

``FID = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` between Gaussians fitted to the
two sets' features (Heusel et al. 2017). The published FIDs use Inception-v3 pool features; this
module uses the image tower of the CLIP model it is given (FID on CLIP features, as Kynkäänniemi
et al. 2023 recommend), because no Inception weights can be fetched here. The numbers therefore
compare methods measured the same way; they are not on the scale of published Inception FIDs.
FID is biased upwards for small sets: with the ~100 pairs of a calibration run, read differences
between methods, not absolute values.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from scipy import linalg

from sim.base.errors import ConfigError, InputError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from calibrate.scorers import ClipScorer

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FID between the feature rows of ``a`` and of ``b`` (each at least two rows)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("FID needs at least two images in each set")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    covmean = linalg.sqrtm(s_a @ s_b)
    if not np.isfinite(covmean).all():
        # Singular products (fewer images than feature dimensions): regularise as pytorch-fid does.
        eps = np.eye(len(s_a)) * 1e-6
        covmean = linalg.sqrtm((s_a + eps) @ (s_b + eps))
    covmean = np.real(covmean)
    d = float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2.0 * np.trace(covmean))
    return max(d, 0.0)  # round-off can take a zero distance a hair below zero


def read_images(directory: str | Path) -> list[Image.Image]:
    """Every image file directly in ``directory`` (sorted by name), as RGB."""
    d = Path(directory)
    if not d.is_dir():
        raise ConfigError("--fid", str(d), "a directory of reference images (png, jpg, webp)")
    files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < 2:
        raise InputError(d, f"FID needs at least two reference images; found {len(files)}")
    out = []
    for f in files:
        try:
            with Image.open(f) as img:
                out.append(img.convert("RGB"))
        except OSError as exc:
            raise InputError(f, f"not a readable image: {exc}") from None
    return out


def features(scorer: ClipScorer, images: Sequence[Image.Image], batch: int = 16) -> np.ndarray:
    """Image features of ``images`` from ``scorer``'s image tower, in batches."""
    rows = [scorer.image_features(images[i : i + batch]) for i in range(0, len(images), batch)]
    return np.concatenate(rows) if rows else np.zeros((0, 0))
