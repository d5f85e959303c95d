"""``acsim calibrate``: measure a model and write the profile the simulator runs on.

Heavy libraries (torch, diffusers) are imported inside the command functions so that
``acsim --help`` stays instant.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from sim.base.errors import ConfigError, InputError

# The paper's quality table, shipped with the experiments that compare against it.
_REFERENCE = Path(__file__).resolve().parents[2] / "experiments" / "paper_quality_reference.csv"

_DESCRIPTION = """\
Measure a diffusion model on this machine and write a calibration profile (schema
acsim-profile/1) that `acsim run` reads with `profile: path/to/profile.yaml`.

  latency     per-step denoising time by batch size, text encoder, VAE decode, latent
              save/load and size, peak GPU memory
  quality     image quality when K of N steps come from another prompt's cached latent;
              derives the similarity -> K ladder from the loss you accept
  thresholds  carries a ladder to another embedder by matching quantiles of logged pairs
  fidelity    a fast embedder against a reference: similarity correlation and K agreement
  fit-quality fits the retrieval quality line and PINECONE's gate to the paper's system
              averages and reports every paper row beside acsim's

Every number a run measures is marked `kind: measured`; everything else is carried over
from --base (default: the shipped sdxl-a10g profile) and keeps its kind and source. Chain
runs by passing one run's output as the next run's --base.
"""

_MODEL_HELP = (
    "a preset (sdxl, sd15, sd21, flux-dev, flux-schnell: the published architecture with random "
    "weights, for timing; tiny, tiny-sdxl, tiny-flux: miniature models for tests and demos) or a "
    "local diffusers directory (FLUX.1 directories are timed by `calibrate latency` only)"
)

_EPILOG_LATENCY = """\
examples:
  # what a GPU user runs for SDXL (random weights time the same as real ones):
  acsim calibrate latency --model sdxl --device cuda --dtype fp16 --resolution 1024 \\
      --batch 1,2,4,8 --steps 50 --out results/sdxl-mygpu.yaml
  # the real model from a local diffusers directory:
  acsim calibrate latency --model /models/stable-diffusion-xl-base-1.0 --device cuda --out my.yaml
  # a seconds-long demo on a CPU:
  acsim calibrate latency --model tiny --device cpu --batch 1,2 --out results/tiny-profile.yaml
  # a distilled few-step model as the profile's small model (SMALLMODEL baseline), on top of a
  # profile measured before (its main-model blocks are kept):
  acsim calibrate latency --small-model --model /models/sdxl-lightning-4step --device cuda --dtype fp16 \\
      --steps 4 --guidance 0 --base results/sdxl-mygpu.yaml --out results/sdxl-mygpu-small.yaml
"""

_EPILOG_QUALITY = """\
examples:
  acsim calibrate quality --model /models/stable-diffusion-xl-base-1.0 --device cuda --dtype fp16 \\
      --pairs prompts.csv --scorer clip:/models/clip-vit-large-patch14 \\
      --k 5,10,15,20,25 --max-loss 0.05 --base results/sdxl-mygpu.yaml --out results/quality-sdxl
  acsim calibrate quality --model tiny-sdxl --pairs pairs.csv --scorer tiny --k 2,4,6 --steps 10 \\
      --limit 4 --out results/quality-tiny
  # the paper's three metrics: PickScore from a local PickScore directory, FID against real images
  acsim calibrate quality --model /models/stable-diffusion-xl-base-1.0 --device cuda --dtype fp16 \\
      --pairs pairs.csv --scorer clip:/models/clip-vit-large-patch14 --pickscore pickscore:/models/PickScore_v1 \\
      --fid /data/diffusiondb-images --out results/quality-sdxl

pairs CSV: columns cached_prompt,new_prompt[,similarity], or the AccuScale log format
(Prompt = new prompt, Noise = cached prompt, score = similarity), as in the prototype's
pipeline/cache_logs/prompts.csv (github.com/skejriwal44/Argus_T2I). Without a similarity
column the scorer's text encoder computes it.

FID (--fid DIR) is computed per method (vanilla, each K, retrieved) over all the run's images
against the images in DIR, on the image features of --scorer's CLIP model: comparable between
methods, not on the scale of published (Inception-v3) FIDs, and biased upwards for small sets.
"""

_EPILOG_THRESHOLDS = """\
examples:
  acsim calibrate thresholds --pairs log_prompts_sample.csv --from clip \\
      --to minilm --base sdxl-a10g --out results/sdxl-a10g-minilm.yaml

The shipped ladders were carried on the approximate-cache prototype's match log (20,000 logged
query / cached prompt / CLIP-text score triples): pipeline/cache_logs/log_prompts_sample.csv of
github.com/skejriwal44/Argus_T2I. acsim does not ship it (its licence is not stated).

