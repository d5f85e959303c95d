"""The pool of identical GPU workers and its queue, as SimPy events with callbacks.

Workers are identical, so the pool only counts idle ones; a job (or batch) in service is
one SimPy ``Timeout`` whose callback finishes it and pulls the next work from the queue.
That hand-rolled worker loop avoids a generator process per worker or request, which
keeps the per-request cost of the simulation to a few heap operations.

Service time of a batch of b jobs (b = 1 without batching)::

    pipeline_overhead_s [+ resume_overhead_s if a job resumes a cached latent] + text_encoder_s
    + work(max(steps)) * step_s(b) + sum(steps of jobs that save) * save_overhead_step_s + b * vae_decode_s
    + (jobs that keep their image for an image cache) * image_save_s

where ``work(n) = n`` unless the model runs a step cache (:mod:`sim.base.step_cache`: the
full-step equivalents of a run of n steps; saving a latent at a K level is not skipped). So a lone
job takes ``pipeline_overhead_s [+ resume_overhead_s] + text_encoder_s + work(steps) * step_s(1)
[+ steps * save_overhead_step_s] + vae_decode_s`` (a job resumes when it runs fewer steps than
its schedule; the two overheads are 0 unless ``acsim calibrate serve`` measured them). A batch
runs as many steps as its longest member and all members finish together. With ``max_batch > 1`` a free GPU starts a batch as soon as ``max_batch`` jobs
wait or the oldest waiting job has waited ``max_wait_s``.

A request with its own image size (``trace.request_resolution``) scales its steps, latent saves
and VAE decode by its latent area (:mod:`sim.base.request_work`): a batch then runs as long as its
largest ``work(steps) * area`` and decodes ``sum(area)`` images' worth.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simpy.events import Timeout

if TYPE_CHECKING:
    from collections.abc import Callable

    import simpy

    from sim.base.config import BatchConfig
    from sim.base.profile import GpuModel
    from sim.engine.queues import Job

# Times closer than this are the same instant (floating-point sums of delays).
_EPS = 1e-9


def job_work(
    gpu: GpuModel, steps: int, saves: bool, image: bool = False, full_steps: int | None = None, area: float = 1.0
) -> float:
    """Seconds one job of ``gpu``'s model takes alone on a GPU (a Profile works too: its main model);
    ``image``: the job writes its final image for an image cache. A request with its own schedule
    and size (:mod:`sim.base.request_work`) gives ``full_steps`` (its N; None: the model's) and
    ``area``, which scales its steps, latent saves and VAE decode."""
    denoise = gpu.denoise_work(steps) * gpu.step_s(1) + (steps * gpu.save_overhead_step_s if saves else 0.0)
    resumed = steps < (gpu.steps if full_steps is None else full_steps)
    fixed = gpu.pipeline_overhead_s + (gpu.resume_overhead_s if resumed else 0.0)
    sized = area * (denoise + gpu.vae_decode_s)
    return fixed + gpu.text_encoder_s + sized + (gpu.image_save_s if image else 0.0)


class WorkTable:
    """:func:`job_work` memoised by its arguments: the engine asks once per request."""

    def __init__(self, gpu: GpuModel) -> None:
        self.gpu = gpu
        self._memo: dict[tuple[int, bool, bool, int | None, float], float] = {}

    def __call__(
        self, steps: int, saves: bool, image: bool = False, full_steps: int | None = None, area: float = 1.0
    ) -> float:
        key = (steps, saves, image, full_steps, area)
        w = self._memo.get(key)
        if w is None:
            w = self._memo[key] = job_work(self.gpu, steps, saves, image, full_steps, area)
        return w


class GpuPool:
    """``gpus`` identical workers serving one queue, optionally in batches, running ``gpu``'s model."""

    def __init__(
        self,
        env: simpy.Environment,
        gpus: int,
        queue: object,
        batch: BatchConfig,
        gpu: GpuModel,
        on_finish: Callable[[Job, float], None] | None = None,
    ) -> None:
        self.env = env
        self.gpus = gpus
        self.idle = gpus
        self.queue = queue
        self.max_batch = batch.max_batch
        self.max_wait = batch.max_wait_s
        self.gpu = gpu
        # Called with (job, its GPU-seconds) when a job's image is done; set before the run.
        self.on_finish = on_finish
        self._step_s = [0.0] + [gpu.step_s(b) for b in range(1, self.max_batch + 1)]
        self.busy_s = 0.0  # GPU-seconds of service
        self.batches = 0
        self.queued_work = 0.0  # batch-of-one seconds of the jobs waiting
        self._busy_until = 0.0  # sum over busy GPUs of the time they free up
        self.queue_area = 0.0  # integral of the queue length over time
        self._q_last = 0.0
        # Autoscaling (sim.engine.autoscaler): busy GPUs to let go as they finish, and who to tell.
        self.retiring = 0
        self.on_release: Callable[[float], None] | None = None
        # Jobs on their way to this pool (their requests still fetching a latent or image): a
        # replica let go waits for them (sim.engine.elastic).
        self.arriving = 0

    # -- load estimate -------------------------------------------------------------

    def backlog_s(self) -> float:
        """Seconds of work ahead of a new job per GPU: queued work plus what is left in service."""
        busy = self.gpus - self.idle
        return (self.queued_work + self._busy_until - busy * self.env.now) / self.gpus

    def wait_s(self) -> float:
        """Expected seconds before a new job starts: 0 with a GPU idle and nobody queued, else the backlog."""
        if self.idle and not len(self.queue):
            return 0.0
        return self.backlog_s()

    def busy_done_s(self) -> float:
        """GPU-seconds of service done so far (what has started, less what is still to run)."""
        busy = self.gpus - self.idle
        return self.busy_s - (self._busy_until - busy * self.env.now)

    # -- size (autoscaling) --------------------------------------------------------

    def add_gpus(self, n: int) -> None:
        """``n`` GPUs join the pool, idle, and take waiting work at once."""
        now = self.env.now
        self.gpus += n
        self.idle += n
        q = self.queue
        if self.max_batch == 1:
            while self.idle and len(q):
                self._tick(now)
                job = q.pop()
                self.queued_work -= job.work
                self._start_one(job, now)
            return
        while self.idle and len(q) and (len(q) >= self.max_batch or q.oldest_ready() + self.max_wait <= now + _EPS):
            self._start_batch(now)

    def release_idle(self, n: int) -> int:
        """Let go of up to ``n`` idle GPUs at once; how many went."""
        gone = min(n, self.idle)
        self.idle -= gone
        self.gpus -= gone
        return gone

    def _retire_one(self, now: float) -> None:
        """The GPU that just finished (and was counted idle) leaves instead of taking more work."""
        self.idle -= 1
        self.retiring -= 1
        self.gpus -= 1
        self.on_release(now)

    # -- arrivals ------------------------------------------------------------------

    def push(self, job: Job) -> None:
        """A job joins the queue (or starts at once on an idle GPU)."""
        env = self.env
        now = env.now
        if self.max_batch == 1:
            if self.idle:
                self._start_one(job, now)
                return
            self._tick(now)
            self.queue.push(job)
            self.queued_work += job.work
            return
        self._tick(now)
        self.queue.push(job)
        self.queued_work += job.work
        if self.idle and (len(self.queue) >= self.max_batch or self.max_wait <= 0):
            self._start_batch(now)
        elif self.max_wait > 0:
            # Even with every GPU busy: one may free up before this job has waited max_wait_s
            # and leave it for company, so its deadline needs an event of its own.
            Timeout(env, self.max_wait, job).callbacks.append(self._wait_over)

    def _wait_over(self, event: Timeout) -> None:
        now = self.env.now
        if self.idle and len(self.queue) and self.queue.oldest_ready() + self.max_wait <= now + _EPS:
            self._start_batch(now)

    def _tick(self, now: float) -> None:
        self.queue_area += len(self.queue) * (now - self._q_last)
        self._q_last = now

    # -- service -------------------------------------------------------------------

    def _start_one(self, job: Job, now: float) -> None:
        self.idle -= 1
        dur = job.work
        job.start = now
        self.busy_s += dur
        self.batches += 1
        self._busy_until += now + dur
        Timeout(self.env, dur, job).callbacks.append(self._done_one)

    def _done_one(self, event: Timeout) -> None:
        job = event.value
        now = self.env.now
        self._busy_until -= job.start + job.work
        self.idle += 1
        self.on_finish(job, job.work)
        if self.retiring:
            self._retire_one(now)
            return
        if len(self.queue):
            self._tick(now)
            nxt = self.queue.pop()
            self.queued_work -= nxt.work
            self._start_one(nxt, now)

    def _start_batch(self, now: float) -> None:
        q = self.queue
        self._tick(now)
        jobs = [q.pop() for _ in range(min(self.max_batch, len(q)))]
        b = len(jobs)
        p = self.gpu
        # A batch runs as long as its longest member (in full-step equivalents, times its latent area).
        longest = max(p.denoise_work(j.steps) * j.area for j in jobs)
        saving_steps = sum(j.steps * j.area for j in jobs if j.saves)
        resumes = any(j.resumes for j in jobs)
        dur = (
            p.pipeline_overhead_s
            + (p.resume_overhead_s if resumes else 0.0)
            + p.text_encoder_s
            + longest * self._step_s[b]
            + saving_steps * p.save_overhead_step_s
            + sum(j.area for j in jobs) * p.vae_decode_s
            + sum(1 for j in jobs if j.image) * p.image_save_s
        )
        for j in jobs:
            j.start = now
            self.queued_work -= j.work
        self.idle -= 1
        self.busy_s += dur
        self.batches += 1
        self._busy_until += now + dur
        Timeout(self.env, dur, (jobs, now + dur, dur)).callbacks.append(self._done_batch)

    def _done_batch(self, event: Timeout) -> None:
        jobs, until, dur = event.value
        now = self.env.now
        self._busy_until -= until
        self.idle += 1
        share = dur / len(jobs)
        for job in jobs:
            self.on_finish(job, share)
        if self.retiring:
            self._retire_one(now)
            return
        q = self.queue
        if len(q) and (len(q) >= self.max_batch or q.oldest_ready() + self.max_wait <= now + _EPS):
            self._start_batch(now)
