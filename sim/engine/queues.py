"""GPU queue disciplines: the order in which waiting jobs get a GPU.

Each queue holds :class:`Job` objects and offers ``push``, ``pop`` and ``oldest_ready``.
``fcfs`` serves in order of arrival at the queue; ``sjf`` serves the job with the fewest
denoising steps first (ties in arrival order), which favours cache hits under load.
"""

from __future__ import annotations

import heapq
from collections import deque


class Job:
    """One request waiting for (or running on) a GPU."""

    __slots__ = ("i", "ready", "steps", "saves", "image", "work", "start", "area", "resumes", "model", "loras")

    def __init__(
        self,
        i: int,
        ready: float,
        steps: int,
        saves: bool,
        work: float,
        image: bool = False,
        area: float = 1.0,
        resumes: bool = False,
    ) -> None:
        self.i = i
        self.ready = ready  # time it joined the GPU queue
        self.steps = steps  # denoising steps to run
        self.area = area  # latent area relative to the profile's resolution
        self.resumes = resumes  # it resumes a cached latent (runs fewer steps than its schedule)
        self.saves = saves  # whether it stores latents (costs GPU time per step)
        self.image = image  # whether an image cache keeps its final image (latency.image_save_s)
        self.work = work  # its service time alone on a GPU (batch of one)
        self.start = float("nan")  # when its GPU service began
        self.model = -1  # the base model it asks for (trace.request_models; -1: any)
        self.loras = 0  # LoRA adapters it loads


class FCFSQueue:
    """First come, first served."""

    def __init__(self) -> None:
        self._q: deque[Job] = deque()

    def __len__(self) -> int:
        return len(self._q)

    def push(self, job: Job) -> None:
        self._q.append(job)

    def pop(self) -> Job:
        return self._q.popleft()

    def oldest_ready(self) -> float:
        return self._q[0].ready

    def prefer(self, model: int, since: float) -> None:
        """Move the oldest job asking for ``model`` to the head, unless the head has waited since
        before ``since`` (it then keeps its turn: no job waits for ever)."""
        q = self._q
        if q[0].model == model or q[0].ready < since:
            return
        for k, job in enumerate(q):
            if job.model == model:
                del q[k]
                q.appendleft(job)
                return


class SJFQueue:
    """Shortest job (fewest denoising steps) first; non-preemptive."""

    def __init__(self) -> None:
        self._h: list[tuple[int, int, Job]] = []
        self._n = 0

    def __len__(self) -> int:
        return len(self._h)

    def push(self, job: Job) -> None:
        self._n += 1
        heapq.heappush(self._h, (job.steps, self._n, job))

    def pop(self) -> Job:
        return heapq.heappop(self._h)[2]

    def oldest_ready(self) -> float:
        return min(e[2].ready for e in self._h)


QUEUES: dict[str, type[FCFSQueue] | type[SJFQueue]] = {"fcfs": FCFSQueue, "sjf": SJFQueue}
