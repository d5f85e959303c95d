"""Typed experiment configuration: YAML loading, --set overrides and the checks of each field.

An experiment file maps onto the :class:`Experiment` dataclass tree below. Loading walks the
YAML mapping against the dataclass fields, so every error names the dotted field path, the bad
value and what is allowed; unknown keys get a did-you-mean. Each dataclass checks its own values
in ``check()`` (ranges, consistency), on defaults and explicit values alike, so a resolved config
written by one run always loads back.

What depends on the machine is not checked here: names of plug-ins (policies, systems, embedders,
predictors, queues) against their registries, files that must exist, installed models. Those
checks run in one step, :func:`sim.app.preflight.preflight`, before ``validate``, ``run`` and
``sweep`` do anything. Per-system parameters (``params.<system>``) are typed by the system that
owns them and resolved there too.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from sim.base import strict_yaml
from sim.base.errors import ConfigError, DeprecatedField, InputError, did_you_mean, unknown_name
from sim.base.slo import parse_duration, parse_slo
from sim.base.step_cache import StepCache, build_step_cache

# Generated arrivals must stay on pandas' nanosecond clock (which ends in 2262) counted from 2022.
MAX_TRACE_YEARS = 100.0
# The full engine keeps a per-minute time series of the simulated span (5.3M minutes at most).
MAX_SIMULATED_YEARS = 10.0
YEAR_S = 365.25 * 86400.0
# Seeds are passed to numpy and stored in int64 columns.
MAX_SEED = 2**63 - 1
# Requests, prompts and users are numbered with 32-bit integers (neighbour lists, user codes).
MAX_INT32 = 2**31 - 1


@dataclass
class ArrivalConfig:
    """Arrival process for traces without timestamps (prompt lists) or synthetic traces."""

    process: str = "poisson"  # a name in traces.arrivals.ARRIVALS (checked by the preflight step)
    rate: float = 0.5  # mean requests per second
    diurnal_amplitude: float = 0.5  # peak-to-mean swing of the daily cycle, 0..1
    burst_factor: float = 5.0  # rate multiplier while a burst is on
    burst_on_s: float = 120.0  # mean length of a burst
    burst_off_s: float = 1800.0  # mean gap between bursts
    rate_path: str | None = None  # CSV with columns minute,rate (requests/s) for process=rate

    def check(self) -> None:
        positive("rate", self.rate)
        if not 0 <= self.diurnal_amplitude < 1:
            raise ConfigError("diurnal_amplitude", self.diurnal_amplitude, "must be in [0, 1)")
        positive("burst_factor", self.burst_factor)
        for name in ("burst_on_s", "burst_off_s"):
            # Bursts are drawn period by period; sub-second periods would need billions of them.
            if getattr(self, name) < 1:
                raise ConfigError(name, getattr(self, name), "must be >= 1 second")


@dataclass
class SyntheticConfig:
    """Knobs of the DiffusionDB-style synthetic generator (:mod:`traces.synthetic`).

    Defaults are fitted to the real DiffusionDB 1k sample (MiniLM, rate-matched; README "Synthetic
    traces" gives each fit and its figures); what a 6.7-hour sample cannot show is marked assumed.
    """

    users: int | None = None  # cap on distinct users (None: as many as the return process creates)
    topics: int = 6000  # shared topic clusters (fitted with zipf_s and shared_prob: pool curve at m = 10/100/700)
    zipf_s: float = 0.7  # Zipf exponent of cluster popularity (fitted: pool curve at m = 10/100/700)
    session_mean: float = 4.6  # prompts per user session (fitted: 217 sessions, mean 4.6, in the 1k window)
    edit_prob: float = 0.55  # chance a later prompt that neither repeats nor starts a new idea edits the last (fitted: similarity quantiles)
    repeat_prob: float = 0.07  # share of requests that repeat the user's previous prompt exactly (fitted: 8.3% exact repeats)
    drift_per_day: float = 0.3  # share of a cluster's popularity score renewed per day (assumed)
    shared_prob: float = 0.5  # chance a new idea comes from a shared cluster (fitted: cross-user share 0.133)
    return_prob: float = 0.4  # mean chance a user comes back after a session (fitted: 173 users, 79% one session)
    return_gap_h: float = 4.0  # median pause between a user's sessions, hours (fitted to the window; tail assumed)
    new_idea_prob: float = 0.15  # chance a later prompt in a session starts a new idea (fitted: share >= 0.65)
    resume_prob: float = 0.3  # chance a returning user resumes their last prompt (fitted: 3% of matches)
    days: float | None = None  # None: derived from requests / arrival rate

    def check(self) -> None:
        for name in ("edit_prob", "repeat_prob", "drift_per_day", "shared_prob", "resume_prob", "new_idea_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(name, getattr(self, name), "must be in [0, 1]")
        if not 0 <= self.return_prob < 1:
            raise ConfigError("return_prob", self.return_prob, "must be in [0, 1) (1: no user would ever leave)")
        if self.session_mean < 1:
            raise ConfigError("session_mean", self.session_mean, "must be >= 1 (prompts per session)")
        for name in ("users", "topics", "days", "zipf_s", "return_gap_h"):
            positive(name, getattr(self, name))
        at_most("users", self.users, MAX_INT32, "users are numbered with 32-bit integers")
        at_most("topics", self.topics, MAX_INT32, "topics are numbered with 32-bit integers")


@dataclass
class TraceConfig:
    """Where requests come from."""

    source: str = "synthetic"  # a name in traces.sources.SOURCES (checked by the preflight step)
    # A list means the first of those files that exists (e.g. the full dataset, else a shipped sample);
    # the preflight step resolves it, so the config saved beside a result names the file used.
    path: str | list[str] | None = None
    requests: int | None = None  # keep the first N requests (None: the whole file; 20,000 synthetic ones)
    start: str | None = None  # ISO time window on the trace's own clock
    end: str | None = None
    time_scale: float = 1.0  # >1 compresses time (more load), <1 stretches it
    # source: table: trace column -> input column (or COLUMN.FIELD of JSON in a column); None: same names
    columns: dict[str, str] | None = None
    time_unit: Literal["s", "ms", "us", "ns"] = "s"  # source: table: unit of numeric timestamps
    # source: table without prompt text: each request gets a prompt of its own (traces.table)
    placeholder_prompts: bool = False
    # source: table: each request's prompt is the next line of this prompt list, in time order; the
    # table keeps as many requests as the list has prompts (a log's users and times, real prompts)
    prompts_from: str | None = None
    arrival: ArrivalConfig = field(default_factory=ArrivalConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    # Each request costs its own denoising steps (the trace's ``steps``) and image size (``width`` x
    # ``height``); off: every request runs the profile's schedule at its resolution (sim.base.request_work).
    request_steps: bool = False
    request_resolution: bool = False
    # Each request asks for its own base model and LoRAs (the trace's ``model`` and ``loras``): a GPU
    # holds one model at a time and pays a load to switch, and each LoRA a load (sim.engine.model_switch).
    request_models: bool = False
    # Each request makes the trace's ``images`` images of its prompt in one batch (GenTD26's
    # num_images_per_prompt: 4 or 8 for 42% of its requests), costing that many images' denoising
    # and decoding; the summary's per-image costs count them (sim.base.request_work).
    request_images: bool = False

    def check(self) -> None:
        positive("requests", self.requests)
        at_most("requests", self.requests, MAX_INT32, "requests are numbered with 32-bit integers")
        positive("time_scale", self.time_scale)
        if isinstance(self.path, list) and not self.path:
            raise ConfigError("path", self.path, "list at least one candidate file")
        if self.prompts_from is not None and self.placeholder_prompts:
            raise ConfigError("prompts_from", self.prompts_from, "gives the prompts: leave placeholder_prompts false")


@dataclass
class SelectorConfig:
    """Similarity -> K mapping and the load-aware (Argus-like) variant."""

    ladder: list[list[float]] | None = None  # [[threshold, K], ...] in the embedder's own cosines; None: the profile's
    # Published similarities (the profile's ladder, `floor`, the retrieval gates, the retrieval
    # quality line, calibrated quality bins) are CLIP-text cosines. true: each is carried to the
    # run's embedder by its map (calibrate/ladders/<embedder>.yaml, sim/reuse/similarity_space.py);
    # false: each is read as the embedder's own cosine, as it stands (for an embedder without a map).
    carried: bool = True
    load_aware: bool = False
    slo_s: float = 60.0  # latency SLO the load-aware selector defends
    floor: float = 0.65  # minimum similarity to reuse at all under load
    max_k: int = 25

    def check(self) -> None:
        if self.ladder is not None:
            check_ladder("ladder", self.ladder)
        positive("slo_s", self.slo_s)
        if not -1 <= self.floor <= 1:
            raise ConfigError("floor", self.floor, "must be a cosine in [-1, 1]")
        positive("max_k", self.max_k)


@dataclass
class CacheConfig:
    """The approximate cache of intermediate latents."""

    capacity: float = 15000
    unit: Literal["latents", "prompts", "bytes"] = "latents"
    policy: str = "lcbfu"  # a name of sim.cache.policies.POLICIES (checked by the preflight step)
    granularity: Literal["latent", "prompt"] = "latent"  # evict one latent or all of a prompt's
    store_on_hit: bool = True  # a hit stores the new prompt's trajectory (false: only misses store)
    # A hit at K makes the new prompt's latents at levels <= K the matched prompt's: "reference"
    # shares those bytes (no storage), "copy" stores copies (a latent each), "computed" stores
    # only the levels above K that the generation computed itself.
    trajectory: Literal["reference", "copy", "computed"] = "reference"
    isolation: Literal["shared", "per-user"] = "shared"
    tier: str | None = None  # storage tier name; None: the profile's default_tier
    # With cluster.replicas: one store every replica fetches from (a remote store such as EFS), or
    # one store per replica, each of ``capacity`` (sim.engine.replicas).
    placement: Literal["shared", "per-replica"] = "shared"
    # Which generations offer their latents to the cache: all | sample:P | when-idle
    # (a name of sim.cache.admission.ADMISSIONS, with its argument; checked by the preflight step).
    admission: str = "all"

    def check(self) -> None:
        positive("capacity", self.capacity, allow_zero=True)
        split_spec("admission", self.admission)


@dataclass
class NeighbourConfig:
    """Causal top-m neighbour lists, precomputed once per (trace, embedder)."""

    # A cap, not a fixed length: a row holds every indexed neighbour above the floor up to
    # top_m (99.7% of rows on the 200k-request bench trace), so the replay's fallback to
    # the exhaustive search is rare.
    top_m: int = 1024
    min_similarity: float | None = None  # None: the lowest threshold in use
    index: Literal["hnsw", "exact", "ivf"] = "hnsw"  # ivf: fastest on large traces (sim/neighbours/ivf.py)

    def check(self) -> None:
        positive("top_m", self.top_m)
        if self.min_similarity is not None and not -1 <= self.min_similarity <= 1:
            raise ConfigError("min_similarity", self.min_similarity, "must be a cosine in [-1, 1]")


@dataclass
class BatchConfig:
    max_batch: int = 1
    max_wait_s: float = 0.0

    def check(self) -> None:
        positive("max_batch", self.max_batch)
        positive("max_wait_s", self.max_wait_s, allow_zero=True)


@dataclass
class StepCacheConfig:
    """``step_cache:``: a step-level cache in the main model's execution (:mod:`sim.base.step_cache`).

    ``kind`` is ``none`` or a name of ``STEP_CACHES``; the other fields override the kind's
    published figures (None: keep them).
    """

    kind: str = "none"
    speedup: float | None = None  # of the denoising loop on the kind's published run
    warmup_steps: int | None = None  # steps computed in full at the start of every run
    clip_loss: float | None = None  # relative CLIP-score loss of the published run

    def check(self) -> None:
        # Figures are checked against the kind here, against the model's architecture once the profile is known.
        self.built(field="")

    def built(self, architecture: str | None = None, field: str = "step_cache") -> StepCache | None:
        """The step cache this block describes, for a model of ``architecture`` (None: any); None for none."""
        return build_step_cache(
            self.kind,
            speedup=self.speedup,
            warmup_steps=self.warmup_steps,
            clip_loss=self.clip_loss,
            architecture=architecture,
            field=field,
        )


@dataclass
class ReplicaConfig:
    """One replica behind the router: ``gpus`` GPUs of one type serving one queue (``copies`` alike)."""

    gpus: int = 1
    # The GPU type (a profile's gpu.name, e.g. a100): the profile of the experiment's model on
    # that GPU. Or ``profile``: a profile name or path. Neither: the experiment's profile.
    gpu: str | None = None
    profile: str | None = None
    copies: int = 1  # identical replicas described by this entry

    def check(self) -> None:
        positive("gpus", self.gpus)
        positive("copies", self.copies)
        if self.gpu is not None and self.profile is not None:
            raise ConfigError("gpu", self.gpu, "give a replica's gpu or its profile, not both")


@dataclass
class RouterConfig:
    """How requests are spread over replicas (sim.engine.routing)."""

    kind: str = "round-robin"  # a name of sim.engine.routing.ROUTERS (checked by the preflight step)
    # cache-affinity: go to the replica holding the best match unless its expected wait exceeds
    # the least-loaded replica's by more than this (then the least-loaded one). Assumed: about
    # three SDXL generations on an A10G; the rule is SGLang's and Ray Serve's (cache affinity while
    # the load is balanced within a threshold; they count queued requests, 64 in SGLang).
    imbalance_s: float = 60.0

    def check(self) -> None:
        positive("imbalance_s", self.imbalance_s, allow_zero=True)


@dataclass
class AutoscaleConfig:
    """``cluster.autoscale``: GPUs added and released during the run (:mod:`sim.engine.autoscaler`).

    Every ``interval_s`` the rule asks for a number of GPUs, clamped to ``min_gpus..max_gpus``. A GPU
    asked for is billed at once and serves after ``provision_s`` (the machine) plus ``model_load_s``
    (the weights); both default to the profile's ``scaling`` block, with its source. GPUs are released
    no sooner than ``cooldown_s`` after the last scale-out: pending ones first, then idle ones, then
    busy ones as they finish their work. The cluster starts with ``cluster.gpus``.
    """

    rule: str = "none"  # none, or a name of sim.engine.autoscaler.SCALING_RULES (utilization, queue-delay, pid)
    # utilization: Kubernetes' Horizontal Pod Autoscaler rule, ceil(GPUs x utilisation / target),
    # left alone within its default tolerance of 10%. The target is assumed (HPA examples use 50-80%).
    target_utilization: float = 0.6
    tolerance: float = 0.1
    # queue-delay: the fewest GPUs whose M/M/c queue at the last interval's load waits this long on
    # average (assumed: a sixth of the quickstart's 60 s SLO).
    target_queue_s: float = 10.0
    # pid: MoDM's PID gains (github.com/stsxxx/MoDM, serving_system.py: Kp, Ki, Kd = 0.6, 0.05, 0.05),
    # per minute, moving toward the queue-delay rule's count.
    kp: float = 0.6
    ki: float = 0.05
    kd: float = 0.05
    min_gpus: int = 1
    max_gpus: int = 16
    interval_s: float = 60.0  # assumed: once a simulated minute (HPA's sync period is 15 s)
    cooldown_s: float = 300.0  # HPA's default scale-down stabilisation window
    provision_s: float | None = None  # None: the profile's scaling.provision_s
    model_load_s: float | None = None  # None: the profile's scaling.model_load_s

    def check(self) -> None:
        if not 0 < self.target_utilization <= 1:
            raise ConfigError("target_utilization", self.target_utilization, "must be in (0, 1]")
        if not 0 <= self.tolerance < 1:
            raise ConfigError("tolerance", self.tolerance, "must be in [0, 1)")
        for name in ("target_queue_s", "interval_s", "min_gpus", "max_gpus"):
            positive(name, getattr(self, name))
        for name in ("cooldown_s", "provision_s", "model_load_s", "kp", "ki", "kd"):
            positive(name, getattr(self, name), allow_zero=True)
        if self.max_gpus < self.min_gpus:
            raise ConfigError("max_gpus", self.max_gpus, f"must be >= min_gpus ({self.min_gpus})")

    @property
    def on(self) -> bool:
        """Whether the cluster scales at all."""
        return self.rule != "none"


# The profile blocks a two-model system's pools run (sim.systems.base.System.pool_models).
POOL_MODELS = ("model", "small_model")


@dataclass
class ControllerConfig:
    """``cluster.controller``: moves GPUs between a two-model system's pools during the run
    (:mod:`sim.engine.pool_split`). Every ``interval_s`` the rule says how many GPUs the main model's
    pool should have (at least one per pool); a GPU that moves stops taking work in its pool (idle
    ones at once, busy ones when their job ends) and serves the other pool after that model's load
    time (``load_s``, else the profile's ``scaling.model_load_s`` / ``scaling.small_model_load_s``).
    """

    rule: str = "static"  # a name of sim.engine.pool_split.SPLIT_RULES: static, load, pid
    interval_s: float = 60.0  # assumed: once a simulated minute, as cluster.autoscale
    # pid: MoDM's PID gains (github.com/stsxxx/MoDM, serving_system.py: Kp, Ki, Kd = 0.6, 0.05, 0.05)
    # and the headroom its allocation leaves the small model (there: 0.9 x available throughput).
    kp: float = 0.6
    ki: float = 0.05
    kd: float = 0.05
    headroom: float = 0.9
    load_s: float | None = None  # None: the destination model's load time from the profile

    def check(self) -> None:
        positive("interval_s", self.interval_s)
        for name in ("kp", "ki", "kd", "load_s"):
            positive(name, getattr(self, name), allow_zero=True)
        if not 0 < self.headroom <= 1:
            raise ConfigError("headroom", self.headroom, "must be in (0, 1]")


@dataclass
class ClusterConfig:
    """The GPU serving cluster: ``gpus`` GPUs behind one queue, or ``replicas`` behind a router."""

    gpus: int = 4  # with replicas: their total (filled in)
    queue: str = "fcfs"  # a name of sim.engine.queues.QUEUES (checked by the preflight step)
    batch: BatchConfig = field(default_factory=BatchConfig)
    replicas: list[ReplicaConfig] | None = None  # None: one replica of ``gpus`` on the experiment's profile
    router: RouterConfig = field(default_factory=RouterConfig)
    autoscale: AutoscaleConfig = field(default_factory=AutoscaleConfig)
    # A two-model system's (modm, cascade) GPUs per model at the start: {model: N, small_model: M},
    # either one (the other gets the rest of ``gpus``). None: one GPU runs the small model.
    pools: dict[str, int] | None = None
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    # trace.request_models: a GPU that frees up takes the oldest queued request of the model it holds,
    # unless the head of the queue has waited this long (sim.engine.model_switch); 0: first come, first served.
    affinity_wait_s: float = 0.0

    def check(self) -> None:
        positive("gpus", self.gpus)
        positive("affinity_wait_s", self.affinity_wait_s, allow_zero=True)
        if self.pools is not None:
            pool_split_of(self.pools, None)  # the names and counts; the sum once a system uses them
        scale = self.autoscale
        if scale.on and not scale.min_gpus <= self.gpus <= scale.max_gpus:
            raise ConfigError(
                "gpus", self.gpus, f"an autoscaled cluster starts within autoscale.min_gpus..max_gpus "
                f"({scale.min_gpus}..{scale.max_gpus})"
            )
        if self.replicas is None:
            return
        if scale.on:
            raise ConfigError(
                "autoscale.rule", scale.rule, "scales one pool of GPUs; leave cluster.replicas out to autoscale"
            )
        if not self.replicas:
            raise ConfigError("replicas", self.replicas, "list at least one replica, or leave replicas out")
        total = sum(r.gpus * r.copies for r in self.replicas)
        default = ClusterConfig.__dataclass_fields__["gpus"].default
        if self.gpus not in (total, default):
            raise ConfigError(
                "gpus", self.gpus, f"the replicas have {total} GPUs in all: leave gpus out or set it to {total}"
            )
        # The total is what every GPU count in the results (utilisation, cost, report) refers to.
        self.gpus = total

    def pool_split(self) -> dict[str, int]:
        """A two-model system's GPUs per model: ``pools`` with the other model's filled in, else one
        GPU for the small model; ConfigError naming ``pools`` unless they share ``gpus``."""
        return pool_split_of(self.pools if self.pools is not None else {"small_model": 1}, self.gpus)


@dataclass
class PredictorConfig:
    """Match predictor that skips the lookup for prompts likely to miss."""

    kind: str = "none"  # a name of sim.engine.predictor.PREDICTORS (checked by the preflight step)
    precision: float = 0.9  # for kind=model
    recall: float = 0.9
    warmup: int = 2000  # requests used to train kind=learned and kind=ocsvm
    # kind=ocsvm: the one-class SVM's nu, the largest share of training hits it may leave outside
    # its region (assumed: 0.1, aiming at ~90% recall like kind=model's default; the paper gives none).
    nu: float = 0.1

    def check(self) -> None:
        for name in ("precision", "recall", "nu"):
            v = getattr(self, name)
            if not 0 < v <= 1:
                raise ConfigError(name, v, "must be in (0, 1]")
        positive("warmup", self.warmup, allow_zero=True)


@dataclass
class MetricsConfig:
    """How records become the summary."""

    # Warm-up left out of the steady-state figures (MoDM does the same): the first N requests
    # (an integer) or those arriving within a duration of the first ("90min", "2h"). 0: none.
    warmup: int | str = 0

    def check(self) -> None:
        warmup_spec(self.warmup)


@dataclass
class PlanConfig:
    """``acsim plan``: the objectives a cluster must meet and what to search (flags override)."""

    slo: list[str] = field(default_factory=list)  # e.g. ["p95<=60", "attainment>=0.99"] (sim.base.slo)
    gpus: list[str] | None = None  # GPU types (profiles of the model on them); None: the experiment's
    loads: list[float] = field(default_factory=lambda: [1.0])  # multiples of trace.time_scale
    max_gpus: int = 256  # give up on a (system, GPU type) beyond this many GPUs
    max_scale: bool = False  # also find the highest load each recommended cluster sustains
    scale_tolerance: float = 0.02  # relative precision of that load

    def check(self) -> None:
        for i, text in enumerate(self.slo):
            parse_slo(text, f"slo[{i}]")
        if self.gpus is not None and not self.gpus:
            raise ConfigError("gpus", self.gpus, "list at least one GPU type, or leave gpus out")
        if not self.loads:
            raise ConfigError("loads", self.loads, "list at least one load (a multiple of trace.time_scale)")
        for i, load in enumerate(self.loads):
            positive(f"loads[{i}]", load)
        positive("max_gpus", self.max_gpus)
        if not 0 < self.scale_tolerance < 1:
            raise ConfigError("scale_tolerance", self.scale_tolerance, "must be in (0, 1)")


@dataclass
class Experiment:
    """One experiment file."""

    name: str = "experiment"
    seed: int = 1
    trace: TraceConfig = field(default_factory=TraceConfig)
    embedder: str = "minilm"  # a name traces.embeddings accepts (checked by the preflight step)
    embedder_device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: a CUDA GPU when torch sees one
    profile: str = "sdxl-a10g"
    selector: SelectorConfig = field(default_factory=SelectorConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    neighbours: NeighbourConfig = field(default_factory=NeighbourConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    step_cache: StepCacheConfig = field(default_factory=StepCacheConfig)
    predictor: PredictorConfig = field(default_factory=PredictorConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    # Names of sim.systems.SYSTEMS, compared in this order (checked by the preflight step).
    systems: list[str] = field(default_factory=lambda: ["vanilla", "gptcache", "exact", "nirvana"])
    # Per-system parameters, ``params.<system>.<field>``; each system types and checks its own
    # (the preflight step writes every default out for the systems in use).
    params: dict[str, Any] = field(default_factory=dict)
    mode: Literal["full", "cache-only"] = "full"
    output: str = "results/experiment"
    plots: bool = True
    # A CSV of published numbers the figures put beside the results (layout: plots/reference.py).
    reference: str | None = None
    sweep: dict[str, Any] | None = None
    plan: PlanConfig = field(default_factory=PlanConfig)

    def check(self) -> None:
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError("seed", self.seed, f"must be in 0..{MAX_SEED}")
        if Path(self.output).name in ("", ".", ".."):
            raise ConfigError("output", self.output, "must name a result directory, e.g. results/my-experiment")
        if not self.systems:
            raise ConfigError("systems", self.systems, "list at least one system")
        for i, name in enumerate(self.systems):
            if name in self.systems[:i]:
                raise ConfigError(f"systems[{i}]", name, "is listed twice; list each system once")
        for name, block in self.params.items():
            if not isinstance(block, Mapping):
                raise ConfigError(f"params.{name}", block, "expected a mapping of the system's parameters")
        if self.sweep is not None:
            sweep_axes(self.sweep)


def check_simulated_span(exp: Experiment, span_s: float) -> None:
    """The full engine's clock must not stretch a trace of ``span_s`` seconds past what it can record.

    Raises ConfigError on ``trace.time_scale`` (or the arrival rate when time is not scaled).
    """
    simulated = span_s / exp.trace.time_scale
    if exp.mode != "full" or simulated <= MAX_SIMULATED_YEARS * YEAR_S:
        return
    hours = f"{span_s / 3600:,.1f} h"
    if exp.trace.time_scale < 1:
        raise ConfigError(
            "trace.time_scale",
            exp.trace.time_scale,
            f"stretches the trace's {hours} to {simulated / YEAR_S:,.0f} simulated years; the full engine "
            f"records every simulated minute and allows at most {MAX_SIMULATED_YEARS:.0f} years",
        )
    raise ConfigError(
        "trace.arrival.rate",
        exp.trace.arrival.rate,
        f"the trace would span {simulated / YEAR_S:,.0f} simulated years; the full engine records every "
        f"simulated minute and allows at most {MAX_SIMULATED_YEARS:.0f} years",
    )


# Old top-level keys that are accepted and moved to their new place, with a note.
_ALIASES = {"gptcache": "params.gptcache"}


# ---------------------------------------------------------------------------
# Value checks shared by the dataclasses


def pool_split_of(pools: Mapping[str, Any], gpus: int | None) -> dict[str, int]:
    """``cluster.pools`` with both models' GPUs filled in (the rest of ``gpus``); ConfigError naming
    ``pools`` unless every pool gets at least one GPU and they add up to ``gpus`` (None: the names
    and counts only, returned as given)."""
    if not isinstance(pools, Mapping) or not pools:
        raise ConfigError("pools", pools, "map " + " and/or ".join(POOL_MODELS) + " to GPUs")
    for key, n in pools.items():
        if key not in POOL_MODELS:
            raise unknown_name("pools", key, list(POOL_MODELS))
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"pools.{key}", n, "must be a whole number of GPUs >= 1")
    if gpus is None:
        return dict(pools)
    if len(pools) == 1:
        (key, n), = pools.items()
        other = POOL_MODELS[1 - POOL_MODELS.index(key)]
        out = {key: n, other: gpus - n}
    else:
        out = dict(pools)
    if min(out.values()) < 1 or sum(out.values()) != gpus:
        raise ConfigError(
            "pools", dict(pools), f"the pools share cluster.gpus ({gpus}): each gets at least 1 and they add up to {gpus}"
        )
    return {k: out[k] for k in POOL_MODELS}


def positive(name: str, value: float | None, *, allow_zero: bool = False) -> None:
    """Raise ConfigError unless ``value`` is None or a number > 0 (>= 0 with ``allow_zero``)."""
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(name, value, "must be " + (">= 0" if allow_zero else "> 0"))


def check_ladder(name: str, ladder: list[list[float]], *, allow_empty: bool = False) -> None:
    """A similarity -> K ladder: rungs [threshold in [-1, 1], integer K > 0], at least one (unless
    ``allow_empty``), distinct thresholds, and a higher similarity never mapped to a smaller K."""
    if not ladder and not allow_empty:
        raise ConfigError(name, ladder, "list at least one [similarity threshold, K] rung")
    for i, rung in enumerate(ladder):
        if (
            not isinstance(rung, list | tuple)
            or len(rung) != 2
            or not -1 <= rung[0] <= 1
            or int(rung[1]) != rung[1]
            or rung[1] <= 0
        ):
            raise ConfigError(f"{name}[{i}]", rung, "expected [similarity threshold in [-1, 1], integer K > 0]")
    order = sorted(range(len(ladder)), key=lambda i: -ladder[i][0])
    for hi, lo in zip(order, order[1:], strict=False):
        if ladder[hi][0] == ladder[lo][0]:
            raise ConfigError(f"{name}[{lo}]", ladder[lo], f"threshold {ladder[lo][0]} appears twice")
        if ladder[hi][1] < ladder[lo][1]:
            raise ConfigError(
                f"{name}[{lo}]",
                ladder[lo],
                f"maps a lower similarity than {ladder[hi]} to a larger K; K must not grow as similarity falls",
            )


def at_most(name: str, value: float | None, limit: float, why: str) -> None:
    """Raise ConfigError when ``value`` exceeds ``limit`` (``why`` says where the limit comes from)."""
    if value is not None and value > limit:
        raise ConfigError(name, value, f"must be <= {limit:,} ({why})")


def split_spec(name: str, spec: str) -> tuple[str, str | None]:
    """``"sample:0.3"`` -> ``("sample", "0.3")``, ``"all"`` -> ``("all", None)`` (a plug-in and its argument).

    Only the shape is checked here; the registry that owns the name checks the name and argument.
    """
    head, sep, arg = str(spec).partition(":")
    if not head.strip() or (sep and not arg.strip()):
        raise ConfigError(name, spec, "expected NAME or NAME:ARGUMENT, e.g. all, sample:0.5, when-idle")
    return head.strip(), (arg.strip() if sep else None)


def warmup_spec(value: int | str) -> tuple[str, float]:
    """``metrics.warmup`` as ("requests", N) or ("seconds", S)."""
    if isinstance(value, bool):
        raise ConfigError("warmup", value, "expected a number of requests or a duration such as 2h")
    if isinstance(value, int):
        positive("warmup", value, allow_zero=True)
        return "requests", float(value)
    return "seconds", parse_duration(value, "warmup")


# ---------------------------------------------------------------------------
# Building typed dataclasses from plain data


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return "a list"
    if origin is dict:
        return "a mapping"
    if tp is type(None):
        return "null"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _coerce(path: str, value: Any, tp: Any) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (int -> float etc.)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(path, value, f"expected a mapping of {tp.__name__} fields")
        return build(tp, value, path)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(path, value, arg)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(path, value, f"expected {_type_name(tp)}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise unknown_name(path, value, allowed)
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(path, value, "expected a list")
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_coerce(f"{path}[{i}]", v, item_tp) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(path, value, "expected a mapping")
        key_tp, item_tp = typing.get_args(tp) or (Any, Any)
        out = {}
        for k, v in value.items():
            key = _coerce(f"{path}.{k}", k, key_tp)
            out[key] = _coerce(f"{path}.{k}", v, item_tp)
        return out
    if tp is Any:
        _check_plain(path, value)
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, value, "expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(path, value, "expected an integer")
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**1023:
        raise ConfigError(path, value, "expected a finite number")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(path, value, "expected a number")
        if not math.isfinite(value):
            raise ConfigError(path, value, "expected a finite number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(path, value, "expected a string")
        if "\x00" in value:
            raise ConfigError(path, value, "expected text without NUL characters")
        return value
    raise TypeError(f"unsupported config annotation {tp!r} at {path}")


def _check_plain(path: str, value: Any) -> None:
    """Untyped data (a system's ``params`` before its system types them, sweep values) holds no
    NaN or infinity either: no field of an experiment file takes one."""
    stack = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ConfigError(where, item, "expected a finite number")
        if isinstance(item, Mapping):
            stack += [(f"{where}.{k}", v) for k, v in item.items()]
        elif isinstance(item, list):
            stack += [(f"{where}[{i}]", v) for i, v in enumerate(item)]


def build(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    """A ``cls`` dataclass from plain data, typed and checked; errors name ``prefix.field``.

    Every dataclass in the tree runs its ``check()`` (defaults included). Used for the
    experiment file and for the parameter blocks that plug-ins declare.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            raise ConfigError(path, value, "unknown field; allowed: " + ", ".join(fields), did_you_mean(key, fields))
        kwargs[key] = _coerce(path, value, hints[key])
    for name, f in fields.items():
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            path = f"{prefix}.{name}" if prefix else name
            tp = hints[name]
            raise ConfigError.missing(
                path, "a required block" if dataclasses.is_dataclass(tp) else f"a required field: {_type_name(tp)}"
            )
    obj = cls(**kwargs)
    _check_tree(obj, prefix, built=set(kwargs))
    return obj


def _check_tree(obj: Any, prefix: str, built: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """Run ``check()`` of ``obj`` and of its default-made dataclass fields (those not in ``built``)."""
    for f in dataclasses.fields(obj):
        child = getattr(obj, f.name)
        if f.name not in built and dataclasses.is_dataclass(child):
            _check_tree(child, f"{prefix}.{f.name}" if prefix else f.name)
    check = getattr(obj, "check", None)
    if check is None:
        return
    try:
        check()
    except ConfigError as exc:
        if not prefix:
            raise
        raise ConfigError(f"{prefix}.{exc.field}", exc.value, exc.allowed, exc.hint) from None


# ---------------------------------------------------------------------------
# Files and overrides


def parse_value(text: str) -> Any:
    """Parse the right-hand side of ``--set key=value`` as a YAML scalar or list (text if it is not YAML)."""
    try:
        return strict_yaml.loads(text)
    except strict_yaml.YamlProblem as exc:
        if exc.problem.startswith("not valid YAML"):
            return text
        raise ConfigError("--set", text, exc.problem) from None


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data[a][b][c] = value`` for ``dotted = "a.b.c"``, creating mappings as needed."""
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        child = node.get(k)
        if child is None:
            child = node[k] = {}
        if not isinstance(child, dict):
            raise ConfigError(dotted, value, f"{k!r} is not a mapping, so it has no sub-field")
        node = child
    node[keys[-1]] = value


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read an experiment file (see :mod:`sim.base.strict_yaml`: plain data, no duplicate keys,
    bounded aliases)."""
    p = Path(path)
    data = strict_yaml.read(p, "experiment file")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(p, "an experiment file must be a YAML mapping of fields")
    return data


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    """Split ``["a.b=1", ...]`` into ``[("a.b", 1), ...]``."""
    out = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError("--set", item, "expected FIELD.PATH=VALUE, e.g. cache.capacity=1500")
        key, text = item.split("=", 1)
        out.append((key.strip(), parse_value(text)))
    return out


def _apply_aliases(data: Mapping[str, Any]) -> dict[str, Any]:
    """Move deprecated top-level keys to their new place (explicit new values win)."""
    data = dict(data)
    for old, new in _ALIASES.items():
        if old not in data:
            continue
        value = data.pop(old)
        warnings.warn(DeprecatedField(old, new), stacklevel=3)
        head, _, rest = new.partition(".")
        block = copy.deepcopy(dict(data.get(head) or {}))
        if isinstance(value, Mapping):
            value = {**value, **(block.get(rest) or {})}
        block[rest] = value
        data[head] = block
    return data


# A saved config's block of what acsim derived from it (the carried thresholds): output only,
# recomputed by every run, so it is dropped when a saved config is read back.
DERIVED = "derived"


def from_dict(data: Mapping[str, Any]) -> Experiment:
    """Validate a plain mapping into an :class:`Experiment` (field types and value checks)."""
    return build(Experiment, _apply_aliases({k: v for k, v in data.items() if k != DERIVED}))


def load(path: str | Path, overrides: list[str] | None = None) -> Experiment:
    """Load an experiment file, apply ``--set`` overrides and validate the result."""
    data = read_yaml(path)
    for key, value in parse_overrides(overrides or []):
        set_path(data, key, value)
    return from_dict(data)


def to_dict(exp: Experiment) -> dict[str, Any]:
    """The resolved config as plain data (what is saved beside every result)."""
    return dataclasses.asdict(exp)


def dump(exp: Experiment, derived: Mapping[str, Any] | None = None) -> str:
    """The resolved config as YAML text, with ``derived`` (what the run derived from it) as its
    :data:`DERIVED` block when given."""
    data = to_dict(exp)
    if derived is not None:
        data[DERIVED] = dict(derived)
    return yaml.safe_dump(data, sort_keys=False)


def replace_path(exp: Experiment, dotted: str, value: Any) -> Experiment:
    """A new validated Experiment with one dotted field changed."""
    data = to_dict(exp)
    data.pop("sweep", None)
    set_path(data, dotted, value)
    return from_dict(data)


# ---------------------------------------------------------------------------
# The sweep block's grammar (one parser, used to check a file and to expand it)

SWEEP_KEYS = ("grid", "zip", "seeds")


def sweep_axes(sweep: Mapping[str, Any]) -> list[list[dict[str, Any]]]:
    """The axes of a ``sweep:`` block: each a list of {dotted path: value} assignments, in file order.

    Two forms: a plain grid ``{path: [values], ..., seeds: [...]}``, or blocks
    ``{grid: {path: [values]}, zip: {path: [values]}, seeds: [...]}`` where grid axes are crossed
    and zip lists advance together (one axis). ``seeds`` adds an axis over ``seed``. Raises
    ConfigError naming ``sweep.<key>`` for anything else. Whether each value suits its field is
    checked when the configurations are built (``sim.app.sweep.expand_sweep``).
    """
    if not isinstance(sweep, Mapping):
        raise ConfigError("sweep", sweep, "expected a mapping of field.path: [values]")
    blocks = "grid" in sweep or "zip" in sweep
    axes: list[list[dict[str, Any]]] = []
    if blocks:
        for key in sweep:
            if key not in SWEEP_KEYS:
                raise ConfigError(f"sweep.{key}", sweep[key], "with grid/zip blocks, allowed keys: grid, zip, seeds")
        for block in ("grid", "zip"):
            part = sweep.get(block) or {}
            if not isinstance(part, Mapping):
                raise ConfigError(f"sweep.{block}", part, "expected a mapping of field.path: [values]")
            for path, values in part.items():
                _check_axis(f"sweep.{block}.{path}", values)
        grid = sweep.get("grid") or {}
        axes += [[{path: v} for v in values] for path, values in grid.items()]
        zipped = sweep.get("zip") or {}
        if zipped:
            lengths = {len(v) for v in zipped.values()}
            if len(lengths) > 1:
                raise ConfigError("sweep.zip", dict(zipped), "zipped lists must all have the same length")
            paths = list(zipped)
            axes.append([dict(zip(paths, combo, strict=True)) for combo in zip(*zipped.values(), strict=True)])
    else:
        for path, values in sweep.items():
            if path != "seeds":
                _check_axis(f"sweep.{path}", values)
                axes.append([{path: v} for v in values])
    seeds = sweep.get("seeds")
    if seeds is not None:
        if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
            raise ConfigError("sweep.seeds", seeds, "expected a non-empty list of integer seeds")
        axes.append([{"seed": s} for s in seeds])
    return axes


def _check_axis(shown: str, values: Any) -> None:
    if not isinstance(values, list) or not values:
        raise ConfigError(shown, values, "expected a non-empty list of values")
