"""What several test modules share (plain helpers; fixtures live in conftest.py).

Small real systems and profiles that the engine tests drive the SimPy model with: each system
is a complete, if tiny, subclass of ``sim.systems.System`` whose behaviour a test can predict
exactly (the real systems are exercised in test_engine_integration.py and test_systems.py);
an experiment builder, one engine run, and the Little's-law check every engine run must pass.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import pytest

from sim.base import strict_yaml
from sim.base.config import SelectorConfig, from_dict
from sim.base.profile import PROFILE_DIR, Profile, parse_profile
from sim.engine import simulate
from sim.neighbours.similarity import similarities_to
from sim.systems import Decision, System, TraceArrays

_BASE = strict_yaml.read(PROFILE_DIR / "sdxl-a10g.yaml")

# Experiments on data acsim may not ship (its licence allows study use only): the file each reads,
# which a user fetches (the experiment's header says from where), and a stand-in header row of
# that file's columns for the tests that only check the configuration.
USER_DATA = {
    "experiments/production_day.yaml": (
        "data/gentd26_request_trace.csv",
        "gmt_create,groupId,checkpoint_model_version_id,num_lora,num_inference_steps",
    ),
}


def make_profile(*, tiers: dict | None = None, **latency: object) -> Profile:
    """The shipped A10G profile with some ``latency`` fields (e.g. step times) and storage tiers
    (name -> fields to change) replaced."""
    data = copy.deepcopy(_BASE)
    data["latency"].update(latency)
    for name, fields in (tiers or {}).items():
        data["storage"]["tiers"][name].update(fields)
    return parse_profile(data, "<test profile>")


def service_only_profile(service_s: float, steps: int = 50) -> Profile:
    """A profile whose ``steps`` plain steps take exactly ``service_s`` and nothing else costs time."""
    return make_profile(
        denoise_step_s={1: service_s / steps},
        save_overhead_step_s=0.0,
        text_encoder_s=0.0,
        vae_decode_s=0.0,
        embed_s=0.0,
        index_lookup_base_s=0.0,
        index_lookup_per_decade_s=0.0,
    )


class _Small(System):
    """The engine drives only the request path; these systems need no trace arrays or lists."""

    def __init__(self) -> None:
        self.profile = make_profile()
        self.n_steps = self.profile.steps
        self.lookups = 0
        self._occupancy = []
        self.acts_from = self.acts_from_published = None  # matches on no similarity threshold


class Vanilla(_Small):
    """No cache: every request runs ``steps`` (a number, or an array per request)."""

    name = "vanilla"
    is_baseline = True

    def __init__(self, steps: int | np.ndarray = 50) -> None:
        super().__init__()
        self.steps = steps
        self.completed: list[tuple[int, float]] = []

    def lookup(self, i: int, now: float, boost: int = 0) -> Decision:
        s = int(self.steps) if np.isscalar(self.steps) else int(self.steps[i])
        return Decision("miss", -1, math.nan, 0, 0, s, 30.28, ())

    miss_decision = lookup

    def complete(self, i: int, decision: Decision, now: float) -> None:
        self.completed.append((i, now))


class ExactPrompt(_Small):
    """A prompt seen (and completed) before is reused at K=25; storing happens on completion,
    so a repeat that arrives before its first generation finished misses, as in a real cache."""

    name = "nirvana"
    lookup_kind = "vector"
    caches = True
    saves_latents = True
    takes_boost = True  # a load-aware boost adds to its K

    def __init__(self, prompt_ids: np.ndarray, n_steps: int = 50, k: int = 25) -> None:
        super().__init__()
        self.prompt_ids = prompt_ids
        self.n_steps, self.k = n_steps, k
        self.cached: set[int] = set()
        self.boosts: list[int] = []
        self.log: list[tuple[str, int, float]] = []

    def lookup(self, i: int, now: float, boost: int = 0) -> Decision:
        self.log.append(("lookup", i, now))
        self.boosts.append(boost)
        p = int(self.prompt_ids[i])
        if p in self.cached:
            k = min(self.k + 5 * boost, self.n_steps - 5)
            return Decision("hit", p, 1.0, k, k, self.n_steps - k, 30.28 * 0.9152, ())
        return self.miss_decision(i, now)

    def miss_decision(self, i: int, now: float) -> Decision:
        return Decision("miss", -1, math.nan, 0, 0, self.n_steps, 30.28, (5, 10, 15, 20, 25))

    def probe(self, i: int, now: float = 0.0, boost: int = 0) -> int:
        return self.k if int(self.prompt_ids[i]) in self.cached else 0

    def complete(self, i: int, decision: Decision, now: float) -> None:
        self.log.append(("complete", i, now))
        if decision.store_levels:
            self.cached.add(int(self.prompt_ids[i]))

    def cached_prompts(self) -> int:
        return len(self.cached)

    def cached_entries(self) -> int:
        return 5 * len(self.cached)


class Retrieval(ExactPrompt):
    """Like :class:`ExactPrompt` but a repeat returns the stored image: no GPU at all."""

    name = "gptcache"
    saves_latents = False

    def lookup(self, i: int, now: float, boost: int = 0) -> Decision:
        p = int(self.prompt_ids[i])
        if p in self.cached:
            return Decision("retrieval", p, 1.0, 0, 0, 0, 30.28, ())
        return self.miss_decision(i, now)

    def miss_decision(self, i: int, now: float) -> Decision:
        return Decision("miss", -1, math.nan, 0, 0, self.n_steps, 30.28, (50,))


A10G = make_profile()
EFS_FETCH = 0.003 + 131072 / 1.0e8  # the default tier's latency + one latent over its bandwidth


# Tests that hand-make their similarities state them in the published (CLIP-text) space: the
# profile's thresholds are read as they stand, not carried to an embedder (selector.carried: false).
OWN_SPACE = SelectorConfig(carried=False)


def experiment(**fields):
    """An experiment for hand-made traces and lists (``a__b=v`` sets field a.b; see OWN_SPACE)."""
    data = {"systems": ["nirvana"], "cluster": {"gpus": 1}, "selector": {"carried": False}}
    for dotted, value in fields.items():
        node = data
        *head, last = dotted.split("__")
        for k in head:
            node = node.setdefault(k, {})
        node[last] = value
    return from_dict(data)


def run(system, arrival, prompts, exp=None, profile=A10G, **kw):
    arrival = np.asarray(arrival, dtype=float)
    prompts = np.asarray(prompts)
    records, series = simulate(
        system,
        arrival,
        prompts,
        np.zeros(len(arrival), dtype=np.int32),
        exp or experiment(),
        profile,
        seed=7,
        **kw,
    )
    assert_littles_law(records)
    return records, series


def assert_littles_law(records) -> None:
    """L = lambda W for the queue and the whole system: the engine's time integrals of the
    queue length and the number in system equal the sums of the recorded waits."""
    eng = records.attrs["engine"]
    horizon = eng["horizon_s"]
    lam = len(records) / horizon
    assert eng["queue_area"] / horizon == pytest.approx(lam * records["queue_s"].mean(), rel=1e-9, abs=1e-9)
    assert eng["system_area"] / horizon == pytest.approx(lam * records["latency_s"].mean(), rel=1e-9)


# -- a clustered workload with exact causal neighbour lists (policies and systems tests) --------


@dataclass
class Lists:
    """Causal neighbour lists in the NeighbourLists layout, exact, with the full matrix for ``more``
    and the embeddings the fallbacks score with (as NeighbourLists has them)."""

    offsets: np.ndarray
    ids: np.ndarray
    sims: np.ndarray
    complete: np.ndarray
    min_similarity: float
    full: np.ndarray
    embeddings: np.ndarray | None = None  # None: similarities from ``full``, and no compiled replay
    prompt_ids: np.ndarray | None = None

    def more(self, i: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        row = self.full[i]
        order = np.lexsort((np.arange(len(row)), -row))
        order = order[row[order] >= self.min_similarity][:k]
        return order.astype(np.int32), row[order]

    def similarities(self, i: int, prompts: np.ndarray) -> np.ndarray:
        if self.embeddings is None or self.prompt_ids is None:
            return self.full[i][np.asarray(prompts, dtype=np.int64)].astype(np.float32)
        return similarities_to(self.embeddings, np.asarray(prompts, dtype=np.int64), int(self.prompt_ids[i]))


def causal_lists(emb: np.ndarray, pids: np.ndarray, top_m: int, min_sim: float = 0.65) -> Lists:
    n, p = len(pids), len(emb)
    first = np.full(p, n)
    for i in range(n - 1, -1, -1):
        first[pids[i]] = i
    full = (emb[pids] @ emb.T).astype(np.float32)
    full[first[None, :] >= np.arange(n)[:, None]] = -np.inf  # only prompts seen before request i
    offsets, ids, sims, complete = [0], [], [], []
    for i in range(n):
        row = full[i]
        order = np.lexsort((np.arange(p), -row))
        order = order[row[order] >= min_sim]
        complete.append(len(order) <= top_m)
        ids += order[:top_m].tolist()
        sims += row[order[:top_m]].tolist()
        offsets.append(len(ids))
    return Lists(
        np.array(offsets),
        np.array(ids, np.int32),
        np.array(sims, np.float32),
        np.array(complete),
        min_sim,
        full,
        np.ascontiguousarray(emb, dtype=np.float32),
        np.asarray(pids, dtype=np.int32),
    )


def workload(n: int = 1200, seed: int = 3) -> tuple[TraceArrays, Lists]:
    """Clustered prompts with repeats and near-duplicates, 5 users."""
    rng = np.random.default_rng(seed)
    n_prompts = int(n * 0.7)
    centres = rng.normal(size=(n_prompts // 15, 24))
    emb = centres[rng.integers(0, len(centres), n_prompts)] + rng.normal(scale=0.3, size=(n_prompts, 24))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    pids, nxt = [], 0
    for _ in range(n):
        if nxt < n_prompts and (nxt == 0 or rng.random() < 0.75):
            pids.append(nxt)
            nxt += 1
        else:
            pids.append(int(rng.integers(max(0, nxt - 60), nxt)))
    pids = np.array(pids, np.int32)
    arrays = TraceArrays(pids, rng.integers(0, 5, n).astype(np.int32), np.arange(n, dtype=float))
    return arrays, causal_lists(emb[: pids.max() + 1], pids, top_m=4)


# -- the command line as a user meets it (in-process: a subprocess costs a second or two) -----


def tree(root) -> dict[str, tuple[int, int]]:
    """Every file and directory under ``root`` -> (size, mtime_ns; 0 for directories): equal
    snapshots mean no file was written, replaced or deleted (hidden or not)."""
    from pathlib import Path

    root = Path(root)
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        is_dir = p.is_dir() and not p.is_symlink()
        out[p.relative_to(root).as_posix()] = (0, 0) if is_dir else (st.st_size, st.st_mtime_ns)
    return out


def cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run ``acsim argv`` in this process; returns (exit code, stdout, stderr)."""
    from sim.app.cli import main

    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_clean_line(code: int, err: str, *fragments: str) -> str:
    """Exit code 2 and exactly one line on stderr, an ``acsim: error:`` naming every fragment."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("acsim: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def calibrate_cli(argv: list[str]) -> int:
    """Run ``acsim calibrate ...`` in this process, letting its errors raise (unlike ``sim.app.cli.main``)."""
    import argparse

    from sim.app.calibrate_commands import register

    parser = argparse.ArgumentParser(prog="acsim")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def write_match_log(path, n: int = 400, seed: int = 0):
    """A match log in the prototype's layout (Scores, Queries, Caches) from the shipped DiffusionDB
    prompts: each query paired with another prompt, a score in [0.65, 1] that falls with the
    number of words the two do not share, and every fifth row without a cached prompt (as in the
    real log). For the commands' behaviour, on any clone; the real log's figures need it itself."""
    import pandas as pd

    from traces.prompts import read_prompts
    from traces.samples import resolve

    prompts = read_prompts(resolve("sample:diffusiondb_2m_first5k_prompts.txt"))
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        q = prompts[(7 * i) % len(prompts)]
        c = prompts[int(rng.integers(len(prompts)))] if i % 3 else q + ", detailed"
        a, b = set(q.split()), set(c.split())
        overlap = len(a & b) / max(len(a | b), 1)
        rows.append({"Scores": round(0.65 + 0.35 * overlap, 6), "Queries": q, "Caches": "" if i % 5 == 4 else c})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path
