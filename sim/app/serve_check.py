"""The prepared GPU check of ``acsim calibrate serve``: one command, a few minutes on a GPU the day one is lent.

    python -m sim.app.serve_check --out results/serve-gpu            # on a CUDA machine
    python -m sim.app.serve_check --smoke --out results/serve-smoke  # the same, shrunk, on a CPU

On CUDA it serves the first 20 requests of the shipped DiffusionDB sample with ``vanilla`` and
``nirvana`` on an SDXL-architecture pipeline (random weights: step times are those of the real
model; images are noise) at 512x512, 50 steps, fp16, at 80% utilization of one worker, each
right after measuring its serving profile on the same GPU. From the shipped A10G profile (SDXL at
1024x1024: 0.35 s per step) a 512x512 step takes about a quarter of that, 4.4 s per image, so
(an estimate: no GPU has run it yet):

* building and warming the worker's pipeline and the measuring one: about 60 s;
* each system's measurement: ``calibrate latency`` with 3 repeats (about 150 timed steps,
  13 s) and 3 rounds of the four whole jobs (53 s): about 70 s, twice;
* each system's served run: 20 x 4.4 s / 0.8 = 110 s, twice;

about 7 minutes in all. ``--smoke`` runs the same path on the CPU with the miniature
``tiny-sdxl`` pipeline and 10 requests at 30% utilization (under two minutes); the tests run it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "serve_validation.yaml"


def command(out: str, smoke: bool) -> list[str]:
    """The ``acsim`` arguments of the check."""
    args = ["calibrate", "serve", str(EXPERIMENT), "--out", out]
    if smoke:
        # A light load: on a shared CPU the timing is noisy, and near saturation the simulated
        # queue would amplify the noise of the calibration's few jobs.
        return [*args, "--utilization", "0.3", "--set", "trace.requests=10", "--set", "systems=[nirvana]", "--repeats", "3", "--rounds", "4"]
    return [
        *args,
        "--utilization", "0.8",
        "--set", "trace.requests=20",
        "--set", "systems=[vanilla,nirvana]",
        "--model", "sdxl", "--device", "cuda", "--dtype", "fp16", "--resolution", "512",
        "--repeats", "3", "--rounds", "3",
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the check; its exit code is ``acsim``'s."""
    from sim.app.cli import main as acsim

    p = argparse.ArgumentParser(prog="python -m sim.app.serve_check", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="result directory of `acsim calibrate serve`")
    p.add_argument("--smoke", action="store_true", help="CPU, tiny-sdxl, 10 requests, nirvana only")
    args = p.parse_args(argv)
    return acsim(command(args.out, args.smoke))


if __name__ == "__main__":
    sys.exit(main())
