"""Each request's own work: its denoising steps and image size (``trace.request_steps``,
``trace.request_resolution``).

Real traces vary per request: in the shipped DiffusionDB sample a quarter of the requests ran 150
steps and a third are not 512x512. A cache decides in the profile's schedule (K of the profile's
N steps); a request with its own schedule of N_i steps takes the K level as the same share of its
schedule, so a decision to run ``s`` of N steps runs

    s_i = N_i - round((N - s) * N_i / N)      (0 when s = 0: nothing runs on a GPU)

steps of its own. Its latent area relative to the profile's resolution, ``a_i = w_i h_i / R^2``,
scales what a step, a latent save and the VAE decode cost: linear in the latent area (assumed; a
U-Net's convolutions are linear in pixels, attention grows faster, so large images are
under-costed rather than over-costed). The text encoders do not depend on the size. A request
that makes b images of its prompt in one batch (``trace.request_images``) costs b times that area.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RequestWork:
    """Every request's full schedule (``full_steps``) and latent area relative to the profile's."""

    full_steps: np.ndarray  # int64, N_i
    area: np.ndarray  # float64, a_i
    profile_steps: int  # N, the schedule the cache decides in
    # trace.request_models: each request's base model (dense codes, most requested first; -1: any)
    # and LoRA count; None when the run does not model them.
    models: np.ndarray | None = None  # int32
    loras: np.ndarray | None = None  # int32
    # trace.request_images: the images each request makes in one batch (folded into ``area``);
    # None when the run does not model them.
    images: np.ndarray | None = None  # int32

    @classmethod
    def of(
        cls,
        profile_steps: int,
        resolution: int | None,
        steps: np.ndarray | None = None,
        width: np.ndarray | None = None,
        height: np.ndarray | None = None,
        n: int = 0,
    ) -> RequestWork:
        """From a trace's columns (NaN where a request does not say): a missing ``steps`` is the
        profile's N, a missing size the profile's resolution; ``steps``/``width`` None: not used."""
        full = np.full(n, profile_steps, dtype=np.int64)
        if steps is not None:
            s = np.asarray(steps, dtype=float)
            full = np.where(np.isfinite(s), s, profile_steps).astype(np.int64)
        area = np.ones(n, dtype=np.float64)
        if width is not None and height is not None and resolution:
            w = np.asarray(width, dtype=float)
            h = np.asarray(height, dtype=float)
            known = np.isfinite(w) & np.isfinite(h)
            area = np.where(known, w * h / float(resolution) ** 2, 1.0)
        return cls(full_steps=full, area=area, profile_steps=int(profile_steps))

    def with_images(self, images: np.ndarray) -> RequestWork:
        """The same work, each request making ``images`` images of its prompt in one batch (NaN:
        one). A batch of b images is taken to cost b images' denoising, latent saves and decoding,
        as if b times the area: the profiles' step times are near-linear in the batch at 1024^2
        (SDXL on an A10G: 2.303 s per step for 8 images, 8 x 0.303 s for one)."""
        b = np.asarray(images, dtype=float)
        b = np.where(np.isfinite(b) & (b >= 1), b, 1.0)
        return dataclasses.replace(self, area=self.area * b, images=b.astype(np.int32))

    def with_models(self, models: np.ndarray, loras: np.ndarray) -> RequestWork:
        """The same work, each request also naming its model code and LoRA count."""
        return dataclasses.replace(
            self, models=np.asarray(models, dtype=np.int32), loras=np.asarray(loras, dtype=np.int32)
        )

    def one(self, i: int, steps: int) -> int:
        """The steps request ``i`` runs of its own schedule for a decision to run ``steps`` of N
        (at least one when ``steps`` > 0: a resumed request still runs its last step)."""
        if steps <= 0:
            return 0
        full = int(self.full_steps[i])
        n = self.profile_steps
        return max(full - math.floor((n - steps) * full / n + 0.5), 1)

    def steps_run(self, steps: np.ndarray) -> np.ndarray:
        """:meth:`one` of every request, for the decisions' ``steps`` (in request order)."""
        return np.fromiter((self.one(i, int(s)) for i, s in enumerate(steps)), dtype=np.int64, count=len(steps))