The ladder's thresholds are CLIP-text cosines. Each threshold t is mapped to the target embedder's
similarity at the same quantile of the logged (query, cached prompt) pairs, so the share of
logged pairs that clears every rung is unchanged.
"""


def _int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(flag, text, "a comma-separated list of integers, e.g. 1,2,4,8") from None
    if not values:
        raise ConfigError(flag, text, "at least one integer")
    if min(values) < 1:
        raise ConfigError(flag, text, "positive integers")
    return values


def _float_list(text: str, flag: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(flag, text, "a comma-separated list of numbers") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise ConfigError(flag, text, "a comma-separated list of finite numbers")
    return values


# Options a measurement cannot run with: (attribute, flag, test, what is allowed). Checked before
# a model is built, so a bad value is one line, not a traceback or a silent default.
_LIMITS = (
    ("steps", "--steps", lambda v: 1 <= v <= 1000, "a whole number of denoising steps in 1..1000"),
    ("threads", "--threads", lambda v: v >= 1, "a number of CPU threads of at least 1"),
    ("seed", "--seed", lambda v: 0 <= v < 2**63, "an integer in 0..2^63-1"),
    ("resolution", "--resolution", lambda v: 8 <= v <= 8192 and v % 8 == 0, "a multiple of 8 in 8..8192 pixels"),
    ("guidance", "--guidance", lambda v: math.isfinite(v) and v >= 0, "a finite guidance scale >= 0"),
    ("repeats", "--repeats", lambda v: v >= 1, "at least 1 timed run"),
    ("warmup", "--warmup", lambda v: v >= 0, "0 or more warm-up runs"),
    ("max_loss", "--max-loss", lambda v: math.isfinite(v) and 0 < v <= 1, "a relative loss in (0, 1]"),
    ("limit", "--limit", lambda v: v >= 1, "at least 1"),
)


def _check_limits(args: argparse.Namespace) -> None:
    """Raise ConfigError for the first option of ``args`` outside what can be measured (:data:`_LIMITS`)."""
    for attr, flag, ok, allowed in _LIMITS:
        value = getattr(args, attr, None)
        if value is not None and not ok(value):
            raise ConfigError(flag, value, allowed)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The run's resolved command-line options, for the profile's provenance."""
    return {
        k.rstrip("_"): v for k, v in vars(args).items() if k not in ("func", "command", "calibrate_command")
    }


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _check_model_dir(model: str) -> None:
    """A local diffusers directory is checked before torch and diffusers are even imported."""
    from traces.model_dirs import check_model_dir

    if (Path(model) / "model_index.json").is_file():
        problem = check_model_dir("diffusers", model)
        if problem:
            raise ConfigError("--model", model, problem)


def _setup_torch(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)


def _default_dtype(args: argparse.Namespace) -> str:
    return args.dtype or ("fp16" if args.device.startswith("cuda") else "fp32")


def cmd_latency(args: argparse.Namespace) -> int:
    """Time denoising steps by batch size, the text encoders, VAE decode and latent I/O; write a profile."""
    _check_limits(args)
    _int_list(args.batch, "--batch")
    _check_model_dir(args.model)
    from calibrate import latency, writer
    from calibrate.pipelines import load_model

    _setup_torch(args)
    base = writer.load_base(args.base)
    small = args.small_model
    guidance = args.guidance if args.guidance is not None else (0.0 if small else None)
    if small:
        steps = args.steps or int((base.get("small_model") or {}).get("steps", 4))
    else:
        steps = args.steps or int(base["model"]["steps"])
        latency.check_steps(base, steps)  # before minutes of timing, not after
    writer.check_out(args.out)
    dtype = _default_dtype(args)
    _say(f"building {args.model} on {args.device} ({dtype}) ...")
    model = load_model(args.model, args.device, dtype, args.seed)
    out = Path(args.out)
    result = latency.measure(
        model,
        _int_list(args.batch, "--batch"),
        steps,
        args.resolution,
        args.repeats,
        args.warmup,
        args.seed,
        scratch=args.scratch or out.resolve().parent,
        progress=_say,
        guidance=guidance,
    )
    env = writer.environment(model.device)
    if small:
        data = latency.to_small_model(base, result, model, env)
        what = f"small model {model.name} measured on {writer.hardware_name(env)}"
    else:
        data = latency.to_profile(base, result, model, env)
        what = f"latency measured for {model.name} on {writer.hardware_name(env)}"
    name = args.name or writer.profile_name(out)
    data = writer.finish(
        data, name, f"{what}; other blocks from {args.base}", {"command": "latency", "options": _options(args), **env}
    )
    profile = writer.write_profile(out, data)
    gm = profile.gpu_model("small_model" if small else "model")
    print(f"wrote {out}: {gm.block} {gm.name}, {gm.steps} steps, step time by batch (s) {gm.denoise_step_s}")
    return 0


