"""Fault tests for the data-loss cases: what acsim replaces, the output lock, killed writers, resumes.

The rules (sim.app.outputs): acsim replaces a directory only when its marker proves it is an
acsim run holding nothing else; `run` and `sweep` of one file write different directories; an
output is locked while it is written and the lock dies with its process; a run is swapped in
whole, figures included; a killed run's leftovers are removed by the next writer.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from support import assert_one_clean_line, cli, tree

from sim.app import outputs

ROOT = Path(__file__).resolve().parents[1]

SPEC = """\
name: tiny
seed: 1
embedder: hashing
mode: cache-only
systems: [vanilla, nirvana]
trace: {{source: synthetic, requests: {requests}}}
plots: false
output: {output}
"""


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ACSIM_CACHE", str(tmp_path_factory.getbasetemp() / "output-safety-cache"))


def spec(tmp_path: Path, requests: int = 300, sweep: str = "") -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(SPEC.format(requests=requests, output=tmp_path / "results" / "tiny") + sweep)
    return path


def test_a_foreign_directory_survives_output(tmp_path, capsys) -> None:
    foreign = tmp_path / "results" / "tiny"
    foreign.mkdir(parents=True)
    (foreign / "thesis.tex").write_text("years of work\n")
    exp = spec(tmp_path)
    before = tree(tmp_path)
    code, _, err = cli(["run", exp, "-q"], capsys)
    assert_one_clean_line(code, err, "not an acsim run directory")
    assert tree(tmp_path) == before and (foreign / "thesis.tex").read_text() == "years of work\n"


def test_run_after_sweep_keeps_the_sweep_and_the_sweep_still_resumes(tmp_path, capsys) -> None:
    exp = spec(tmp_path, sweep="sweep: {cache.capacity: [100, 1000]}\n")
    code, _, err = cli(["sweep", exp, "-q", "--jobs", "1"], capsys)
    assert code == 0, err
    sweep_dir = tmp_path / "results" / "tiny-sweep"
    assert outputs.read_marker(sweep_dir) == "sweep" and len(pd.read_csv(sweep_dir / "summary.csv")) == 4
    swept = tree(sweep_dir)
    code, _, err = cli(["run", exp, "-q"], capsys)
    assert code == 0, err
    assert "tiny-sweep" in err  # the note says where the sweep goes
    assert outputs.read_marker(tmp_path / "results" / "tiny") == "run"
    assert tree(sweep_dir) == swept, "acsim run must not touch the sweep's results"
    code, _, err = cli(["run", exp, "-q"], capsys)  # a run replaces its own earlier run
    assert code == 0, err
    assert tree(sweep_dir) == swept
    code, _, err = cli(["sweep", exp, "-q", "--jobs", "1"], capsys)
    assert code == 0 and "2 already done, 0 to run" in err


def test_rerun_replaces_its_own_run_and_cleans_what_killed_runs_left(tmp_path, capsys) -> None:
    exp = spec(tmp_path)
    out = tmp_path / "results" / "tiny"
    assert cli(["run", exp, "-q"], capsys)[0] == 0
    # What a killed run leaves: a partial directory with acsim's marker (removed), and look-alikes
    # that acsim cannot prove are its own (kept).
    stale = out.parent / ".tiny.partial-abcd1234"
    shutil.copytree(out, stale)
    user = out.parent / ".tiny.partial-zzzz9999"
    user.mkdir()
    (user / "mine.txt").write_text("not acsim's\n")
    other = out.parent / ".tiny2.partial-abcd1234"
    shutil.copytree(out, other)
    (out / "records" / "vanilla.parquet").write_bytes(b"stale")
    code, _, err = cli(["run", exp, "-q"], capsys)
    assert code == 0, err
    assert not stale.exists() and "removed" in err and "interrupted run" in err
    assert (user / "mine.txt").is_file() and other.is_dir()
    assert pd.read_parquet(out / "records" / "vanilla.parquet").shape[0] == 300  # replaced whole
    umask = os.umask(0)
    os.umask(umask)
    assert (out.stat().st_mode & 0o777) == 0o777 & ~umask, "a result is as readable as its files"
    assert not list(out.parent.glob(".tiny.old-*")) and not list(out.parent.glob(".tiny.lock"))


def test_a_run_with_the_papers_table_replaces_itself(tmp_path, capsys) -> None:
    """With ``reference:`` the figures come with the paper comparison's table (.md, .csv in
    plots/): a second run must recognise them as its own and replace the first."""
    exp = spec(tmp_path)
    ref = ROOT / "experiments" / "paper_quality_reference.csv"
    args = ["run", exp, "-q", "--set", "plots=true", "--set", f"reference={ref}"]
    assert cli(args, capsys)[0] == 0
    out = tmp_path / "results" / "tiny"
    assert (out / "plots" / "paper_comparison.md").is_file()
    code, _, err = cli([*args, "--set", "seed=2"], capsys)
    assert code == 0, err
    assert "seed: 2" in (out / "config.yaml").read_text()


def test_replacing_without_an_atomic_exchange(tmp_path, capsys, monkeypatch) -> None:
    """File systems without renameat2's exchange get two renames; the old run is still removed."""
    exp = spec(tmp_path)
    assert cli(["run", exp, "-q"], capsys)[0] == 0
    monkeypatch.setattr(outputs, "_exchange", lambda a, b: False)
    assert cli(["run", exp, "-q", "--set", "seed=2"], capsys)[0] == 0
    out = tmp_path / "results" / "tiny"
    assert "seed: 2" in (out / "config.yaml").read_text()
    assert [p.name for p in out.parent.iterdir()] == ["tiny"]


