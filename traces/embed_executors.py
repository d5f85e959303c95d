"""Where the prompts of a large embedding job are encoded: this process, or Ray tasks.

:func:`traces.embeddings.embed_prompts` hands an executor the prompts it still has to encode,
in blocks of one cache shard each, and writes every block's vectors into the on-disk cache as
its own shard as soon as it arrives; so the cache layout does not depend on the executor, an
interrupted job keeps its finished blocks, and a rerun encodes only the missing ones.

* ``local``: the blocks one after the other, in this process (the embedder uses every core).
* ``ray``: one Ray task per block (``num_cpus`` each), on a local Ray started here or on the
  cluster at ``address``. Workers build the embedder by its registry name, so a worker needs
  what that embedder needs (the packaged MiniLM; the model artefacts are built on first use in
  the worker's own ``$ACSIM_CACHE``). Vectors come back to the driver, which writes the shards:
  workers need no shared filesystem.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from sim.base.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

__all__ = ["EMBED_EXECUTORS", "LocalEmbedExecutor", "RayEmbedExecutor", "encode_block"]


def encode_block(name: str, device: str, texts: Sequence[str]) -> np.ndarray:
    """Vectors of ``texts`` by the registered embedder ``name`` (what one Ray task runs)."""
    from traces.embeddings import get_embedder

    return get_embedder(name, device).encode(list(texts))


class LocalEmbedExecutor:
    """Encode the blocks in this process, in order."""

    executor_name = "local"

    def __init__(self, name: str, device: str = "auto", address: str | None = None, cpus: int | None = None):
        if address:
            raise ConfigError("--address", address, "only the ray executor connects to a cluster")
        del cpus  # the embedder itself uses the CPUs this process may run on
        self.name, self.device = name, device

    def map(self, blocks: Sequence[Sequence[str]]) -> Iterator[tuple[int, np.ndarray]]:
        """(block index, vectors) for every block, as each finishes."""
        for i, block in enumerate(blocks):
            yield i, encode_block(self.name, self.device, block)


class RayEmbedExecutor:
    """One Ray task per block; see the module docstring."""

    executor_name = "ray"

    def __init__(self, name: str, device: str = "auto", address: str | None = None, cpus: int | None = None):
        self.name, self.device, self.address, self.cpus = name, device, address, cpus

    def map(self, blocks: Sequence[Sequence[str]]) -> Iterator[tuple[int, np.ndarray]]:
        """(block index, vectors) for every block, in the order the tasks finish."""
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor", "ray", "ray is not installed (pip install 'acsim[ray]')") from None
        started = not ray.is_initialized()
        if started:
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:
                # Local workers import what this process can (a worktree on PYTHONPATH, say).
                path = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
                env = {"PYTHONPATH": path}
                for var in ("ACSIM_CACHE", "ACSIM_MODELS"):
                    if os.environ.get(var):
                        env[var] = os.environ[var]
                ray.init(
                    num_cpus=self.cpus or len(os.sched_getaffinity(0)),
                    include_dashboard=False,
                    log_to_driver=False,
                    runtime_env={"env_vars": env},
                )
        try:
            remote: Any = ray.remote(num_cpus=1, max_retries=1)(encode_block)
            futures = {remote.remote(self.name, self.device, list(b)): i for i, b in enumerate(blocks)}
            while futures:
                done, _ = ray.wait(list(futures), num_returns=1)
                yield futures.pop(done[0]), np.asarray(ray.get(done[0]), dtype=np.float32)
        finally:
            if started:
                ray.shutdown()


EMBED_EXECUTORS: dict[str, type[LocalEmbedExecutor] | type[RayEmbedExecutor]] = {
    "local": LocalEmbedExecutor,
    "ray": RayEmbedExecutor,
}
