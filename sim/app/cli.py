"""The ``acsim`` command.

Each sub-command lives with the code it drives; this module only wires them up and
turns user errors (:class:`sim.base.errors.AcsimError`) into one line on stderr and exit code 2.
Heavy imports happen inside the commands so that ``acsim --help`` is instant.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from sim.app.config_args import add_config_args
from sim.base.errors import AcsimError, DeprecatedField

DESCRIPTION = """\
acsim: a trace-driven simulator of text-to-image diffusion serving with approximate caching.

It replays real or synthetic prompt traces through a model of a GPU serving cluster and reports
how much GPU time, latency and money reusing intermediate denoising latents saves, at what loss
of image quality, under which cache policy, cache size and load.
"""

EPILOG = """\
examples:
  acsim run experiments/quickstart.yaml
  acsim run experiments/quickstart.yaml --set mode=cache-only --set trace.requests=5000
  acsim validate experiments/quickstart.yaml
  acsim sweep experiments/policies_vs_cache_size.yaml --jobs 2
  acsim plan experiments/quickstart.yaml --slo 'p95<=30' --gpus a10g,a100
  acsim trace synth --requests 100000 --out results/synth.parquet
  acsim calibrate latency --model tiny --device cpu --out results/tiny-profile.yaml
"""


def cmd_validate(args: argparse.Namespace) -> int:
    """Check an experiment file as `run` and `sweep` would (every sweep configuration too); print the resolved config."""
    from sim.app.preflight import preflight
    from sim.app.sweep import expand_sweep
    from sim.base import config

    exp = preflight(config.load(args.file, args.overrides))
    points = expand_sweep(exp) if exp.sweep else []
    print(f"{args.file}: valid" + (f" ({len(points)} sweep configurations)" if points else ""))
    if args.show:
        print(config.dump(exp), end="")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run one experiment (every system in it) and print the comparison table."""
    from sim.app import outputs
    from sim.app.preflight import preflight
    from sim.app.report import print_summary
    from sim.app.run import describe_inputs, prepare_inputs, run_experiment
    from sim.app.sweep import sweep_output
    from sim.base import config

    exp = preflight(config.load(args.file, args.overrides))
    out = Path(args.output if args.output is not None else exp.output)
    outputs.check_target(out, "run")  # a refused output is one line, before anything else is said
    outputs.check_alone(out)
    if exp.sweep and not args.ignore_sweep:
        print(f"note: {args.file} has a sweep block; `acsim run` runs its base configuration only "
              f"(use `acsim sweep {args.file}` for the grid, written to {sweep_output(exp)})", file=sys.stderr)
    plots = exp.plots and not args.no_plots
    # The output is locked (and checked again) before the minutes of preparing inputs, not after.
    with outputs.locked(out):
        outputs.check_target(out, "run")
        inputs = prepare_inputs(exp, progress=not args.quiet)
        describe_inputs(exp, inputs)
        summary = run_experiment(exp, out_dir=out, inputs=inputs, progress=not args.quiet, plots=plots)
    print_summary(summary, exp)
    if plots:
        figures = sorted((out / "plots").glob("*.*"))
        print(f"{len(figures)} figure files in {out / 'plots'}")
    print(f"results: {out}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run the sweep block of an experiment file (resumable)."""
    from sim.app.sweep import sweep_command

    return sweep_command(args)


def cmd_plan(args: argparse.Namespace) -> int:
    """Find the cheapest cluster that meets the SLOs: per system and GPU type, the fewest GPUs whose run
    of the trace meets every objective (bisection over GPU counts, each point a resumable run), and
    optionally the highest load that cluster sustains. Prints a recommendation table, writes plan.csv
    and points.csv and draws the plan (and capacity) figures."""
    from sim.app.plan import plan_command

    return plan_command(args)


def cmd_plot(args: argparse.Namespace) -> int:
    """Draw the figures for a run or sweep result directory (into its plots/ folder)."""
    from plots import plot_results
    from sim.app import outputs
    from sim.base.errors import InputError, OutputError

    root = Path(args.results)
    if not root.is_dir():
        raise InputError(root, "no such result directory" if not root.exists() else "is a file, not a result directory")
    if outputs.read_marker(root) is None:
        raise OutputError(
            root,
            f"is not an acsim run or sweep directory (no {outputs.MARKER} marker); acsim draws figures "
            "only into results it wrote",
        )
    with outputs.locked(root), outputs.staging_plots(root) as tmp:
        drawn = plot_results(root, out_dir=tmp)
    figures = [root / "plots" / p.name for p in drawn]
    for f in figures:
        print(f)
    if not figures:
        print(f"acsim: no figure applies to the results in {root}", file=sys.stderr)
    return 0 if figures else 1


def cmd_profiles(args: argparse.Namespace) -> int:
    """List the shipped calibration profiles (model, GPU, steps, seconds per image, price, and what
    kind of number each is), or print one whole with every source. With --sources each row is
    followed by the sources of its latency, price and quality."""
    from sim.app.report import profile_rows
    from sim.base.profile import load_profile, resolve_path, shipped_profiles

    if args.name:
        load_profile(args.name)
        print(resolve_path(args.name).read_text(encoding="utf-8"), end="")
        return 0
    print(profile_rows([load_profile(name) for name in shipped_profiles()], sources=args.sources))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Measure the simulator's speed and memory against its references."""
    from sim.app.bench.command import bench_command

    return bench_command(args)


def build_parser() -> argparse.ArgumentParser:
    """The full ``acsim`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="acsim", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("run", help="run one experiment file and print the comparison table",
                       description=cmd_run.__doc__)
    add_config_args(p)
    p.add_argument("--output", "-o", help="result directory (default: the file's `output:`)")
    p.add_argument("--no-plots", action="store_true", help="skip drawing figures")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.add_argument("--ignore-sweep", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("validate", help="check an experiment file (exit 2 names the bad field)",
                       description=cmd_validate.__doc__)
    add_config_args(p)
    p.add_argument("--show", action="store_true", help="print the resolved config with every default")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("sweep", help="run an experiment's sweep grid on a local pool or Ray (resumable)",
                       description=cmd_sweep.__doc__)
    add_config_args(p)
    from sim.app.sweep import add_sweep_arguments

    add_sweep_arguments(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser(
        "plan",
        help="the fewest GPUs (per system and GPU type) whose run meets the SLOs, and their cost",
        description=cmd_plan.__doc__,
        epilog="example: acsim plan experiments/quickstart.yaml --slo 'p95<=30' --slo 'attainment>=0.99' "
        "--gpus a10g,a100",
    )
    add_config_args(p)
    from sim.app.plan import add_plan_arguments

    add_plan_arguments(p)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("plot", help="draw figures for a run or sweep directory", description=cmd_plot.__doc__)
    p.add_argument("results", type=Path, help="a run or sweep result directory")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("profiles", help="list shipped calibration profiles, or print one",
                       description=cmd_profiles.__doc__)
    p.add_argument("name", nargs="?", help="profile name or path to print")
    p.add_argument("--sources", action="store_true",
                   help="under each profile, where its latency, price and quality come from")
    p.set_defaults(func=cmd_profiles)

    from sim.app.trace_commands import register as register_trace

    register_trace(sub)

    from sim.app.calibrate_commands import register as register_calibrate

    register_calibrate(sub)

    p = sub.add_parser("bench", help="measure simulator speed and memory against libcachesim, SimPy and hnswlib",
                       description=cmd_bench.__doc__)
    from sim.app.bench.command import add_bench_arguments

    add_bench_arguments(p)
    p.set_defaults(func=cmd_bench)
    return parser


def _show_note(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Deprecated experiment-file keys are a note to the user, not a Python warning."""
    if issubclass(category, DeprecatedField):
        print(f"acsim: note: {message}", file=sys.stderr)
    else:
        _SHOW_WARNING(message, category, filename, lineno, file, line)


_SHOW_WARNING = warnings.showwarning


def _os_error(exc: OSError) -> str:
    """An operating-system error as one line naming the path (permission denied, disk full, ...)."""
    what = exc.strerror or type(exc).__name__
    if exc.filename is not None:
        where = str(exc.filename) + (f" -> {exc.filename2}" if exc.filename2 is not None else "")
        return f"{where}: {what}"
    return str(exc) or what


def _empty_argument(argv: list[str]) -> str | None:
    """The option (or ``argument N``) given an empty or blank value, if any."""
    for i, token in enumerate(argv):
        if token.startswith("--") and "=" in token and not token.split("=", 1)[1].strip():
            return token.split("=", 1)[0]
        if not token.strip():
            before = argv[i - 1] if i else ""
            return before if before.startswith("-") and before != "--" else f"argument {i + 1}"
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``acsim`` console script.

    Exit codes: 0 success; 1 a sweep finished with failed configurations, or `plot` found
    nothing to draw; 2 bad input, a refused output or an operating-system error (one line on
    stderr, nothing written or deleted); 130 interrupted (finished results are kept).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    empty = _empty_argument(argv)
    if empty:
        # argparse would take '' as a value (`-o ''` as "no -o", `--out ''` as the current directory).
        print(f"acsim: error: {empty}: '' is not valid; give a value (an empty argument is never one)", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    # The exact command, for messages that tell the user what to run again.
    args.argv = argv
    warnings.showwarning = _show_note
    # transformers' and diffusers' notices (torchvision missing: acsim needs no image processor) and
    # its progress bars would bury acsim's own messages; a user's own setting wins.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")  # its note on casting random-weight presets
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        return int(args.func(args) or 0)
    except AcsimError as exc:
        print(f"acsim: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        # Permission denied, a full disk, a path that is a file where a directory is needed:
        # the environment, not a bug; nothing was left half-written (writes are atomic).
        print(f"acsim: error: {_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("acsim: interrupted; finished results are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
