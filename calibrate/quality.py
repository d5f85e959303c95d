"""Quality calibration: what reusing a cached latent after K steps costs in image quality.

For each (cached prompt, new prompt) pair, with stock diffusers SDXL pipelines:

* the cached prompt is generated up to step K (``denoising_end = K/N``, ``output_type="latent"``);
* the new prompt resumes from those latents for the remaining N - K steps
  (``StableDiffusionXLImg2ImgPipeline.from_pipe(base)``, ``denoising_start = K/N``, ``image=latents``);
* the vanilla image (the new prompt, all N steps) and the GPTCache-style retrieved image (the cached
  prompt's own final image) are generated with the same seed.

Every image is scored against the new prompt. The loss of a method in a similarity bin is
``1 - mean(score) / mean(vanilla score)`` over the bin's pairs (a ratio of means: CLIP scores are
clipped at 0, so per-pair ratios can divide by zero). The ladder gives each bin the largest K whose
loss is at most ``max_loss``, lowered where needed so that K never falls as similarity rises.

Optionally, every image is also scored with PickScore (a second scorer), and each method's whole
set of images (vanilla, each K, retrieved) gets its FID against a directory of reference images
(:mod:`calibrate.fid`). The profile then carries measured ``quality.pickscore`` and ``quality.fid``
blocks (``by_k``, ``retrieved``) that the simulator uses instead of the published ratios.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from diffusers import StableDiffusionXLImg2ImgPipeline

from calibrate import fid as fid_mod
from calibrate.contact import contact_sheet
from calibrate.writer import MEASURED, carried, hardware_name
from sim.base.errors import ConfigError
from sim.base.io import atomic_path, atomic_write_csv

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from PIL import Image

    from calibrate.pairs import Pair
    from calibrate.pipelines import LoadedModel
    from calibrate.scorers import ClipScorer


class StepCounter:
    """Counts UNet forward calls (one per denoising step; guidance is batched into the same call)."""

    def __init__(self, unet: torch.nn.Module) -> None:
        self.calls = 0
        self._handle = unet.register_forward_pre_hook(self._hook)

    def _hook(self, module: Any, args: Any) -> None:
        self.calls += 1

    def take(self) -> int:
        """Calls since the last ``take``."""
        n, self.calls = self.calls, 0
        return n

    def close(self) -> None:
        """Remove the hook."""
        self._handle.remove()


def _gen(seed: int) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(seed)


def generate_to_k(
    pipe: Any, prompt: str, k: int, steps: int, resolution: int, seed: int, guidance: float
) -> torch.Tensor:
    """Latents of ``prompt`` after the first ``k`` of ``steps`` denoising steps (stock ``denoising_end``)."""
    return pipe(
        prompt=prompt,
        num_inference_steps=steps,
        denoising_end=k / steps,
        height=resolution,
        width=resolution,
        guidance_scale=guidance,
        output_type="latent",
        generator=_gen(seed),
    ).images


def resume(
    img2img: Any,
    prompt: str,
    latents: torch.Tensor,
    k: int,
    steps: int,
    seed: int,
    guidance: float,
    output_type: str = "pil",
) -> Any:
    """Run the last ``steps - k`` steps of ``prompt`` starting from ``latents`` (stock ``denoising_start``)."""
    out = img2img(
        prompt=prompt,
        image=latents,
        num_inference_steps=steps,
        denoising_start=k / steps,
        guidance_scale=guidance,
        output_type=output_type,
        generator=_gen(seed),
    ).images
    return out[0] if output_type == "pil" else out


def generate(pipe: Any, prompt: str, steps: int, resolution: int, seed: int, guidance: float) -> Image.Image:
    """The full ``steps``-step image of ``prompt``."""
    return pipe(
        prompt=prompt,
        num_inference_steps=steps,
        height=resolution,
        width=resolution,
        guidance_scale=guidance,
        generator=_gen(seed),
    ).images[0]


def check_split(scheduler: Any, steps: int, ks: Sequence[int]) -> None:
    """Raise unless ``denoising_end = K/N`` runs exactly K steps (and the resume N - K) for every K.

    Diffusers cuts the schedule at a training timestep (``round(T * (1 - K/N))``); with ``leading``
    spacing that lands between steps K and K+1 only when the step ratio ``T // N`` divides evenly.
    """
    sched = copy.deepcopy(scheduler)
    sched.set_timesteps(steps)
    total = int(sched.config.num_train_timesteps)
    bad = []
    for k in ks:
        cutoff = int(round(total - k / steps * total))
        first = int((sched.timesteps >= cutoff).sum())
        if first != k or len(sched.timesteps) - first != steps - k:
            bad.append(f"K={k} runs {first}")
    if bad:
        raise ConfigError(
            "--steps/--k",
            f"N={steps}, K={','.join(map(str, ks))}",
            f"an N whose schedule splits exactly at each K ({'; '.join(bad)}); N = 10, 20, 25, 50 or 100 do",
        )


def bin_edges_check(bins: Sequence[float]) -> list[float]:
    """Validate similarity bin edges: at least two, strictly increasing."""
    edges = [float(b) for b in bins]
    if len(edges) < 2 or any(b >= a for a, b in zip(edges[1:], edges, strict=False)):
        raise ConfigError("--bins", ",".join(map(str, bins)), "at least two strictly increasing edges")
    return edges


def assign_bins(similarity: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Bin index of each similarity (the last bin is closed on the right); -1 outside the edges."""
    idx = np.searchsorted(np.asarray(edges), similarity, side="right") - 1
    idx[similarity == edges[-1]] = len(edges) - 2
    idx[(similarity < edges[0]) | (similarity > edges[-1]) | np.isnan(similarity)] = -1
    return idx