def cmd_quality(args: argparse.Namespace) -> int:
    """Generate pairs with and without a reused latent at each K, score them, derive the ladder."""
    from sim.app import outputs

    _check_limits(args)
    _float_list(args.bins, "--bins")
    _int_list(args.k, "--k")
    out = Path(args.out)
    outputs.check_target(out, "quality", "--out")  # before minutes of generation
    _check_model_dir(args.model)
    from calibrate import fid, writer
    from calibrate.pairs import read_pairs
    from calibrate.pipelines import load_model
    from calibrate.scorers import get_scorer
    _setup_torch(args)
    base = writer.load_base(args.base)
    steps = args.steps or int(base["model"]["steps"])
    ks = _int_list(args.k, "--k")
    pairs = read_pairs(args.pairs, limit=args.limit)
    reference = fid.read_images(args.fid) if args.fid else None  # before minutes of generation
    dtype = _default_dtype(args)
    _say(f"building {args.model} on {args.device} ({dtype}); scorer {args.scorer} ...")
    model = load_model(args.model, args.device, dtype, args.seed)
    scorer = get_scorer(args.scorer, args.device)
    pickscorer = get_scorer(args.pickscore, args.device) if args.pickscore else None
    if pickscorer is not None and not pickscorer.pickscore:
        raise ConfigError("--pickscore", args.pickscore, "pickscore:PATH or tiny-pickscore")
    # Written into a scratch directory that replaces --out whole when everything is there.
    with outputs.staging_dir(out, "quality", "--out") as tmp:
        result, profile = _quality_into(tmp, out, args, model, pairs, scorer, ks, steps, base, reference, pickscorer)
    print(result.table.to_string(index=False))
    print(f"ladder (similarity >= threshold -> K): {list(profile.ladder)}")
    shown = [out / Path(p).relative_to(tmp) for p in (result.table_path, result.scores_path, result.sheet_path)]
    print(f"wrote {out / 'profile.yaml'}, {shown[0]}, {shown[1]}, contact sheet {shown[2]}")
    return 0


def _quality_into(
    tmp: Path, out: Path, args: argparse.Namespace, model: Any, pairs: Any, scorer: Any, ks: list[int],
    steps: int, base: dict[str, Any], reference: Any, pickscorer: Any,
) -> tuple[Any, Any]:
    """The body of ``calibrate quality`` writing into ``tmp`` (named ``out`` in the profile)."""
    from calibrate import quality, writer

    result = quality.run(
        model,
        pairs,
        scorer,
        ks,
        steps,
        tmp,
        bins=_float_list(args.bins, "--bins"),
        max_loss=args.max_loss,
        resolution=args.resolution,
        guidance=args.guidance,
        seed=args.seed,
        embedder=args.embedder,
        progress=_say,
        pickscorer=pickscorer,
        fid_reference=reference,
        fid_name=f"images of {args.fid}",
    )
    env = writer.environment(model.device)
    data = quality.to_profile(base, result, model, env)
    data = writer.finish(
        data,
        args.name or out.name,
        f"quality and ladder measured for {model.name} with scorer {scorer.name}; other blocks from {args.base}",
        {"command": "quality", "options": _options(args), **env},
    )
    return result, writer.write_profile(tmp / "profile.yaml", data)


def _command_line(args: argparse.Namespace) -> str:
    """The ``acsim calibrate thresholds`` command that reproduces this run (for provenance; the
    match log by its file name, which the ladder's ``log_sha256`` pins down)."""
    parts = ["acsim calibrate thresholds", f"--pairs {Path(args.pairs).name}", f"--from {args.from_}", f"--to {args.to}"]
    options = (("base", args.base), ("ladder", args.ladder), ("limit", args.limit), ("ladder-out", args.ladder_out))
    parts += [f"--{k} {v}" for k, v in options if v]
    return " ".join(parts)


