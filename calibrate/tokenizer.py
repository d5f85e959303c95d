"""A small byte-level BPE vocabulary for CLIP tokenizers, generated in code (no downloads).

Random-weight presets and tiny test pipelines need a ``CLIPTokenizer``, which loads from a
``vocab.json`` and a ``merges.txt``. The vocabulary written here has every byte as a token
(with and without CLIP's end-of-word marker ``</w>``), a few dozen merges of frequent English
letter pairs, and the two special tokens, ``<|endoftext|>`` last: CLIP text models configured
with the legacy ``eos_token_id = 2`` pool at the position of the highest token id, which must
therefore be the end-of-text token, as in the real CLIP vocabulary.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from transformers import CLIPTokenizer

from sim.base.io import atomic_write_text

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
# Frequent English bigrams; merging them keeps prompts shorter than 77 tokens more often.
_MERGES = ("th", "he", "in", "er", "an", "re", "on", "at", "en", "nd", "ti", "es", "or", "te", "of", "ed")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable unicode characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    """The generated vocabulary (token -> id) and the ordered merge rules."""
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars]
    merges = []
    for pair in _MERGES:
        a, b = pair
        merges += [f"{a} {b}", f"{a} {b}</w>"]
        tokens += [pair, pair + "</w>"]
    tokens += [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}, merges


def write_tokenizer_files(directory: str | Path) -> Path:
    """Write ``vocab.json`` and ``merges.txt`` into ``directory``; return the directory."""
    d = Path(directory)
    vocab, merges = vocab_and_merges()
    atomic_write_text(d / "vocab.json", json.dumps(vocab, ensure_ascii=False))
    atomic_write_text(d / "merges.txt", "#version: 0.2\n" + "\n".join(merges) + "\n")
    return d


def load_tokenizer(directory: str | Path, max_length: int = 77) -> CLIPTokenizer:
    """A ``CLIPTokenizer`` over the generated vocabulary (writes the files if they are missing)."""
    d = Path(directory)
    if not (d / "vocab.json").is_file() or not (d / "merges.txt").is_file():
        write_tokenizer_files(d)
    return CLIPTokenizer(
        vocab=str(d / "vocab.json"), merges=str(d / "merges.txt"), model_max_length=max_length
    )


def generated_tokenizer(max_length: int = 77) -> CLIPTokenizer:
    """A ``CLIPTokenizer`` over the generated vocabulary, its files written to a temporary directory
    that is removed once loaded (the tokenizer holds the vocabulary in memory; a pipeline's
    ``save_pretrained`` writes it from there)."""
    with tempfile.TemporaryDirectory(prefix="acsim-tokenizer-") as tmp:
        return load_tokenizer(tmp, max_length)


def vocab_size() -> int:
    """Number of tokens in the generated vocabulary."""
    return len(vocab_and_merges()[0])
