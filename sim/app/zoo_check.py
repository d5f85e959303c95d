"""The prepared GPU check of the 2026 model zoo: FLUX.1's step time measured against the profiles.

    python -m sim.app.zoo_check --gpu h100 --out results/zoo-gpu     # on a CUDA machine (or --gpu a100)
    python -m sim.app.zoo_check --smoke --out results/zoo-smoke      # the same path, shrunk, on a CPU

On CUDA it builds FLUX.1-dev's and FLUX.1-schnell's architectures with random weights (step times
are the real model's; images are noise), bf16, at 1024x1024, and times each with ``acsim
calibrate latency`` (batch 1, 3 repeats) on the profile of that GPU as its base. It then prints
what one image costs, measured against the shipped profile's figure. FLUX.1-dev's is published
(BenchmarkFlux: 7.11 s on an H100, 15.65 s on an A100); FLUX.1-schnell's is derived from it. The
table is written to ``OUT/zoo_check.md`` beside the two measured profiles.

The time budget is an estimate, since no GPU has run it yet:
- Building each pipeline on the GPU: about a minute (12B transformer, T5-XXL).
- The timed runs: 3 warm-up steps and 3 x 28 timed steps of FLUX.1-dev, about 25 s on an H100.
- Encoders, VAE and latent I/O: seconds.

That is about 4 minutes on an H100, and 6 on an A100. ``--smoke`` runs the same path on the CPU
with the miniature ``tiny-flux`` pipeline in seconds; the tests run it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sim.base.io import atomic_write_text
from sim.base.profile import load_profile
from sim.engine.workers import job_work

# (preset, shipped profile stem, steps)
MODELS = (("flux-dev", "flux1-dev", 28), ("flux-schnell", "flux1-schnell", 4))


def commands(out: Path, gpu: str, smoke: bool) -> list[tuple[str, str, list[str]]]:
    """(model, base profile, ``acsim`` arguments) of each timing the check runs."""
    if smoke:
        # tiny-flux stands in for both; FLUX.1-schnell's profile has 4 steps, as the miniature.
        base = "flux1-schnell-h100"
        args = ["--model", "tiny-flux", "--device", "cpu", "--dtype", "fp32", "--steps", "4", "--repeats", "2"]
        return [("tiny-flux", base, ["calibrate", "latency", *args, "--base", base, "--out", str(out / "tiny-flux.yaml")])]
    runs = []
    for preset, stem, steps in MODELS:
        base = f"{stem}-{gpu}"
        runs.append((
            preset,
            base,
            [
                "calibrate", "latency", "--model", preset, "--device", "cuda", "--dtype", "bf16",
                "--resolution", "1024", "--steps", str(steps), "--batch", "1", "--repeats", "3",
                "--base", base, "--out", str(out / f"{preset}.yaml"),
            ],
        ))  # fmt: skip
    return runs


def comparison(rows: list[tuple[str, str, Path]]) -> str:
    """A markdown table: seconds per image measured and in the shipped profile, and their ratio."""
    lines = [
        "| model | base profile | s/image measured | s/image in the profile | measured / profile | profile's latency kind |",
        "|---|---|---|---|---|---|",
    ]
    for model, base, path in rows:
        measured, shipped = load_profile(str(path)), load_profile(base)
        m = job_work(measured.gpu_model(), measured.steps, False)
        s = job_work(shipped.gpu_model(), shipped.steps, False)
        kind = shipped.raw["latency"].get("kind", "?")
        lines.append(f"| {model} | {base} | {m:.3f} | {s:.3f} | {m / s:.2f} | {kind} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the check; a non-zero exit is the first failing ``acsim`` call's."""
    from sim.app.cli import main as acsim

    p = argparse.ArgumentParser(
        prog="python -m sim.app.zoo_check", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", required=True, help="directory for the measured profiles and zoo_check.md")
    p.add_argument("--gpu", default="h100", choices=["h100", "a100"], help="which shipped profiles to hold the times against")
    p.add_argument("--smoke", action="store_true", help="CPU, tiny-flux, seconds")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for model, base, cmd in commands(out, args.gpu, args.smoke):
        code = acsim(cmd)
        if code:
            return code
        rows.append((model, base, Path(cmd[cmd.index("--out") + 1])))
    table = comparison(rows)
    atomic_write_text(out / "zoo_check.md", table)
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
