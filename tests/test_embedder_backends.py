"""minilm-onnx and minilm-static: built offline from the packaged MiniLM, cached, faithful to it.

The ONNX export and the static distillation are built once per test session into a directory the
pytest-xdist workers share (``traces.model_store`` locks it, so only one worker builds).
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import numpy as np
import pytest

from traces.embedder_base import resolve_device
from traces.embeddings import check_embedder_name, get_embedder
from traces.model_store import build_once, read_meta
from traces.onnx_embedder import DISABLED_OPTIMIZERS, MiniLMOnnxEmbedder, minilm_dir
from traces.static_embedder import MiniLMStaticEmbedder

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> Path:
    """``ACSIM_MODELS`` for the session: one build of each artefact for every worker."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "acsim-models"
    old = os.environ.get("ACSIM_MODELS")
    os.environ["ACSIM_MODELS"] = str(root)
    yield root
    if old is None:
        os.environ.pop("ACSIM_MODELS", None)
    else:
        os.environ["ACSIM_MODELS"] = old


@pytest.fixture(scope="module")
def prompts(samples) -> list[str]:
    return (samples / "diffusiondb_2m_first5k_prompts.txt").read_text(encoding="utf-8").splitlines()


def pairwise_pearson(a: np.ndarray, b: np.ndarray) -> float:
    iu = np.triu_indices(len(a), 1)
    return float(np.corrcoef((a @ a.T)[iu], (b @ b.T)[iu])[0, 1])


def test_names_devices_and_requirements() -> None:
    for name in ("minilm-onnx", "minilm-static"):
        assert check_embedder_name(name) is None
        assert "takes no path" in check_embedder_name(f"{name}:/tmp")
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        get_embedder("hashing", device="gpu")
    assert get_embedder("hashing", device="cpu") is get_embedder("hashing", device="cpu")
    assert resolve_device("cpu") == "cpu"
    import torch

    if not torch.cuda.is_available():
        assert resolve_device("auto") == "cpu"
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_onnx_int8_tracks_minilm_and_is_per_prompt(models, prompts) -> None:
    sample = prompts[:160]
    e = MiniLMOnnxEmbedder(device="cpu")
    x = e.encode(sample)
    assert x.shape == (160, 384) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    ref = get_embedder("minilm", device="cpu").encode(sample)
    assert pairwise_pearson(ref, x) >= 0.98
    assert np.min(np.sum(ref * x, axis=1)) >= 0.95
    # A prompt's vector does not depend on what it is embedded with.
    np.testing.assert_array_equal(e.encode([sample[7]])[0], x[7])
    meta = read_meta(e.directory)
    assert meta["fp32_export_max_abs_diff"] < 1e-4 and meta["int8_min_cosine_to_fp32"] > 0.97
    # Recipe 2: fused attention per layer, and no SkipLayerNormalization (slow on CPU) in the graph
    # nor fused in at load time.
    assert meta["fused_max_abs_diff"] < 1e-3 and meta["fusions"]["Attention"] == 6
    assert "SkipLayerNormalization" not in meta["fusions"] and "SkipLayerNormFusion" in DISABLED_OPTIMIZERS
    assert [i.name for i in e._session.get_inputs()] == ["input_ids"]
    assert meta["key"]["source_sha256"] and meta["key"]["onnxruntime"]
    # A second instance reuses the cached export.
    again = MiniLMOnnxEmbedder(device="cpu")
    again.encode(["x"])
    assert again.directory == e.directory and read_meta(again.directory)["build_s"] == meta["build_s"]
    assert e.directory.parent == models


EDGE_CASES = [
    "",
    "   ",
    "A Cat, on a MAT!!  4k\tartstation\nunreal engine",
    "Ünïcödé café naïve résumé",
    "ΑΣ Βήτα",
    "中文字符 and 日本語",
    "emoji 🎨🖌 art",
    "joined\x1cby\x1fbert",
    "vertical\x0btab\x0cform feed\x85next",
    "line\u2028separator\u00a0nbsp",
    "nul\x00char",
    "x" * 300,
]


def test_static_tokens_are_minilms_tokens(models, prompts) -> None:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    texts = prompts[:1500] + EDGE_CASES
    e = MiniLMStaticEmbedder(device="cpu")
    ids, counts = e.tokens(texts)
    want = [enc.ids for enc in tok.encode_batch(texts, add_special_tokens=False)]
    assert counts.tolist() == [len(w) for w in want]
    assert ids.tolist() == [t for w in want for t in w]
    # The chunk memory answers the second time the same way.
    again, counts2 = e.tokens(texts[::-1])
    assert counts2.tolist() == [len(w) for w in want[::-1]]


def test_static_embedding_is_the_normalised_bag_of_token_rows(models, prompts) -> None:
    e = MiniLMStaticEmbedder(device="cpu")
    sample = prompts[:300] + ["", "a cat on a mat"]
    x = e.encode(sample, batch_size=128)  # several batches
    assert x.shape == (302, 256) and x.dtype == np.float32
    table = np.load(e.artefact() / "table.npy")
    meta = read_meta(e.artefact())
    assert table.shape == (meta["vocab"], 256) and 0.5 < meta["pca_explained_variance"] < 1.0
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    for i in (0, 17, 299, 301):
        ids = tok.encode(sample[i], add_special_tokens=False).ids
        v = table[ids].sum(0)
        np.testing.assert_allclose(x[i], v / np.linalg.norm(v), atol=1e-5)
    assert not x[300].any()  # the empty prompt
    # Similar prompts stay similar: the static model keeps most of MiniLM's similarity structure.
    ref = get_embedder("minilm", device="cpu").encode(sample[:150])
    assert pairwise_pearson(ref, x[:150]) > 0.6


def test_build_once_is_atomic_and_keyed(tmp_path) -> None:
    calls = []

    def build(out: Path) -> dict:
        calls.append(out)
        (out / "payload.txt").write_text("ok")
        return {"figure": 1}

    a = build_once("thing", {"v": 1}, build, root=tmp_path)
    assert build_once("thing", {"v": 1}, build, root=tmp_path) == a and len(calls) == 1
    assert json.loads((a / "meta.json").read_text())["figure"] == 1
    b = build_once("thing", {"v": 2}, build, root=tmp_path)
    assert b != a and len(calls) == 2

    def fails(out: Path) -> dict:
        (out / "half.txt").write_text("half")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        build_once("thing", {"v": 3}, fails, root=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == sorted([a.name, b.name])
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_an_embedder_runs_no_more_threads_than_omp_num_threads_allows(monkeypatch):
    import os

    from traces.embedder_base import cpu_threads

    cpus = len(os.sched_getaffinity(0))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert cpu_threads() == cpus
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what Ray sets in a one-CPU task
    assert cpu_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", str(cpus + 8))  # never more than the process may run on
    assert cpu_threads() == cpus
    monkeypatch.setenv("OMP_NUM_THREADS", "")
    assert cpu_threads() == cpus