def cmd_thresholds(args: argparse.Namespace) -> int:
    """Carry a similarity->K ladder to another embedder by matching quantiles of logged pairs."""
    from calibrate import thresholds, writer

    _check_limits(args)
    if not args.out and not args.ladder_out:
        raise ConfigError("--out", None, "give --out (a profile), --ladder-out (the ladder alone), or both")
    base = writer.load_base(args.base)
    if args.ladder:
        ladder = thresholds.parse_ladder(args.ladder)
        thresholds.check_ladder_for(ladder, base, args.ladder)
    else:
        ladder = thresholds.ladder_of(base)
    # Before embedding every logged pair, not after.
    if args.out:
        writer.check_out(args.out)
    if args.ladder_out:
        writer.check_out(args.ladder_out, "--ladder-out", "ladder")
    log = thresholds.read_match_log(args.pairs, limit=args.limit)
    _say(f"{len(log.queries)} logged pairs with a cached prompt; embedding with {args.to} ...")
    transfer = thresholds.transfer(ladder, log, args.from_, args.to)
    print(transfer.table().to_string(index=False))
    for t, k in transfer.at_floor():
        _say(
            f"warning: rung {t} -> K={k} is at or below every logged {transfer.source} similarity "
            f"({transfer.source_scores.min():.3f}); the log cannot place it, so it maps to the lowest "
            f"{transfer.target} similarity seen"
        )
    data = thresholds.to_profile(base, transfer)
    if args.ladder_out:
        path = thresholds.write_ladder(args.ladder_out, data["ladder"], _command_line(args))
        print(f"wrote {path}: carried ladder for embedder {args.to} (rungs the log cannot place extrapolated)")
        if not args.out:
            return 0
    out = Path(args.out)
    data = writer.finish(
        data,
        args.name or writer.profile_name(out),
        f"ladder carried from {transfer.source} to {transfer.target} by quantile matching; other blocks from {args.base}",
        {"command": "thresholds", "options": _options(args), **writer.environment("cpu")},
    )
    profile = writer.write_profile(out, data)
    print(f"wrote {out}: ladder {list(profile.ladder)} for embedder {args.to}")
    return 0


def _common(p: argparse.ArgumentParser, model: bool = True) -> None:
    if model:
        p.add_argument("--model", required=True, help=_MODEL_HELP)
        p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
        p.add_argument(
            "--dtype",
            choices=("fp16", "bf16", "fp32"),
            help="weights and activations (default: fp16 on cuda, fp32 on cpu)",
        )
        p.add_argument(
            "--resolution", type=int, help="image side in pixels (default: the model's native one)"
        )
        p.add_argument("--steps", type=int, help="denoising steps N (default: the base profile's, 50)")
        p.add_argument("--seed", type=int, default=0, help="seed for random weights and noise (default: 0)")
        p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    p.add_argument(
        "--base",
        default="sdxl-a10g",
        help="profile whose blocks this run does not measure are carried over, with their sources "
        "(shipped name or path; default: sdxl-a10g)",
    )
    p.add_argument("--name", help="profile name (default: from the output path)")


_EPILOG_FIDELITY = """\
examples:
  acsim calibrate fidelity --embedder minilm-onnx
  acsim calibrate fidelity --embedder minilm-static --prompts my_prompts.txt --trace metadata.parquet

By default the pairwise correlation is measured on the 5,000 DiffusionDB prompts and the K
agreement on the 1,000-request DiffusionDB sample, both shipped with acsim
(sample:diffusiondb_2m_first5k_prompts.txt, sample:diffusiondb_2m_first1k.csv).

K agreement maps each embedder's similarities with its own carried ladder (calibrate/ladders/).
"""


def cmd_fidelity(args: argparse.Namespace) -> int:
    """Compare an embedder with a reference: pairwise-similarity correlation and K agreement."""
    from calibrate import fidelity
    from sim.reuse.ladders import carried_ladder
    from traces.diffusiondb import load_diffusiondb
    from traces.embeddings import check_embedder_name, embed_prompts, get_embedder
    from traces.prompts import read_prompts
    from traces.samples import resolve

    for flag, name in (("--embedder", args.embedder), ("--reference", args.reference)):
        problem = check_embedder_name(name)
        if problem:
            raise ConfigError(flag, name, problem)
    if args.limit is not None and args.limit < 2:
        raise ConfigError("--limit", args.limit, "must be >= 2 (a correlation needs at least one pair of prompts)")
    prompts = read_prompts(resolve(args.prompts, "--prompts"))[: args.limit]
    if len(prompts) < 2:
        raise InputError(args.prompts, f"{len(prompts)} prompt(s); a pairwise correlation needs at least 2")
    trace = load_diffusiondb(resolve(args.trace, "--trace"))
    ladders = {name: list(carried_ladder(name)[0]) for name in (args.embedder, args.reference)}
    out = {}
    for name in (args.reference, args.embedder):
        e = get_embedder(name, args.device)
        _say(f"embedding {len(prompts):,} prompts and {len(trace.prompts):,} trace prompts with {name} ...")
        best = fidelity.best_earlier(embed_prompts(e, trace.prompts, progress=False), trace.prompt_ids)
        out[name] = (embed_prompts(e, prompts, progress=True), fidelity.k_for(best, ladders[name]))
    pearson = fidelity.pairwise_pearson(out[args.reference][0], out[args.embedder][0])
    share, table = fidelity.k_agreement(out[args.reference][1], out[args.embedder][1])
    print(f"{args.embedder} vs {args.reference}")
    print(f"  pairwise similarity Pearson on {len(prompts):,} prompts ({Path(args.prompts).name}): {pearson:.4f}")
    print(f"  same K on {len(trace):,} requests ({Path(args.trace).name}): {100 * share:.1f}%")
    print(f"  ladders: {args.reference} {ladders[args.reference]}; {args.embedder} {ladders[args.embedder]}")
    print(table.to_string(index=False))
    return 0


