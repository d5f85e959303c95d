"""Latency calibration: time denoising steps by batch size, the text encoders, VAE decode and latent I/O.

Steps are timed inside the stock pipeline call: a ``callback_on_step_end`` records a clock mark after
every step, and the gaps between consecutive marks are step times (scheduler and guidance
included, set-up excluded). On CUDA the marks are CUDA events (read after a synchronize, so timing
does not stall the GPU queue); on CPU they are ``time.perf_counter``. Every measurement is preceded
by warm-up runs and repeated; results keep the median and the spread.

The same measurement writes either the main model's blocks (:func:`to_profile`) or the profile's
``small_model`` block (:func:`to_small_model`): a distilled few-step model timed with its own step
count and guidance (0: no classifier-free guidance, one UNet pass per step).
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from calibrate.writer import MEASURED, carried, hardware_name
from sim.base.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    from calibrate.pipelines import LoadedModel

# Prompt text does not change the cost (CLIP pads to 77 tokens); a fixed set keeps runs reproducible.
PROMPTS = (
    "a watercolor painting of a lighthouse on a cliff at sunset, highly detailed",
    "portrait of a cyberpunk samurai, neon lights, rain, cinematic lighting, 8k",
    "a cozy cabin in a snowy forest, warm light in the windows, digital art",
    "an astronaut riding a horse on mars, photorealistic, wide angle",
)


@dataclass(frozen=True)
class Stat:
    """Median and spread of repeated timings, in seconds."""

    median: float
    p25: float
    p75: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, samples: list[float]) -> Stat:
        """Summarise a non-empty list of samples."""
        a = np.asarray(samples, dtype=float)
        p25, med, p75 = np.percentile(a, [25, 50, 75])
        return cls(float(med), float(p25), float(p75), float(a.min()), float(a.max()), int(a.size))

    def spread(self) -> dict[str, float | int]:
        """The spread as a profile sub-mapping."""
        return {"p25": self.p25, "p75": self.p75, "min": self.min, "max": self.max, "n": self.n}


@dataclass
class LatencyResult:
    """Everything ``calibrate latency`` measured."""

    steps: int
    resolution: int
    step_s: dict[int, Stat]
    text_encoder: Stat
    vae_decode: Stat
    vae_decode_dtype: str
    latent_save: Stat
    latent_load: Stat
    latent_shape: tuple[int, ...]
    latent_dtype: str
    latent_bytes: int
    latent_file_bytes: int
    timer: str
    repeats: int
    warmup: int
    peak_memory_bytes: dict[int, int] = field(default_factory=dict)
    guidance: float | None = None  # guidance scale the steps ran with (None: the pipeline's default)


class Clock:
    """Marks and elapsed seconds: CUDA events on a GPU, ``perf_counter`` on a CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.name = "cuda-events" if self.cuda else "perf_counter"

    def mark(self) -> Any:
        """A point in time on the device's stream."""
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def sync(self) -> None:
        """Wait for queued device work (a no-op on CPU)."""
        if self.cuda:
            torch.cuda.synchronize()

    def seconds(self, a: Any, b: Any) -> float:
        """Seconds between two marks (call :meth:`sync` first on CUDA)."""
        return a.elapsed_time(b) / 1000.0 if self.cuda else b - a


def _dtype_name(dtype: torch.dtype) -> str:
    return {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}.get(dtype, str(dtype))


