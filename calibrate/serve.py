"""A real approximate-caching server: diffusers pipelines in worker processes, a real embedder, a
real hnswlib index over the cached prompts and a real latent store on disk.

It replays a trace in real time (arrivals as the trace gives them, ``trace.time_scale`` applied)
and records what every request met, so that ``acsim calibrate serve`` can hold the simulator's
prediction of the same trace against it (:mod:`calibrate.validation`).

The request path, as the simulator's engine models it (:mod:`sim.engine.source`):

* **front end** (this process, one request at a time, in arrival order): embed the prompt with
  the experiment's embedder; search the index of cached prompts (every cached prompt, most
  similar first; similarities recomputed with :func:`sim.neighbours.similarity.similarities_to`,
  the function every fallback of the simulator scores with); hand the candidates to the
  system's own rule (:meth:`sim.systems.base.System.lookup_among`: the ladder, the levels each
  candidate holds, the policy's hit bookkeeping); read the reused latent (or the returned image)
  from disk. An image a cache returns whole (``exact``, ``gptcache``) finishes here;
* **one FCFS queue** that idle workers pull from;
* **workers** (``--workers`` processes, each with its own pipeline on ``--device``): a miss runs
  all N steps; a reuse at K resumes the loaded latent with ``denoising_start = K/N`` (the stock
  img2img pipeline built from the same components). The step callback writes the latents at the
  levels the decision stores (``torch.save`` + fsync, as ``calibrate latency`` times it); an
  image cache writes the final image;
* **completion** (front end, as soon as a worker reports): the system's ``complete`` stores the
  levels and its eviction policy chooses the victims; the store on disk is then made to hold
  exactly what the policy kept (new files moved into place, evicted ones deleted) and the index
  follows (added prompts, deleted ones).

The store on disk therefore always holds what the system's store holds; decisions differ from
the simulator's only where the index finds other candidates than the precomputed lists, or where a
completion and an arrival happen in the other order than the simulator's clock puts them
(``completed_before``, recorded per request, shows which).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sim.base.errors import ConfigError
from sim.base.records import REUSE_OUTCOMES
from sim.neighbours.similarity import similarities_to

if TYPE_CHECKING:
    from sim.systems.base import Decision, System

# Files of the store, under --store: what a worker wrote for request i waits in incoming/ until
# the request completes and the policy has decided what stays.
LATENTS, IMAGES, INCOMING = "latents", "images", "incoming"
_REUSE = frozenset(REUSE_OUTCOMES)
_POLL_S = 0.0005  # longest wait between looks at the workers' reports while waiting for an arrival


@dataclass(frozen=True)
class ModelSpec:
    """What a worker builds: a pipeline (``calibrate.pipelines.load_model``) and how it runs."""

    model: str
    device: str = "cpu"
    dtype: str = "fp32"
    seed: int = 0
    steps: int = 50
    resolution: int | None = None  # None: the model's native one
    guidance: float | None = None  # None: the pipeline's default
    threads: int = 1  # torch threads per worker (CPU)


@dataclass(frozen=True)
class Job:
    """One request's GPU work, as a worker receives it."""

    i: int
    prompt: str
    k_from: int  # steps already done by the reused latent (0: a fresh generation)
    latent: np.ndarray | None  # the reused latent (k_from > 0)
    save_levels: tuple[int, ...]  # levels whose latents the generation writes
    save_image: bool  # an image cache keeps the final image
    out: str = ""  # directory the worker writes the latents and the image into


@dataclass(frozen=True)
class Report:
    """What a worker reports for one job."""

    i: int
    worker: int
    start: float  # perf_counter seconds (CLOCK_MONOTONIC: the same clock in every process)
    finish: float
    steps: int  # denoising steps the pipeline ran
    error: str | None = None


def latent_path(store: Path, slot: int, level: int) -> Path:
    return store / LATENTS / f"{slot}" / f"{level}.pt"


def image_path(store: Path, slot: int) -> Path:
    return store / IMAGES / f"{slot}.png"


def incoming_dir(store: Path, i: int) -> Path:
    return store / INCOMING / f"{i}"