def test_figures_are_part_of_the_atomic_swap(tmp_path, capsys, monkeypatch) -> None:
    import plots

    exp = spec(tmp_path)
    assert cli(["run", exp, "-q"], capsys)[0] == 0
    out = tmp_path / "results" / "tiny"
    before = tree(out)

    def broken(results_dir, out_dir=None):
        (Path(results_dir) / "plots").mkdir()
        (Path(results_dir) / "plots" / "half.png").write_bytes(b"half a figure")
        raise RuntimeError("the figure code failed")

    monkeypatch.setattr(plots, "plot_results", broken)
    with pytest.raises(RuntimeError, match="figure code"):
        cli(["run", exp, "-q", "--set", "plots=true", "--set", "seed=5"], capsys)
    assert tree(out) == before, "a run whose figures fail leaves the previous result as it was"
    assert [p.name for p in out.parent.iterdir()] == ["tiny"]


_HOLD_LOCK = """
import sys, time
from pathlib import Path
from sim.app import outputs
with outputs.locked(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(120)
"""

_KILLED_RUN = """
import os, signal, sys
from pathlib import Path
from sim.app import outputs
with outputs.staging_dir(Path(sys.argv[1])) as tmp:
    (tmp / "summary.csv").write_text("half a result")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def _python(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_second_writer_gets_one_clean_error_and_the_lock_dies_with_its_process(tmp_path, capsys) -> None:
    exp = spec(tmp_path)
    out = tmp_path / "results" / "tiny"
    holder = _python(_HOLD_LOCK, str(out))
    try:
        assert holder.stdout.readline().strip() == "locked", holder.stderr.read()
        code, _, err = cli(["run", exp, "-q"], capsys)
        assert_one_clean_line(code, err, "being written by another acsim process", f"pid {holder.pid}")
        code, _, err = cli(["plot", out], capsys)  # nothing there yet: a clean refusal too
        assert code == 2 and "Traceback" not in err
    finally:
        holder.kill()  # SIGKILL: no chance to clean up
        holder.communicate()
    code, _, err = cli(["run", exp, "-q"], capsys)
    assert code == 0, err
    assert (out / "summary.csv").is_file()


def test_a_killed_run_leaves_no_result_and_no_lock_behind(tmp_path, capsys) -> None:
    exp = spec(tmp_path)
    out = tmp_path / "results" / "tiny"
    killed = _python(_KILLED_RUN, str(out))
    killed.communicate(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert not out.exists() and list(out.parent.glob(".tiny.partial-*"))
    code, _, err = cli(["run", exp, "-q"], capsys)
    assert code == 0, err
    assert not list(out.parent.glob(".tiny.partial-*")) and "removed" in err
    assert len(pd.read_csv(out / "summary.csv")) == 2


def test_two_concurrent_runs_never_lose_a_result(tmp_path) -> None:
    """Both start at once: one may wait for nothing (it fails at once with one line), or both
    finish one after the other; either way the output holds one complete run, never a mix."""
    exp = spec(tmp_path, requests=3000)
    out = tmp_path / "results" / "tiny"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "sim", "run", str(exp), "-q", "--set", f"seed={seed}"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    results = [(p.wait(timeout=300), p.communicate()[1]) for p in procs]
    codes = [c for c, _ in results]
    assert 0 in codes and set(codes) <= {0, 2}, results
    for code, err in results:
        assert "Traceback" not in err, err
        if code == 2:
            assert_one_clean_line(code, err, "being written by another acsim process")
    seed = int(next(line for line in (out / "config.yaml").read_text().splitlines() if line.startswith("seed:")).split()[1])
    winner = [s for (c, _), s in zip(results, (1, 2), strict=True) if c == 0]
    assert seed in winner
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["system"]) == ["vanilla", "nirvana"] and (summary["requests"] == 3000).all()
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny"]


def test_sweep_resume_reruns_a_run_whose_summary_is_damaged(tmp_path, capsys) -> None:
    exp = spec(tmp_path, sweep="sweep: {cache.capacity: [100, 1000, 10000]}\n")
    assert cli(["sweep", exp, "-q", "--jobs", "1"], capsys)[0] == 0
    sweep_dir = tmp_path / "results" / "tiny-sweep"
    runs = sorted((sweep_dir / "runs").iterdir())
    (runs[0] / "summary.csv").write_text("")  # empty
    (runs[1] / "summary.csv").write_text("system,hit_rate\n")  # header only
    code, _, err = cli(["sweep", exp, "-q", "--jobs", "1"], capsys)
    assert code == 0, err
    assert err.count("is empty or damaged") == 2 and f"running {runs[0].name} again" in err
    assert "1 already done, 2 to run" in err
    assert len(pd.read_csv(sweep_dir / "summary.csv")) == 6


def test_interrupted_sweep_repeats_the_exact_command(tmp_path, capsys, monkeypatch) -> None:
    import sim.app.sweep as sweep

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "run_sweep", interrupted)
    exp = spec(tmp_path, sweep="sweep: {cache.capacity: [100, 1000]}\n")
    argv = ["sweep", str(exp), "--set", "cache.policy=lru", "--set", "trace.requests=200", "-o",
            str(tmp_path / "my sweep"), "--jobs", "1"]
    code, _, err = cli(argv, capsys)
    assert code == 130
    import shlex

    assert f"run `acsim {shlex.join(argv)}` again to resume" in err


def test_a_corrupt_cached_synthetic_trace_is_regenerated(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("ACSIM_CACHE", str(tmp_path / "cache"))
    exp = spec(tmp_path)
    assert cli(["run", exp, "-q"], capsys)[0] == 0
    first = pd.read_csv(tmp_path / "results" / "tiny" / "summary.csv")
    (cached,) = (tmp_path / "cache" / "traces").glob("*.parquet")
    cached.write_bytes(b"PAR1 damaged by a full disk")
    code, _, err = cli(["run", exp, "-q"], capsys)
    assert code == 0, err
    assert "regenerating the cached trace" in err
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "results" / "tiny" / "summary.csv"), first)
    assert cached.stat().st_size > 100  # written again, whole


def test_plot_keeps_the_old_figures_when_the_results_are_damaged(tmp_path, capsys) -> None:
    exp = spec(tmp_path)
    out = tmp_path / "results" / "tiny"
    assert cli(["run", exp, "-q", "--set", "plots=true"], capsys)[0] == 0
    figures = tree(out / "plots")
    assert figures
    (out / "records" / "nirvana.parquet").write_bytes(b"PAR1 damaged")
    code, _, err = cli(["plot", out], capsys)
    assert_one_clean_line(code, err, "nirvana.parquet")
    assert tree(out / "plots") == figures
    assert not list(out.glob(".plots.partial-*"))
