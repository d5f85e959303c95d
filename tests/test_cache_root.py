"""One cache root for everything acsim builds once (issue 25): every user of it agrees and refuses a file."""

from __future__ import annotations

import pytest

from sim.base.cache_root import cache_root
from sim.base.errors import ConfigError, unknown_name
from traces.embeddings import default_cache_dir
from traces.model_store import models_dir


def test_every_cache_folder_is_under_one_root(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ACSIM_CACHE", str(tmp_path / "c"))
    monkeypatch.delenv("ACSIM_MODELS", raising=False)
    assert cache_root() == tmp_path / "c"
    assert default_cache_dir() == tmp_path / "c" / "embeddings"
    assert models_dir() == tmp_path / "c" / "models"
    monkeypatch.delenv("ACSIM_CACHE")
    assert cache_root().parts[-2:] == (".cache", "acsim")


@pytest.mark.parametrize("user", [cache_root, default_cache_dir, models_dir])
def test_a_cache_root_that_is_a_file_is_refused_by_every_user(tmp_path, monkeypatch, user) -> None:
    (tmp_path / "f").write_text("x")
    monkeypatch.setenv("ACSIM_CACHE", str(tmp_path / "f"))
    monkeypatch.delenv("ACSIM_MODELS", raising=False)
    with pytest.raises(ConfigError, match="ACSIM_CACHE.*is a file"):
        user()


def test_unknown_name_lists_the_registry_in_order_and_the_closest() -> None:
    err = unknown_name("cache.policy", "lfru", ["lru", "fifo", "lfu"])
    assert str(err) == "cache.policy: 'lfru' is not valid; allowed: lru, fifo, lfu (did you mean 'lru'?)"
    assert "did you mean" not in str(unknown_name("x", "zzzz", ["lru"]))
    # The hint may be computed from a part of the value (a spec with arguments).
    assert "did you mean 'tinylfu'" in str(unknown_name("cache.admission", "tinylfo:3", ["tinylfu"], "tinylfo"))