def quality_table(scores: pd.DataFrame, edges: Sequence[float], ks: Sequence[int]) -> pd.DataFrame:
    """Mean scores and relative loss vs vanilla by (similarity bin, K) from the per-image ``scores``."""
    wide = scores.pivot_table(index="pair", columns="method", values="score", aggfunc="first")
    pick = (
        scores.pivot_table(index="pair", columns="method", values="pickscore", aggfunc="first")
        if "pickscore" in scores
        else None
    )
    sims = scores.groupby("pair")["similarity"].first()
    bins = assign_bins(sims.to_numpy(dtype=float), edges)
    rows = []
    for b in range(len(edges) - 1):
        members = sims.index[bins == b]
        if len(members) == 0:
            continue
        part = wide.loc[members]
        vanilla = float(part["vanilla"].mean())
        retrieval = float(part["retrieved"].mean())
        for k in ks:
            mean = float(part[f"k{k}"].mean())
            row = {
                "bin_lo": edges[b],
                "bin_hi": edges[b + 1],
                "k": k,
                "pairs": len(members),
                "score_mean": mean,
                "vanilla_mean": vanilla,
                "relative_loss": 1.0 - mean / vanilla if vanilla > 0 else math.nan,
                "retrieved_mean": retrieval,
                "retrieved_relative_loss": 1.0 - retrieval / vanilla if vanilla > 0 else math.nan,
            }
            if pick is not None:
                ppart = pick.loc[members]
                row["pickscore_mean"] = float(ppart[f"k{k}"].mean())
                row["pickscore_vanilla_mean"] = float(ppart["vanilla"].mean())
                row["pickscore_retrieved_mean"] = float(ppart["retrieved"].mean())
            rows.append(row)
    return pd.DataFrame(rows)


def derive_ladder(table: pd.DataFrame, max_loss: float) -> list[tuple[float, int]]:
    """(threshold, K) rungs, thresholds descending: per bin the largest K with loss <= ``max_loss``.

    K is made non-decreasing in similarity by lowering a bin's K to that of any higher bin
    (a noisy bin never earns more reuse than a more similar one); bins with no acceptable K
    and empty bins give no rung, and neighbouring rungs with equal K merge into the lower one.
    """
    best: list[tuple[float, int]] = []
    for lo, part in table.groupby("bin_lo", sort=True):
        ok = part[part["relative_loss"] <= max_loss]
        best.append((float(lo), int(ok["k"].max()) if len(ok) else 0))
    rungs: list[tuple[float, int]] = []
    cap = math.inf
    for lo, k in reversed(best):
        k = int(min(k, cap))
        cap = k
        if k <= 0:
            continue
        if rungs and rungs[-1][1] == k:
            rungs[-1] = (lo, k)
        else:
            rungs.append((lo, k))
    return rungs