_EPILOG_FIT_QUALITY = """\
examples:
  acsim calibrate fit-quality --out results/sdxl-a10g-fitted.yaml
  acsim calibrate fit-quality --trace metadata.parquet --embedder minilm-onnx --base sdxl-a100 --out fitted.yaml

The quality model has two numbers nobody measured, and the paper reports both systems they
shape as averages over all requests (hits and fresh misses alike):
  1. the retrieval line's slope (another prompt's image returned at CLIP-text similarity s
     scores vanilla - slope * (1 - s)), solved in closed form so that GPT-CACHE, simulated on the
     trace (cache-only, its artifact's gate, the run's embedder), averages the paper's row;
  2. PINECONE's gate (the CLIP text-image alignment a cached image must reach), solved by
     bisection on the fitted line so that PINECONE averages its row; the PickScore and FID of
     its images follow ratios derived from the same row.
Both go into a profile (kind: fitted, with the trace, the rows and the residuals). Then every
paper system runs on the same trace with that profile, and each metric is printed beside the
paper's: the rows the fit saw and the held-out ones, and the same relative to each column's vanilla.
"""


def _paper_row(reference: Any, system: str, label: str, path: str) -> dict[str, float]:
    """The metrics of ``system``'s row (predictor none) in the reference; InputError when absent."""
    from calibrate.fit_quality import METRICS

    row = reference[(reference["system"] == system) & (reference["predictor"] == "none")]
    if row.empty:
        raise InputError(path, f"no {label} row (system {system}, predictor none) to fit to", column="system")
    return {m: float(row.iloc[0][m]) for m in METRICS}


def _fit_slope(args: argparse.Namespace, data: dict[str, Any], target: float, base: dict[str, Any]) -> str:
    """Step 1: the retrieval slope from a GPT-CACHE run, written into ``base``; returns what it was fitted to."""
    from calibrate import fit_quality
    from sim.app.preflight import preflight
    from sim.app.run import prepare_inputs, run_system
    from sim.base import config
    from sim.reuse.similarity_space import run_space
    from sim.systems import SYSTEMS

    exp = preflight(config.from_dict(data))
    inputs = prepare_inputs(exp, progress=not args.quiet)
    records, _, _ = run_system("gptcache", exp, inputs)
    s_clip = run_space(exp).to_clip(records["similarity"].to_numpy(dtype=float))
    retrieved = (records["outcome"] == "retrieval").to_numpy()
    fit = fit_quality.fit_retrieval_slope(retrieved, s_clip, inputs.profile.quality_vanilla, target)
    gate = SYSTEMS["gptcache"].min_similarity(exp, inputs.profile)
    _say(
        f"GPT-CACHE retrieved {fit.hits:,} of {fit.requests:,} requests (gate {gate:.4f} in {exp.embedder} cosines); "
        f"mean 1 - s (CLIP-text) {fit.mean_gap:.4f}: slope {fit.slope:.4f} gives its average {target}"
    )
    where = f"{args.paper_trace} GPT-CACHE CLIP {target} as a system average, on {Path(str(args.trace)).name} with {exp.embedder}"
    quality = base["quality"]
    quality["retrieval_at_1"] = float(inputs.profile.quality_vanilla)
    quality["retrieval_slope_per_unit_s"] = round(fit.slope, 4)
    quality.setdefault("fields", {})["retrieval_slope_per_unit_s"] = {
        "kind": "fitted",
        "source": f"acsim calibrate fit-quality: {where}; {fit.hits} of {fit.requests} requests retrieved, "
        f"mean 1 - s_clip {fit.mean_gap:.4f}",
    }
    return where


