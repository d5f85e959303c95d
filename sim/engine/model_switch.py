"""Multi-model traffic (``trace.request_models``): each GPU holds one base model at a time.

Production traffic names a base model per request (GenTD26: 87 of them, the top one 31% of the
requests) and often LoRA adapters. A pool whose trace names models keeps, for every idle GPU,
the model it holds. A job takes an idle GPU that holds its model when there is one; otherwise
it takes the idle GPU whose model is held by the most idle GPUs (the least missed), and pays the
model's load time first (``scaling.model_load_s``: the weights from local disk). Each LoRA a
request loads costs ``scaling.lora_load_s`` (assumed: the trace names how many adapters a request
loads, not which, so none is taken as already loaded). A request that names no model runs on
any GPU as it is. Every GPU starts with the trace's most requested model, and so does a GPU an
autoscaler adds (its provisioning wait pays that load); a GPU let go is one whose model the most
idle GPUs hold.

The loads are GPU time: they lengthen the job (its ``gpu_s`` and latency) and are billed. By
default the queue stays first come, first served: a free GPU takes the head of the queue, whatever
it holds. With ``cluster.affinity_wait_s`` > 0 a GPU that frees up takes the oldest queued request
of the model it holds instead, unless the head of the queue has waited that long (so none waits
for ever): fewer loads, for some reordering.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sim.engine.workers import GpuPool

if TYPE_CHECKING:
    import simpy

    from sim.base.config import BatchConfig
    from sim.base.profile import GpuModel
    from sim.engine.queues import Job


@dataclass(frozen=True)
class SwitchCosts:
    """What a GPU pays to serve a request of another model, and per LoRA."""

    model_load_s: float
    lora_load_s: float
    affinity_wait_s: float = 0.0  # cluster.affinity_wait_s: 0, first come first served


class ModelSwitchingPool(GpuPool):
    """A :class:`GpuPool` whose GPUs each hold one model (batch size 1; see the module docstring)."""

    def __init__(
        self, env: simpy.Environment, gpus: int, queue: object, batch: BatchConfig, gpu: GpuModel, costs: SwitchCosts
    ) -> None:
        super().__init__(env, gpus, queue, batch, gpu)
        self.costs = costs
        self.affinity_wait_s = costs.affinity_wait_s
        self.held: dict[int, int] = {0: gpus}  # model code -> idle GPUs holding it
        self.model_loads = 0
        self.lora_loads = 0

    def _start_one(self, job: Job, now: float) -> None:
        held = self.held
        want = job.model
        if want < 0 or not held.get(want):
            have = max(held, key=held.__getitem__)  # the model most idle GPUs hold
            if want >= 0:
                job.work += self.costs.model_load_s
                self.model_loads += 1
            else:
                want = have
            held[have] -= 1
        else:
            held[want] -= 1
        if job.loras:
            job.work += job.loras * self.costs.lora_load_s
            self.lora_loads += job.loras
        job.model = want  # what the GPU holds when the job ends
        super()._start_one(job, now)

    def add_gpus(self, n: int) -> None:
        self.held[0] = self.held.get(0, 0) + n
        super().add_gpus(n)

    def release_idle(self, n: int) -> int:
        held = self.held
        gone = super().release_idle(n)
        for _ in range(gone):
            held[max(held, key=held.__getitem__)] -= 1
        return gone

    def _done_one(self, event: simpy.events.Timeout) -> None:
        job = event.value
        if not self.retiring:  # else the GPU leaves the pool with the model it holds
            self.held[job.model] = self.held.get(job.model, 0) + 1
        if self.affinity_wait_s > 0 and len(self.queue) > 1 and not self.retiring:
            self.queue.prefer(job.model, self.env.now - self.affinity_wait_s)
        super()._done_one(event)
