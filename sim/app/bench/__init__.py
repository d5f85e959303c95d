"""``acsim bench``: the simulator's speed and memory, each beside a reference measured in the same run.

Every stage runs in a fresh process (so its peak RSS is its own) pinned to one core, on the
same synthetic trace: trace generation, embedding, neighbour precompute (vs hnswlib's raw
batched query), cache-only replay (vs libcachesim LRU on the same exact-ID sequence), the full
SimPy replay (vs a bare SimPy M/M/1 queue), and how replay time and memory grow with the
trace size (the exponent of a log-log fit). With ``--plan``, also ``acsim plan`` over four
systems and two GPU types (on every core: the plan runs its points on the local pool).

The embedding figures put ``minilm-onnx`` and
``minilm-static`` beside PyTorch MiniLM on the same prompts at the same thread count; the
neighbour figures put the ``ivf`` lists (both cores) and today's ``hnsw`` lists (one core)
beside hnswlib's raw batched query, with each one's recall against the exact lists.

``--e2e N`` adds one end-to-end figure, cold, on every core: a synthetic trace of N requests
(default 2M), the static embedder built from MiniLM in an empty model cache, its embeddings
(these three in a child process, whose heap never reaches the rest), the ``ivf`` neighbour lists
(capped at ``E2E_TOP_M``), then a cache-only nirvana replay of every policy at four cache sizes
(two at a time: the compiled replays release the GIL); each stage's time, share and the peak
memory, plus the lists' recall on the first 30k requests (against exact lists) and on a sample
of requests across the trace.

One trace of the largest size asked for is generated, embedded (hashing) and given its
causal neighbour lists once (ivf on every core: this is set-up, not a figure), and cached under
``$ACSIM_CACHE/bench``; later runs reuse it, or any longer cached trace (the output says what
was reused). Every smaller size is a prefix of that trace: causal lists only
look back, so the prefix of the lists IS the lists of the prefix trace. The rate figures are
measured fresh in every run (trace generation and embedding on a trace of ``--requests``,
neighbour precompute on a prefix of ``--precompute`` requests).
"""