@dataclass
class QualityResult:
    """Outputs of a quality run."""

    scores: pd.DataFrame  # one row per (pair, method): pair, similarity, method, k, steps_run, score, image
    table: pd.DataFrame  # quality_table()
    ladder: list[tuple[float, int]]
    ks: list[int]
    steps: int
    resolution: int
    max_loss: float
    guidance: float
    scorer: str
    similarity_source: str
    embedder: str  # whose similarities the ladder's thresholds are
    out_dir: Path
    table_path: Path
    scores_path: Path
    sheet_path: Path
    pickscorer: str | None = None  # the PickScore scorer, when the run scored with one
    fid: dict[str, float] | None = None  # method -> FID of its image set against the reference
    fid_note: str = ""  # features and reference set of ``fid``


def _save_png(img: Image.Image, path: Path) -> str:
    """Write ``img``; returns its path relative to the output directory (which may be moved whole)."""
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return f"{path.parent.name}/{path.name}"


def run(
    model: LoadedModel,
    pairs: Sequence[Pair],
    scorer: ClipScorer,
    ks: Sequence[int],
    steps: int,
    out_dir: str | Path,
    bins: Sequence[float] = (0.0, 0.65, 0.75, 0.85, 0.9, 0.95, 1.0),
    max_loss: float = 0.05,
    resolution: int | None = None,
    guidance: float = 5.0,
    seed: int = 0,
    embedder: str = "clip",
    progress: Callable[[str], None] | None = None,
    pickscorer: ClipScorer | None = None,
    fid_reference: Sequence[Image.Image] | None = None,
    fid_name: str = "reference images",
) -> QualityResult:
    """Generate, score and tabulate every pair; write images, CSVs and the contact sheet into ``out_dir``.

    ``embedder`` names where the pairs file's similarity column came from (the ladder's embedder);
    without that column the scorer's text encoder computes the similarities and names the ladder.
    With ``pickscorer`` every image is also scored with PickScore (column ``pickscore``); with
    ``fid_reference`` (at least two images, called ``fid_name``) each method's set of images gets
    its FID against them, on the image features of ``scorer`` (``fid_by_method.csv``).
    """
    if model.family != "sdxl":
        raise ConfigError(
            "--model", model.name, "an SDXL-family pipeline (sdxl, tiny-sdxl or an SDXL directory)"
        )
    ks = sorted(set(int(k) for k in ks))
    if not ks or ks[0] < 1 or ks[-1] >= steps:
        raise ConfigError("--k", ",".join(map(str, ks)), f"K levels between 1 and {steps - 1} (N = {steps})")
    if not 0 < max_loss < 1:
        raise ConfigError("--max-loss", max_loss, "a fraction between 0 and 1, e.g. 0.05")
    edges = bin_edges_check(bins)
    res = resolution or model.resolution
    say = progress or (lambda _msg: None)
    out = Path(out_dir)
    img_dir = out / "images"
    base = model.pipe
    check_split(base.scheduler, steps, ks)
    img2img = StableDiffusionXLImg2ImgPipeline.from_pipe(base)
    img2img.set_progress_bar_config(disable=True)

    if all(math.isnan(p.similarity) for p in pairs):
        sims = scorer.text_similarity([p.cached for p in pairs], [p.new for p in pairs])
        source = f"{scorer.name} text cosine"
        embedder = scorer.name
    elif any(math.isnan(p.similarity) for p in pairs):
        raise ConfigError("pairs similarity", "partly empty", "a similarity on every row, or on none")
    else:
        sims = np.array([p.similarity for p in pairs])
        source = "similarity column of the pairs file"

    if fid_reference is not None and (len(fid_reference) < 2 or len(pairs) < 2):
        raise ConfigError("--fid", fid_name, "at least two reference images and at least two pairs")
    method_features: dict[str, list[np.ndarray]] = {}
    counter = StepCounter(base.unet)
    records: list[dict[str, Any]] = []
    sheet_rows: list[list[Image.Image | None]] = []
    labels: list[str] = []
    try:
        for i, pair in enumerate(pairs):
            s = seed + i
            images: dict[str, Image.Image] = {}
            steps_run: dict[str, int] = {}
            with torch.inference_mode():
                images["retrieved"] = generate(base, pair.cached, steps, res, s, guidance)
                steps_run["retrieved"] = counter.take()
                images["vanilla"] = generate(base, pair.new, steps, res, s, guidance)
                steps_run["vanilla"] = counter.take()
                for k in ks:
                    latents = generate_to_k(base, pair.cached, k, steps, res, s, guidance)
                    first = counter.take()
                    images[f"k{k}"] = resume(img2img, pair.new, latents, k, steps, s, guidance)
                    second = counter.take()
                    if (first, second) != (k, steps - k):
                        raise RuntimeError(f"split at K={k} of N={steps} ran {first} + {second} UNet steps")
                    steps_run[f"k{k}"] = second
            methods = list(images)
            batch = [images[m] for m in methods]
            scores = scorer.score(batch, [pair.new] * len(methods))
            picks = pickscorer.score(batch, [pair.new] * len(methods)) if pickscorer else None
            if fid_reference is not None:
                for m, row in zip(methods, scorer.image_features(batch), strict=True):
                    method_features.setdefault(m, []).append(row)
            for j, (m, sc) in enumerate(zip(methods, scores, strict=True)):
                rec = {
                    "pair": i,
                    "cached_prompt": pair.cached,
                    "new_prompt": pair.new,
                    "similarity": float(sims[i]),
                    "method": m,
                    "k": int(m[1:]) if m.startswith("k") else (0 if m == "vanilla" else -1),
                    "steps_run": steps_run[m],
                    "score": float(sc),
                    "image": _save_png(images[m], img_dir / f"pair{i:04d}_{m}.png"),
                }
                if picks is not None:
                    rec["pickscore"] = float(picks[j])
                records.append(rec)
            sheet_rows.append([images["retrieved"], *(images[f"k{k}"] for k in ks), images["vanilla"]])
            labels.append(f"#{i} s={sims[i]:.3f}\ncached: {pair.cached}\nnew: {pair.new}")
            say(
                f"pair {i + 1}/{len(pairs)} s={sims[i]:.3f}: "
                + ", ".join(f"{m} {sc:.2f}" for m, sc in zip(methods, scores, strict=True))
            )
    finally:
        counter.close()

    scores_df = pd.DataFrame(records)
    table = quality_table(scores_df, edges, ks)
    fid = None
    fid_note = ""
    if fid_reference is not None:
        ref = fid_mod.features(scorer, fid_reference)
        fid = {m: fid_mod.frechet_distance(np.vstack(rows), ref) for m, rows in method_features.items()}
        fid_note = (
            f"FID of each method's {len(pairs)} images against {len(fid_reference)} {fid_name}, "
            f"on the image features of {scorer.name} (not Inception-v3: not on the published FID scale)"
        )
        atomic_write_csv(
            out / "fid_by_method.csv", pd.DataFrame({"method": list(fid), "fid": list(fid.values())})
        )
        say("FID: " + ", ".join(f"{m} {v:.2f}" for m, v in fid.items()))
    ladder = derive_ladder(table, max_loss)
    columns = ["cached prompt's image (= retrieved)", *(f"Nirvana K={k}" for k in ks), "vanilla (new prompt)"]
    sheet = contact_sheet(sheet_rows, columns, labels, out / "contact_sheet.png")
    scores_path = atomic_write_csv(out / "scores.csv", scores_df)
    table_path = atomic_write_csv(out / "quality_by_bin_k.csv", table)
    return QualityResult(
        scores=scores_df,
        table=table,
        ladder=ladder,
        ks=ks,
        steps=steps,
        resolution=res,
        max_loss=max_loss,
        guidance=guidance,
        scorer=scorer.name,
        similarity_source=source,
        embedder=embedder,
        out_dir=out,
        table_path=table_path,
        scores_path=scores_path,
        sheet_path=sheet,
        pickscorer=pickscorer.name if pickscorer else None,
        fid=fid,
        fid_note=fid_note,
    )