def _fit_aligned_gate(
    args: argparse.Namespace, data: dict[str, Any], rows: dict[str, dict[str, float]], base: dict[str, Any]
) -> str:
    """Step 2: PINECONE's gate on the fitted line (``data`` names that profile) and its images'
    PickScore / FID ratios, written into ``base``; returns what they were fitted to."""
    from calibrate import fit_quality
    from sim.app.preflight import preflight
    from sim.app.run import prepare_inputs, run_system
    from sim.base import config

    quality = base["quality"]
    at_1, slope = quality["retrieval_at_1"], quality["retrieval_slope_per_unit_s"]
    # The gate's range on the line: what an image at CLIP-text 0 scores, to what only s = 1 reaches.
    lo, hi = max(0.0, (at_1 - max(slope, 0.0)) / 100.0), at_1 / 100.0

    def with_gate(gate: float) -> dict[str, Any]:
        return {**data, "systems": ["pinecone"], "params": {"pinecone": {"min_alignment": gate}}}

    inputs = prepare_inputs(preflight(config.from_dict(with_gate(lo))), progress=False)

    def average(gate: float) -> float:
        records, _, _ = run_system("pinecone", preflight(config.from_dict(with_gate(gate))), inputs)
        return float(records["quality"].mean())

    target = rows["pinecone"]["clip"]
    fit = fit_quality.fit_gate(average, target, lo, hi)
    _say(f"PINECONE: gate {fit.gate:.5f} (CLIP text-image) gives its average {fit.average:.4f} for {target} ({fit.evaluations} runs)")
    where = f"{args.paper_trace} PINECONE CLIP {target} as a system average, on {Path(str(args.trace)).name} with {args.embedder}"
    quality["aligned_gate"] = round(fit.gate, 5)
    fields = quality.setdefault("fields", {})
    fields["aligned_gate"] = {
        "kind": "fitted",
        "source": f"acsim calibrate fit-quality: {where}, by bisection on the fitted retrieval line (average {fit.average:.4f})",
    }
    for metric in ("pickscore", "fid"):
        if quality.get(metric):
            ratio = fit_quality.row_ratio(rows["vanilla"], rows["pinecone"], metric)
            quality[metric].setdefault("per_clip_loss", {})["aligned"] = round(ratio, 4)
    fields["per_clip_loss_aligned"] = {
        "kind": "fitted",
        "source": f"derived from the paper's {args.paper_trace} VANILLA and PINECONE rows under the linear-mixture rule",
    }
    return where


def _report(args: argparse.Namespace, data: dict[str, Any], reference: Any, fitted: tuple[str, ...]) -> Any:
    """Every paper system on the trace with the fitted profile, beside the paper; prints the tables
    and returns the one the residuals come from."""
    import pandas as pd

    from calibrate import fit_quality
    from sim.app.preflight import preflight
    from sim.app.run import prepare_inputs, run_system
    from sim.base import config
    from sim.results.metrics import summarize

    exp = preflight(config.from_dict(data))
    inputs = prepare_inputs(exp, progress=False)
    rows = []
    for system in exp.systems:
        recs, _, stats = run_system(system, exp, inputs)
        rows.append(summarize(recs, profile=inputs.profile, exp=exp, system_stats=stats))
    summary = pd.DataFrame(rows)
    table = fit_quality.held_out(summary, reference, fitted=fitted)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.round(3).to_string(index=False))
        print("\nrelative to each column's vanilla (acsim, paper, error):")
        print(fit_quality.relative_to_vanilla(table).round(4).to_string(index=False))
        # The paper's other column (a trace acsim does not have) compares only relative to its vanilla.
        if args.compare_trace not in ("none", args.paper_trace):
            other = fit_quality.held_out(summary, fit_quality.reference_rows(args.reference, args.compare_trace), fitted=())
            print(f"\nheld out: the paper's {args.compare_trace} column, relative to its vanilla (acsim on this trace):")
            print(fit_quality.relative_to_vanilla(other).round(4).to_string(index=False))
    return table


def cmd_fit_quality(args: argparse.Namespace) -> int:
    """Fit the retrieval line and PINECONE's gate to the paper's system averages on a trace; report every paper row."""
    from calibrate import fit_quality, writer
    from sim.systems import SYSTEMS

    writer.check_out(args.out)
    reference = fit_quality.reference_rows(args.reference, args.paper_trace)
    rows = {
        name: _paper_row(reference, name, label, args.reference)
        for name, label in (("vanilla", "VANILLA"), ("gptcache", "GPT-CACHE"), ("pinecone", "PINECONE"))
    }
    data = {
        "name": "fit-quality",
        "seed": args.seed,
        "trace": {"source": args.source, "path": args.trace},
        "embedder": args.embedder,
        "profile": args.base,
        "systems": [name for name in dict.fromkeys(reference["system"]) if name in SYSTEMS],
        "mode": "cache-only",
        "cache": {"capacity": args.capacity, "unit": "latents", "policy": "lcbfu"},
        # Exact lists: an approximate index finds a few more neighbours when its lists are built
        # deeper, so the slope would move with PINECONE's gate, which sets how deep they go.
        "neighbours": {"index": "exact"},
    }
    base = writer.load_base(args.base)
    fitted_to = [_fit_slope(args, data, rows["gptcache"]["clip"], base)]
    out = Path(args.out)
    name = args.name or writer.profile_name(out)
    trace_name = Path(str(args.trace)).name
    description = f"retrieval line and PINECONE's gate fitted to the paper's rows on {trace_name}; other blocks from {args.base}"
    calibration = {"command": "fit-quality", "options": _options(args), **writer.environment("cpu")}
    writer.write_profile(out, writer.finish(base, name, description, {**calibration, "fitted_to": fitted_to}))
    fitted_to.append(_fit_aligned_gate(args, {**data, "profile": str(out)}, rows, base))
    calibration["fitted_to"] = fitted_to
    writer.write_profile(out, writer.finish(base, name, description, calibration))
    table = _report(args, {**data, "profile": str(out)}, reference, fitted=("gptcache", "pinecone"))
    calibration["residuals"] = {
        r["paper row"]: {m: round(float(r[f"{m} error"]), 4) for m in fit_quality.METRICS} for _, r in table.iterrows()
    }
    writer.write_profile(out, writer.finish(base, name, description, calibration))
    quality = base["quality"]
    print(
        f"wrote {out}: retrieval_slope_per_unit_s {quality['retrieval_slope_per_unit_s']}, "
        f"aligned_gate {quality['aligned_gate']} (kind: fitted)"
    )
    return 0