def step_times(
    model: LoadedModel,
    batch: int,
    steps: int,
    resolution: int,
    clock: Clock,
    seed: int,
    guidance: float | None = None,
) -> list[float]:
    """Seconds of each denoising step (after the first) of one pipeline call at ``batch`` images
    (``guidance``: the guidance scale; <= 1 runs without classifier-free guidance)."""
    marks: list[Any] = []

    def on_step(pipe: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        marks.append(clock.mark())
        return {}

    prompts = [PROMPTS[j % len(PROMPTS)] for j in range(batch)]
    extra = {} if guidance is None else {"guidance_scale": guidance}
    model.pipe(
        prompt=prompts,
        num_inference_steps=steps,
        height=resolution,
        width=resolution,
        output_type="latent",
        generator=torch.Generator("cpu").manual_seed(seed),
        callback_on_step_end=on_step,
        **extra,
        **model.call_kwargs(),
    )
    clock.sync()
    return [clock.seconds(a, b) for a, b in pairwise(marks)]


def time_call(fn: Callable[[], Any], clock: Clock, repeats: int, warmup: int) -> list[float]:
    """Seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    clock.sync()
    out = []
    for _ in range(repeats):
        a = clock.mark()
        fn()
        b = clock.mark()
        clock.sync()
        out.append(clock.seconds(a, b))
    return out


def _drop_page_cache(path: Path) -> None:
    # Ask the kernel to forget the file's pages so a load reads the disk, not memory.
    if hasattr(os, "posix_fadvise"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def latent_io(latent: torch.Tensor, scratch: Path, repeats: int) -> tuple[list[float], list[float], int]:
    """Seconds to save (device -> ``torch.save`` -> fsync) and load (disk -> device) one latent; file size."""
    saves, loads, size = [], [], 0
    with tempfile.TemporaryDirectory(prefix="acsim-latent-", dir=scratch) as tmp:
        for r in range(repeats + 1):
            path = Path(tmp) / f"latent-{r}.pt"
            t0 = time.perf_counter()
            with open(path, "wb") as fh:
                torch.save(latent.detach().cpu(), fh)
                fh.flush()
                os.fsync(fh.fileno())
            t1 = time.perf_counter()
            size = path.stat().st_size
            _drop_page_cache(path)
            t2 = time.perf_counter()
            back = torch.load(path, map_location="cpu").to(latent.device)
            if latent.device.type == "cuda":
                torch.cuda.synchronize(latent.device)
            t3 = time.perf_counter()
            if not torch.equal(back, latent):
                raise RuntimeError("latent read back from disk differs from the one saved")
            if r > 0:  # the first round warms the file system and torch's serializer
                saves.append(t1 - t0)
                loads.append(t3 - t2)
    return saves, loads, size


def measure(
    model: LoadedModel,
    batches: list[int],
    steps: int,
    resolution: int | None = None,
    repeats: int = 3,
    warmup: int = 1,
    seed: int = 0,
    scratch: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    guidance: float | None = None,
) -> LatencyResult:
    """Time ``model`` at each batch size; see the module docstring for what is measured and how.

    ``guidance``: the guidance scale to run with (None: the pipeline's default; <= 1 runs
    without classifier-free guidance, as distilled few-step models do).
    """
    if steps < 2:
        raise ConfigError("--steps", steps, "at least 2 (step times are gaps between step ends)")
    if repeats < 1 or warmup < 0:
        raise ConfigError("--repeats/--warmup", (repeats, warmup), "repeats >= 1 and warmup >= 0")
    if not batches or any(b < 1 for b in batches):
        raise ConfigError("--batch", batches, "a comma-separated list of positive batch sizes")
    res = resolution or model.resolution
    if res % (model.vae_scale_factor * 8):
        raise ConfigError("--resolution", res, f"a multiple of {model.vae_scale_factor * 8}")
    say = progress or (lambda _msg: None)
    clock = Clock(model.device)
    cuda = model.device.type == "cuda"
    pipe = model.pipe

    step_s: dict[int, Stat] = {}
    peak: dict[int, int] = {}
    with torch.inference_mode():
        for b in sorted(set(batches)):
            if cuda:
                torch.cuda.reset_peak_memory_stats(model.device)
            for _ in range(warmup):
                step_times(model, b, min(steps, 3), res, clock, seed, guidance)
            samples: list[float] = []
            for r in range(repeats):
                samples += step_times(model, b, steps, res, clock, seed + r, guidance)
            step_s[b] = Stat.of(samples)
            if cuda:
                peak[b] = int(torch.cuda.max_memory_allocated(model.device))
            say(f"batch {b}: {step_s[b].median * 1000:.2f} ms/step (n={step_s[b].n})")

        def encode() -> Any:
            if model.family == "flux":  # guidance is embedded in the transformer: one prompt encoding
                return pipe.encode_prompt(
                    prompt=PROMPTS[0], prompt_2=None, device=model.device, **model.call_kwargs()
                )
            return pipe.encode_prompt(
                prompt=PROMPTS[0],
                device=model.device,
                num_images_per_prompt=1,
                do_classifier_free_guidance=guidance is None or guidance > 1,
            )

        text = Stat.of(time_call(encode, clock, max(repeats, 3), max(warmup, 1)))
        say(f"text encoder: {text.median * 1000:.2f} ms")

        f = model.vae_scale_factor
        shape = (1, model.latent_channels, res // f, res // f)
        latent = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)
        latent = latent.to(model.device, model.dtype)
        vae = pipe.vae
        # The stock pipelines decode in fp32 when the VAE is fp16 and asks for it (force_upcast).
        if model.dtype == torch.float16 and getattr(vae.config, "force_upcast", False):
            vae = copy.deepcopy(vae).to(torch.float32)
        scaled = (latent / vae.config.scaling_factor).to(vae.dtype)
        decode = Stat.of(time_call(lambda: vae.decode(scaled), clock, max(repeats, 3), max(warmup, 1)))
        say(f"VAE decode: {decode.median * 1000:.2f} ms")

    scratch_dir = Path(scratch) if scratch else Path(tempfile.gettempdir())
    scratch_dir.mkdir(parents=True, exist_ok=True)
    saves, loads, file_bytes = latent_io(latent, scratch_dir, max(repeats, 5))
    save, load = Stat.of(saves), Stat.of(loads)
    say(
        f"latent save {save.median * 1000:.2f} ms, load {load.median * 1000:.2f} ms, {file_bytes} bytes on disk"
    )
    return LatencyResult(
        steps=steps,
        resolution=res,
        step_s=step_s,
        text_encoder=text,
        vae_decode=decode,
        vae_decode_dtype=_dtype_name(vae.dtype),
        latent_save=save,
        latent_load=load,
        latent_shape=tuple(shape[1:]),
        latent_dtype=_dtype_name(model.dtype),
        latent_bytes=latent.numel() * latent.element_size(),
        latent_file_bytes=file_bytes,
        timer=clock.name,
        repeats=repeats,
        warmup=warmup,
        peak_memory_bytes=peak,
        guidance=guidance,
    )


# Latency fields a latency run measures; the others of the base block are carried over.
_MEASURED_LATENCY = (
    "denoise_step_s",
    "denoise_step_spread_s",
    "save_overhead_step_s",
    "text_encoder_s",
    "vae_decode_s",
    "latent_save_s",
    "latent_load_s",
)


def check_steps(base: dict[str, Any], steps: int) -> None:
    """The ladder carried over from ``base`` must fit in ``steps`` (every K < N)."""
    k_max = max((int(k) for _, k in base["ladder"]["thresholds"]), default=0)
    if k_max >= steps:
        raise ConfigError(
            "--steps",
            steps,
            f"more than the base profile's largest ladder K ({k_max}); the ladder is carried over from "
            f"{base.get('_base_name', 'the base profile')}",
        )


def to_profile(
    base: dict[str, Any], result: LatencyResult, model: LoadedModel, env: dict[str, Any]
) -> dict[str, Any]:
    """The base profile with the model, GPU and latency blocks replaced by ``result``'s measurements."""

    data = copy.deepcopy(base)
    base_name = data.get("_base_name", "base")
    check_steps(data, result.steps)
    hw = hardware_name(env)
    what = (
        f"{model.name}{' (random weights)' if model.random_weights else ''}, {result.latent_dtype}, "
        f"{result.resolution}x{result.resolution}, {result.steps} steps, on {hw}"
    )
    run = f"acsim calibrate latency {env['date']}: {what}"

    m = data["model"]
    m.update(
        name=model.name,
        steps=result.steps,
        resolution=result.resolution,
        latent_shape=list(result.latent_shape),
        latent_dtype=result.latent_dtype,
        latent_bytes=int(result.latent_bytes),
        latent_file_bytes=int(result.latent_file_bytes),
        dtype=result.latent_dtype,
        random_weights=model.random_weights,
        architecture="dit" if model.family == "flux" else "unet",
        kind=MEASURED,
        source=f"{run}; latent_bytes = numel x element size of the {result.latent_dtype} latent",
    )
    m.pop("fields", None)

    g = data["gpu"]
    g_fields = carried(g, ["price_per_hour_usd"], base_name)
    g.update(name=hw, kind=MEASURED, source=f"{run}; price carried over (not measurable)")
    if "gpu_memory_bytes" in env:
        g["memory_gb"] = round(env["gpu_memory_bytes"] / 2**30, 1)
    else:
        g.pop("memory_gb", None)
    if result.peak_memory_bytes:
        g["peak_memory_bytes_by_batch"] = dict(result.peak_memory_bytes)
    g["fields"] = g_fields

    lat = data["latency"]
    k_levels = list(data.get("k_levels") or [])
    fields = carried(
        lat, [k for k in lat if k not in (*_MEASURED_LATENCY, "kind", "source", "fields")], base_name
    )
    per_step = f"median of {{n}} timed steps over {result.repeats} repeats after {result.warmup} warm-up ({result.timer})"
    lat.update(
        denoise_step_s={b: s.median for b, s in sorted(result.step_s.items())},
        denoise_step_spread_s={b: s.spread() for b, s in sorted(result.step_s.items())},
        save_overhead_step_s=result.latent_save.median * len(k_levels) / result.steps,
        text_encoder_s=result.text_encoder.median,
        vae_decode_s=result.vae_decode.median,
        latent_save_s=result.latent_save.median,
        latent_load_s=result.latent_load.median,
        kind=MEASURED,
        source=run,
    )
    fields.update(
        denoise_step_s={"kind": MEASURED, "source": per_step.format(n=result.step_s[min(result.step_s)].n)},
        save_overhead_step_s={
            "kind": MEASURED,
            "source": f"measured latent_save_s x {len(k_levels)} K levels / {result.steps} steps",
        },
        text_encoder_s={"kind": MEASURED, "source": f"encode_prompt with guidance, batch 1, {result.timer}"},
        vae_decode_s={"kind": MEASURED, "source": f"vae.decode of one latent in {result.vae_decode_dtype}"},
        latent_save_s={"kind": MEASURED, "source": "torch.save of one latent + fsync, local disk"},
        latent_load_s={"kind": MEASURED, "source": "torch.load after dropping the page cache, to the device"},
    )
    lat["fields"] = fields
    return data


def to_small_model(
    base: dict[str, Any], result: LatencyResult, model: LoadedModel, env: dict[str, Any]
) -> dict[str, Any]:
    """The base profile with its ``small_model`` block replaced by ``result``'s measurements.

    The main model's blocks are left as they are. The small model's price stays the base block's
    (the GPU it runs on is not measurable); its quality is carried over with its provenance
    (``calibrate quality`` measures quality for the main model's reuse, not for another model).
    """
    data = copy.deepcopy(base)
    base_name = data.get("_base_name", "base")
    old = data.get("small_model") or {}
    hw = hardware_name(env)
    guidance = "default guidance" if result.guidance is None else f"guidance {result.guidance:g}"
    run = (
        f"acsim calibrate latency --small-model {env['date']}: {model.name}"
        f"{' (random weights)' if model.random_weights else ''}, {result.latent_dtype}, "
        f"{result.resolution}x{result.resolution}, {result.steps} steps, {guidance}, on {hw}"
    )
    per_step = f"median of {{n}} timed steps over {result.repeats} repeats after {result.warmup} warm-up ({result.timer})"
    block: dict[str, Any] = {
        "name": model.name,
        "steps": result.steps,
        "guidance": result.guidance,
        "resolution": result.resolution,
        "latency": {
            "denoise_step_s": {b: s.median for b, s in sorted(result.step_s.items())},
            "denoise_step_spread_s": {b: s.spread() for b, s in sorted(result.step_s.items())},
            "text_encoder_s": result.text_encoder.median,
            "vae_decode_s": result.vae_decode.median,
        },
        "price_per_hour_usd": old.get("price_per_hour_usd", data["gpu"]["price_per_hour_usd"]),
        "kind": MEASURED,
        "source": run,
    }
    fields = carried(old, [k for k in ("price_per_hour_usd", "quality") if k in old], base_name)
    if "price_per_hour_usd" not in old:
        fields["price_per_hour_usd"] = carried(data["gpu"], ["price_per_hour_usd"], base_name)["price_per_hour_usd"]
    if "quality" in old:
        block["quality"] = old["quality"]
    fields["latency"] = {"kind": MEASURED, "source": per_step.format(n=result.step_s[min(result.step_s)].n)}
    fields["steps"] = {"kind": MEASURED, "source": f"steps of the timed runs ({run})"}
    block["fields"] = fields
    data["small_model"] = block
    return data