def _save_fsync(obj: Any, path: Path) -> None:
    import torch

    with open(path, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())


class Generator:
    """A pipeline that runs a job: a fresh generation, or the rest of one from a cached latent."""

    def __init__(self, spec: ModelSpec) -> None:
        import diffusers
        import torch
        from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionXLImg2ImgPipeline

        from calibrate.pipelines import load_model

        if spec.device == "cpu":
            torch.set_num_threads(spec.threads)
        diffusers.utils.logging.set_verbosity_error()  # its note on every prompt over CLIP's 77 tokens
        self.spec = spec
        self.model = load_model(spec.model, spec.device, spec.dtype, spec.seed)
        pipe = self.model.pipe
        img2img = StableDiffusionXLImg2ImgPipeline if self.model.family == "sdxl" else StableDiffusionImg2ImgPipeline
        self.resume_pipe = img2img.from_pipe(pipe)
        self.resume_pipe.set_progress_bar_config(disable=True)
        self.resolution = spec.resolution or self.model.resolution
        self.extra = {} if spec.guidance is None else {"guidance_scale": spec.guidance}

    def run(self, job: Job, out: Path) -> tuple[int, Any]:
        """(steps run, the final PIL image); latents at ``job.save_levels`` are written to ``out``."""
        import torch

        n = self.spec.steps
        done = [0]

        def on_step(pipe: Any, idx: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            done[0] += 1
            level = job.k_from + idx + 1
            if level in job.save_levels:
                _save_fsync(kwargs["latents"].detach().cpu(), out / f"{level}.pt")
            return {}

        common = {
            "prompt": job.prompt,
            "num_inference_steps": n,
            "generator": torch.Generator("cpu").manual_seed(self.spec.seed),
            "callback_on_step_end": on_step,
            "callback_on_step_end_tensor_inputs": ["latents"],
            **self.extra,
        }
        with torch.inference_mode():
            if job.k_from > 0:
                latents = torch.from_numpy(job.latent).to(self.model.device, self.model.dtype)
                image = self.resume_pipe(image=latents, denoising_start=job.k_from / n, **common).images[0]
            else:
                size = self.resolution
                image = self.model.pipe(height=size, width=size, **common).images[0]
        return done[0], image


def _warm(gen: Generator, tmp: Path) -> None:
    """One fresh generation and one resumed from its first saved level: both paths warmed."""
    import torch

    k = 1
    gen.run(Job(-1, "warm-up", 0, None, (k,), False, str(tmp)), tmp)
    latent = torch.load(tmp / f"{k}.pt", map_location="cpu").float().numpy()
    gen.run(Job(-1, "warm-up", k, latent, (), False, str(tmp)), tmp)


def _worker_main(w: int, spec: ModelSpec, jobs: Any, reports: Any) -> None:
    """A worker process: build the pipeline, warm it, then run jobs until told to stop (None)."""
    import tempfile

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # import-time notes, once per worker
    try:
        gen = Generator(spec)
        with tempfile.TemporaryDirectory(prefix="acsim-warm-") as tmp:
            _warm(gen, Path(tmp))
    except Exception as exc:  # the front end reports it and stops
        reports.put(Report(-1, w, 0.0, 0.0, 0, f"{type(exc).__name__}: {exc}"))
        return
    reports.put(Report(-1, w, 0.0, 0.0, 0))  # ready
    while True:
        job = jobs.get()
        if job is None:
            return
        start = time.perf_counter()
        try:
            out = Path(job.out)
            out.mkdir(parents=True, exist_ok=True)
            steps, image = gen.run(job, out)
            if job.save_image:
                with open(out / "image.png", "wb") as fh:
                    image.save(fh, format="PNG")
                    fh.flush()
                    os.fsync(fh.fileno())
            reports.put(Report(job.i, w, start, time.perf_counter(), steps))
        except Exception as exc:
            reports.put(Report(job.i, w, start, time.perf_counter(), 0, f"{type(exc).__name__}: {exc}"))


class WorkerPool:
    """``workers`` processes, each with its own pipeline, pulling jobs from one FCFS queue.

    One pool serves the calibration's timed jobs and then every system's run, so what the profile
    measures is what the served jobs meet (the same processes, warmed the same way)."""

    def __init__(self, spec: ModelSpec, workers: int = 1) -> None:
        ctx = mp.get_context("spawn")
        self.spec = spec
        self.jobs, self.reports = ctx.Queue(), ctx.Queue()
        self.procs = [
            ctx.Process(target=_worker_main, args=(w, spec, self.jobs, self.reports), daemon=True) for w in range(workers)
        ]
        for p in self.procs:
            p.start()
        try:
            for _ in self.procs:  # every worker built and warmed before anything is timed
                r = self.reports.get()
                if r.error:
                    raise RuntimeError(f"worker {r.worker} failed to start: {r.error}")
        except BaseException:
            self.close()
            raise

    @property
    def workers(self) -> int:
        return len(self.procs)

    def time_job(self, job: Job, repeats: int) -> list[float]:
        """Seconds of ``repeats`` runs of ``job``, one at a time, as a worker reports them."""
        out = []
        for _ in range(repeats):
            self.jobs.put(job)
            r = self.reports.get()
            if r.error:
                raise RuntimeError(f"timed job failed on worker {r.worker}: {r.error}")
            out.append(r.finish - r.start)
        return out

    def close(self) -> None:
        for _ in self.procs:
            self.jobs.put(None)
        for p in self.procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DiskStore:
    """The latents and images on disk, kept equal to the system's store after every change."""

    def __init__(self, root: Path, system: System, levels: tuple[int, ...]) -> None:
        self.root = root
        self.system = system
        self.shift = system.shift
        self.n = system.n_steps
        self.levels = levels
        self.held: set[int] = set()  # entry keys with a file (own latents and images, not references)
        for sub in (LATENTS, IMAGES, INCOMING):
            (root / sub).mkdir(parents=True, exist_ok=True)

    def path(self, key: int) -> Path:
        slot, level = key >> self.shift, key & ((1 << self.shift) - 1)
        return image_path(self.root, slot) if level == self.n else latent_path(self.root, slot, level)

    def wanted(self) -> set[int]:
        """Keys the system's store holds in bytes: every cached level that is not a reference."""
        store = self.system.store
        refs, shift = store.refs, self.shift
        out = set()
        for slot, mask in store.masks.items():
            while mask:
                level = mask.bit_length() - 1
                mask &= ~(1 << level)
                key = slot << shift | level
                if key not in refs:
                    out.add(key)
        return out

    def reconcile(self, i: int | None) -> None:
        """Make the files hold what the store holds: request i's new files moved in, the rest deleted."""
        want = self.wanted()
        incoming = incoming_dir(self.root, i) if i is not None else None
        for key in want - self.held:
            if incoming is None:
                raise RuntimeError(f"the store holds entry {key} that no generation wrote")
            level = key & ((1 << self.shift) - 1)
            src = incoming / ("image.png" if level == self.n else f"{level}.pt")
            dst = self.path(key)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
        for key in self.held - want:
            self.path(key).unlink()
        self.held = want
        if incoming is not None:
            shutil.rmtree(incoming, ignore_errors=True)

    def contents(self) -> dict[int, tuple[int, ...]]:
        """Slot -> levels with a file on disk (read from the directory, not from memory)."""
        out: dict[int, list[int]] = {}
        for p in (self.root / LATENTS).glob("*/*.pt"):
            out.setdefault(int(p.parent.name), []).append(int(p.stem))
        for p in (self.root / IMAGES).glob("*.png"):
            out.setdefault(int(p.stem), []).append(self.n)
        return {s: tuple(sorted(v)) for s, v in sorted(out.items())}


class CachedIndex:
    """An hnswlib index over the cached prompts' embeddings (label = slot)."""

    def __init__(self, dim: int, capacity: int, seed: int) -> None:
        import hnswlib

        self.index = hnswlib.Index(space="ip", dim=dim)
        self.index.init_index(max_elements=max(capacity, 16), ef_construction=200, M=16, random_seed=seed, allow_replace_deleted=True)
        self.members: set[int] = set()

    def sync(self, slots: set[int], emb: np.ndarray) -> None:
        """Add the newly cached slots, delete the ones no longer cached."""
        for s in sorted(self.members - slots):
            self.index.mark_deleted(s)
        new = sorted(slots - self.members)
        if new:
            if self.index.get_current_count() + len(new) > self.index.get_max_elements():
                self.index.resize_index(2 * (self.index.get_current_count() + len(new)))
            self.index.add_items(emb[new], np.asarray(new), replace_deleted=True)
        self.members = set(slots)

    def search(self, q: np.ndarray) -> list[int]:
        """Every cached slot, most similar first (ef at least the number cached: an exhaustive search)."""
        k = len(self.members)
        if not k:
            return []
        self.index.set_ef(max(64, 2 * k))
        labels, _ = self.index.knn_query(q[None, :], k=k)
        return [int(x) for x in labels[0]]


class Server:
    """One system served for real (see the module docstring)."""

    def __init__(
        self,
        system: System,
        prompts: list[str],  # text of each prompt id
        prompt_ids: np.ndarray,  # prompt id of each request
        embedder: Any,
        pool: WorkerPool,
        store: Path,
        seed: int = 1,
    ) -> None:
        if not system.real_lookup:
            raise ConfigError("systems", system.name, "a system a real server can run (its class sets real_lookup)")
        self.system = system
        self.prompts = prompts
        self.pids = np.asarray(prompt_ids)
        self.embedder = embedder
        self.pool = pool
        self.store = store
        levels = tuple(sorted(getattr(system, "levels", ())))
        self.disk = DiskStore(store, system, levels) if system.caches else None
        n_prompts = int(self.pids.max()) + 1 if len(self.pids) else 1
        self.emb = np.zeros((n_prompts, embedder.dim), np.float32)
        self.embedded = np.zeros(n_prompts, bool)
        self.index = CachedIndex(embedder.dim, n_prompts, seed) if system.lookup_kind == "vector" else None
        self.on_complete: Any = None  # called with the request after each completion is applied (tests)

    def run(self, arrival_s: np.ndarray, progress: Any = None) -> pd.DataFrame:
        """Serve requests 0..n-1 arriving at ``arrival_s`` (seconds, in real time); their records."""
        self.embedder.encode(["warm-up"])
        return self._replay(np.asarray(arrival_s, dtype=float), self.pool.jobs, self.pool.reports, progress)

    def _replay(self, arrival: np.ndarray, jobs: Any, reports: Any, progress: Any) -> pd.DataFrame:
        n = len(arrival)
        nan = float("nan")
        cols: dict[str, list[Any]] = {
            k: [nan] * n for k in ("embed_s", "lookup_s", "fetch_s", "ready_s", "start_s", "finish_s")
        }
        cols.update({k: [0] * n for k in ("steps_run", "worker", "completed_before")})
        decisions: list[Decision | None] = [None] * n
        pending: dict[int, Decision] = {}
        completed = 0
        t0 = time.perf_counter() + 0.05
        for i in range(n):
            due = t0 + arrival[i]
            while True:  # completions reported before the arrival are applied before its lookup
                completed += self._drain(reports, pending, cols, t0, block_s=0.0)
                left = due - time.perf_counter()
                if left <= 0:
                    break
                completed += self._drain(reports, pending, cols, t0, block_s=min(left, _POLL_S * 20))
            cols["completed_before"][i] = completed
            d, fetched = self._front_end(i, cols, t0)
            decisions[i] = d
            if d.steps > 0:
                pending[i] = d
                jobs.put(self._job(i, d, fetched))
            else:  # an image returned whole: finished once fetched
                cols["start_s"][i] = cols["finish_s"][i] = cols["ready_s"][i]
                self._complete(i, d)
                completed += 1
            if progress is not None:
                progress(i)
        while pending:
            completed += self._drain(reports, pending, cols, t0, block_s=60.0)
        return self._frame(arrival, decisions, cols)

    def _front_end(self, i: int, cols: dict[str, list[Any]], t0: float) -> tuple[Decision, Any]:
        """Request i's decision and what its reuse read from disk (None when nothing)."""
        system = self.system
        pid = int(self.pids[i])
        t = time.perf_counter()
        if system.lookup_kind == "vector":
            self.emb[pid] = self.embedder.encode([self.prompts[pid]])[0]
            self.embedded[pid] = True
        t_embed = time.perf_counter()
        if system.lookup_kind == "vector":
            slots = self.index.search(self.emb[pid])
            sims = similarities_to(self.emb, np.asarray(slots, dtype=np.int64), pid)
        elif system.lookup_kind == "hash":
            slots = [pid] if image_path(self.store, pid).exists() else []  # the server's own key-value lookup
            sims = np.ones(len(slots), np.float32)
        else:
            slots, sims = [], np.zeros(0, np.float32)
        d = system.lookup_among(i, slots, sims, t_embed - t0)
        t_look = time.perf_counter()
        fetched = self._fetch(d) if d.outcome in _REUSE else None
        t_fetch = time.perf_counter()
        cols["embed_s"][i] = t_embed - t
        cols["lookup_s"][i] = t_look - t_embed
        cols["fetch_s"][i] = t_fetch - t_look
        cols["ready_s"][i] = t_fetch - t0
        return d, fetched

    def _fetch(self, d: Decision) -> Any:
        """Read the reused latent (a resumed generation) or the returned image from disk."""
        import torch

        store = self.system.store
        key = store.latent_of(d.matched, d.k_used)  # shared isolation: slot = prompt id
        path = self.disk.path(key)
        if d.k_used == self.system.n_steps:
            return path.read_bytes()  # the image, returned as it is stored
        return torch.load(path, map_location="cpu").float().numpy()

    def _job(self, i: int, d: Decision, latent: np.ndarray | None) -> Job:
        image = bool(d.store_levels) and d.store_levels[-1] == self.system.n_steps
        latents = tuple(k for k in d.store_levels if k < self.system.n_steps)
        if self.system.saved_latents(d) == 0:
            latents = ()
        k_from = d.k_used if d.steps < self.system.n_steps else 0
        out = str(incoming_dir(self.store, i))
        return Job(i, self.prompts[int(self.pids[i])], k_from, latent, latents, image, out)

    def _drain(self, reports: Any, pending: dict[int, Decision], cols: dict[str, list[Any]], t0: float, block_s: float) -> int:
        """Apply the reports waiting (waiting up to ``block_s`` for the first); how many."""
        done = 0
        while True:
            try:
                r = reports.get(timeout=block_s) if block_s > 0 and done == 0 else reports.get_nowait()
            except queue.Empty:
                return done
            if r.error:
                raise RuntimeError(f"request {r.i} failed on worker {r.worker}: {r.error}")
            d = pending.pop(r.i)
            cols["start_s"][r.i] = r.start - t0
            cols["finish_s"][r.i] = r.finish - t0
            cols["steps_run"][r.i] = r.steps
            cols["worker"][r.i] = r.worker
            self._complete(r.i, d)
            done += 1

    def _complete(self, i: int, d: Decision) -> None:
        system = self.system
        system.complete(i, d, 0.0)
        if self.disk is not None:
            self.disk.reconcile(i)
        if self.index is not None:
            self.index.sync({s for s in system.store.masks if self.embedded[s]}, self.emb)
        if self.on_complete is not None:
            self.on_complete(i)

    def _frame(self, arrival: np.ndarray, decisions: list[Decision | None], cols: dict[str, list[Any]]) -> pd.DataFrame:
        df = pd.DataFrame(
            {
                "request": np.arange(len(arrival)),
                "prompt_id": self.pids[: len(arrival)],
                "arrival_s": arrival,
                **{k: np.asarray(v) for k, v in cols.items()},
                "outcome": [d.outcome for d in decisions],
                "matched": [d.matched for d in decisions],
                "k_used": [d.k_used for d in decisions],
                "k_planned": [d.k_planned for d in decisions],
                "steps": [d.steps for d in decisions],
            }
        )
        df["queue_s"] = df["start_s"] - df["ready_s"]
        df["latency_s"] = df["finish_s"] - df["arrival_s"]
        df["gpu_s"] = np.where(df["steps"] > 0, df["finish_s"] - df["start_s"], 0.0)
        return df