def register(subparsers: Any) -> None:
    """Add ``calibrate`` with its ``latency``, ``quality``, ``thresholds``, ``fidelity``, ``fit-quality`` and ``serve`` sub-commands."""
    cal = subparsers.add_parser(
        "calibrate",
        help="measure a diffusion model (latency, quality vs K, embedder thresholds) and write a profile",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = cal.add_subparsers(dest="calibrate_command", metavar="WHAT", required=True)
    _add_latency(sub)
    _add_quality(sub)
    _add_thresholds(sub)
    _add_fidelity(sub)
    _add_fit_quality(sub)
    _add_serve(sub)


def _add_latency(sub: Any) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "latency",
        help="time denoising steps, text encoder, VAE decode, latent I/O",
        description=cmd_latency.__doc__,
        epilog=_EPILOG_LATENCY,
        formatter_class=fmt,
    )
    _common(p)
    p.add_argument("--batch", default="1,2,4,8", help="batch sizes to time (default: 1,2,4,8)")
    p.add_argument("--repeats", type=int, default=3, help="timed pipeline runs per batch size (default: 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up runs per batch size (default: 1)")
    p.add_argument(
        "--scratch", help="directory on the disk to time latent save/load on (default: --out's directory)"
    )
    p.add_argument(
        "--small-model",
        action="store_true",
        help="time MODEL as the profile's small model (the SMALLMODEL baseline): writes the small_model "
        "block and keeps every other block of --base (default steps: the base block's, else 4)",
    )
    p.add_argument(
        "--guidance",
        type=float,
        help="guidance scale to time with (default: the pipeline's; 0 with --small-model: distilled models "
        "run without classifier-free guidance)",
    )
    p.add_argument("--out", required=True, help="profile YAML to write")
    p.set_defaults(func=cmd_latency)


def _add_quality(sub: Any) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "quality",
        help="quality vs K on prompt pairs; derive the similarity->K ladder",
        description=cmd_quality.__doc__,
        epilog=_EPILOG_QUALITY,
        formatter_class=fmt,
    )
    _common(p)
    p.add_argument("--pairs", required=True, help="CSV of (cached prompt, new prompt[, similarity]) pairs")
    p.add_argument(
        "--scorer",
        required=True,
        help="clip:PATH (the CLIP score of a local CLIP model directory) or tiny (a random miniature CLIP "
        "for tests: its numbers mean nothing)",
    )
    p.add_argument("--k", default="5,10,15,20,25", help="K levels to reuse (default: 5,10,15,20,25)")
    p.add_argument(
        "--max-loss",
        type=float,
        default=0.05,
        help="largest accepted mean relative score loss vs vanilla per similarity bin (default: 0.05)",
    )
    p.add_argument(
        "--bins",
        default="0,0.65,0.75,0.85,0.9,0.95,1",
        help="similarity bin edges; each bin's lower edge becomes a ladder threshold (default: 0,0.65,0.75,0.85,0.9,0.95,1)",
    )
    p.add_argument(
        "--embedder",
        default="clip",
        help="embedder that produced the pairs' similarity column; the ladder is tied to it (default: clip)",
    )
    p.add_argument(
        "--guidance", type=float, default=5.0, help="classifier-free guidance scale (default: 5.0)"
    )
    p.add_argument("--limit", type=int, help="use only the first N pairs")
    p.add_argument(
        "--pickscore",
        metavar="SPEC",
        help="also score every image with PickScore: pickscore:PATH (a local PickScore directory) or "
        "tiny-pickscore (random miniature, for tests)",
    )
    p.add_argument(
        "--fid",
        metavar="DIR",
        help="also compute each method's FID against the images in DIR (e.g. real images for the same prompts)",
    )
    p.add_argument("--out", required=True, help="output directory: profile.yaml, CSVs, images, contact sheet")
    p.set_defaults(func=cmd_quality)