def _retrieval_fit(scores: pd.DataFrame) -> tuple[float, float, str]:
    ret = scores[scores["method"] == "retrieved"]
    x, y = ret["similarity"].to_numpy(float), ret["score"].to_numpy(float)
    if np.unique(x).size < 2:
        return float(y.mean()), 0.0, f"mean of {len(y)} retrieved images (one similarity value: no slope)"
    slope, intercept = np.polyfit(x, y, 1)
    return float(intercept + slope), float(slope), f"least-squares line through {len(y)} retrieved images"


def to_profile(
    base: dict[str, Any], result: QualityResult, model: LoadedModel, env: dict[str, Any]
) -> dict[str, Any]:
    """The base profile with the ladder, k_levels and quality blocks replaced by ``result``."""

    data = copy.deepcopy(base)
    base_name = data.get("_base_name", "base")
    n_pairs = int(result.scores["pair"].nunique())
    run = (
        f"acsim calibrate quality {env['date']}: {model.name}{' (random weights)' if model.random_weights else ''}, "
        f"{result.steps} steps, {result.resolution}px, guidance {result.guidance}, {n_pairs} pairs, "
        f"scorer {result.scorer}, on {hardware_name(env)}"
    )
    m = data["model"]
    if int(m["steps"]) != result.steps:
        fields = m.setdefault("fields", {})
        fields["steps"] = {"kind": MEASURED, "source": f"N of the quality run ({run})"}
        m["steps"] = result.steps

    data["ladder"] = {
        "embedder": result.embedder,
        "thresholds": [[t, k] for t, k in result.ladder],
        "max_loss": result.max_loss,
        "similarity": result.similarity_source,
        "kind": MEASURED,
        "source": f"{run}; per similarity bin the largest K with mean relative CLIP-score loss <= {result.max_loss}",
    }
    data["k_levels"] = list(result.ks)

    sc = result.scores
    vanilla = float(sc.loc[sc["method"] == "vanilla", "score"].mean())
    rel = {0: 1.0}
    for k in result.ks:
        mean = float(sc.loc[sc["method"] == f"k{k}", "score"].mean())
        rel[k] = mean / vanilla if vanilla > 0 else 0.0
    at_1, slope, fit = _retrieval_fit(sc)
    q_old = data.get("quality") or {}
    q = {
        "metric": "clip_score",
        "scorer": result.scorer,
        "vanilla": vanilla,
        "relative_by_k": rel,
        "retrieval_at_1": at_1,
        "retrieval_slope_per_unit_s": slope,
        "exact": vanilla,
        "by_similarity_bin": [
            {
                "bin": [float(lo), float(part["bin_hi"].iloc[0])],
                "pairs": int(part["pairs"].iloc[0]),
                "relative_loss_by_k": {int(r.k): float(r.relative_loss) for r in part.itertuples()},
                "retrieved_relative_loss": float(part["retrieved_relative_loss"].iloc[0]),
            }
            for lo, part in result.table.groupby("bin_lo", sort=True)
        ],
        "kind": MEASURED,
        "source": f"{run}; retrieval: {fit}; exact = vanilla (the identical prompt's image)",
    }
    if result.pickscorer is not None:
        pick_v = float(sc.loc[sc["method"] == "vanilla", "pickscore"].mean())
        q["pickscore"] = {
            "vanilla": pick_v,
            "by_k": {k: float(sc.loc[sc["method"] == f"k{k}", "pickscore"].mean()) for k in result.ks},
            "retrieved": float(sc.loc[sc["method"] == "retrieved", "pickscore"].mean()),
            "scorer": result.pickscorer,
        }
    if result.fid is not None:
        q["fid"] = {
            "vanilla": result.fid["vanilla"],
            "by_k": {k: result.fid[f"k{k}"] for k in result.ks},
            "retrieved": result.fid["retrieved"],
            "note": result.fid_note,
        }
    # What this run did not measure keeps its value and its provenance from the base profile.
    keep = [key for key in ("pickscore", "fid", "corpus_retrieval") if key in q_old and key not in q]
    for key in keep:
        q[key] = q_old[key]
    measured = [key for key in ("pickscore", "fid") if key in q and key not in keep]
    fields = carried(q_old, keep, base_name)
    fields.update({key: {"kind": MEASURED, "source": run} for key in measured})
    if fields:
        q["fields"] = fields
    data["quality"] = q
    return data
