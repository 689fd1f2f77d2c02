"""The guard against the per-process memory-map limit: compiled code is released above the share."""

import sys

import jax
import jax.numpy as jnp
import pytest

from latentscale import config

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux only)")


def test_map_counts_read_from_proc():
    n, limit = config._map_counts()
    assert 0 < n < limit


def test_release_clears_compiled_code_only_above_the_share():
    f = jax.jit(lambda x: jnp.sin(x) * 2.0)
    f(jnp.ones(3))
    assert f._cache_size() == 1
    assert not config.release_compiled_if_crowded(share=1.0)  # far below the limit: nothing dropped
    assert f._cache_size() == 1
    assert config.release_compiled_if_crowded(share=0.0)
    assert f._cache_size() == 0
    assert float(f(jnp.ones(3))[0]) == pytest.approx(2.0 * float(jnp.sin(1.0)))  # recompiles on demand


def test_no_proc_means_no_release(monkeypatch):
    monkeypatch.setattr(config, "_map_counts", lambda: None)
    assert not config.release_compiled_if_crowded(share=0.0)