def _add_thresholds(sub: Any) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "thresholds",
        help="carry a ladder to another embedder by matching quantiles",
        description=cmd_thresholds.__doc__,
        epilog=_EPILOG_THRESHOLDS,
        formatter_class=fmt,
    )
    _common(p, model=False)
    p.add_argument("--pairs", required=True, help="match log CSV with columns Scores, Queries, Caches")
    p.add_argument(
        "--from",
        dest="from_",
        metavar="NAME",
        default="clip",
        help="embedder the ladder is for; 'clip' uses the log's Scores column (default: clip)",
    )
    p.add_argument(
        "--to", required=True, help="target embedder name (see traces.embeddings), e.g. minilm or hashing"
    )
    p.add_argument("--ladder", help="ladder to carry as 'threshold:K,...' (default: the base profile's)")
    p.add_argument("--limit", type=int, help="use only the first N logged pairs that have a cached prompt")
    p.add_argument("--out", help="profile YAML to write (the base profile with the carried ladder)")
    p.add_argument(
        "--ladder-out",
        help="also (or only) write the carried ladder alone, as calibrate/ladders/<embedder>.yaml ships "
        "it for `selector.carried: true`",
    )
    p.set_defaults(func=cmd_thresholds)


def _add_fidelity(sub: Any) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "fidelity",
        help="an embedder against a reference: similarity correlation and K agreement",
        description=cmd_fidelity.__doc__,
        epilog=_EPILOG_FIDELITY,
        formatter_class=fmt,
    )
    p.add_argument("--embedder", required=True, help="embedder to assess, e.g. minilm-onnx or minilm-static")
    p.add_argument("--reference", default="minilm", help="reference embedder (default: minilm, fp32 PyTorch)")
    p.add_argument(
        "--prompts",
        default="sample:diffusiondb_2m_first5k_prompts.txt",
        help="text file, one prompt per line (pairwise correlation; default: the shipped 5,000 DiffusionDB prompts)",
    )
    p.add_argument(
        "--trace",
        default="sample:diffusiondb_2m_first1k.csv",
        help="DiffusionDB metadata (.csv or .parquet) for K agreement (default: the shipped 1,000-row sample)",
    )
    p.add_argument("--limit", type=int, default=None, help="use only the first N prompts of --prompts")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="embedder device")
    p.set_defaults(func=cmd_fidelity)


def _add_fit_quality(sub: Any) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "fit-quality",
        help="fit the retrieval line and PINECONE's gate to the paper's system averages; report every paper row",
        description=cmd_fit_quality.__doc__,
        epilog=_EPILOG_FIT_QUALITY,
        formatter_class=fmt,
    )
    p.add_argument(
        "--trace", default="sample:diffusiondb_2m_first1k.csv",
        help="trace to simulate on (default: the shipped 1,000-row DiffusionDB sample)",
    )
    p.add_argument("--source", default="diffusiondb", help="the trace's source (default: diffusiondb)")
    p.add_argument("--embedder", default="minilm", help="embedder of the run (default: minilm)")
    p.add_argument("--base", default="sdxl-a10g", help="profile to fit (shipped name or path; default: sdxl-a10g)")
    p.add_argument(
        "--reference", default=str(_REFERENCE),
        help="CSV of the paper's rows (default: the shipped experiments/paper_quality_reference.csv)",
    )
    p.add_argument("--paper-trace", default="DiffusionDB", help="which of the paper's columns to fit (default: DiffusionDB)")
    p.add_argument(
        "--compare-trace", default="System-X",
        help="the paper's other column, compared relative to its vanilla (default: System-X; none: skip)",
    )
    p.add_argument("--capacity", type=float, default=15000, help="cache capacity in latents (default: 15,000)")
    p.add_argument("--seed", type=int, default=1, help="seed of the run (default: 1)")
    p.add_argument("--name", help="profile name (default: from the output path)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.add_argument("--out", required=True, help="profile YAML to write")
    p.set_defaults(func=cmd_fit_quality)


def _add_serve(sub: Any) -> None:
    from sim.app.serve_command import add_serve_arguments, cmd_serve

    p = sub.add_parser(
        "serve",
        help="serve a trace for real (diffusers pipeline, real index and latent store) and hold the simulator against it",
        description=cmd_serve.__doc__ + "\n\n" + _SERVE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_serve_arguments(p)


_SERVE_DESCRIPTION = """\
The command measures a serving profile first (step time, text encoder, VAE, latent save/load,
whole pipeline calls, the embedder, an index search), then serves the experiment's trace in real
time with every system listed (worker processes with their own pipeline, one FCFS queue, the
real embedder, an hnswlib index of the cached prompts, latents on disk, the system's own eviction
policy), then simulates the same trace on that profile and compares them request by request.

examples:
  acsim calibrate serve experiments/serve_validation.yaml --out results/serve
  acsim calibrate serve experiments/serve_validation.yaml --model sdxl --device cuda --out results/serve-gpu
"""
