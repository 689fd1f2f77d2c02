"""Quick compilation (config.quick_jit): the same numbers as jax.jit, the options where the XLA has them,
the plain program where it does not or the user turns them off."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from latentscale import config
from latentscale.config import float64_scope


@pytest.fixture(autouse=True)
def _fresh_choice():
    config.quick_compile_options.cache_clear()
    yield
    config.quick_compile_options.cache_clear()


def _program(x, n):
    y = jnp.cumsum(jnp.sin(x[:, None] * jnp.arange(1.0, n + 1.0)), axis=1)
    return jnp.sum(jnp.log1p(y * y)), y


def test_quick_program_matches_jit_values_and_gradients():
    with float64_scope():
        x = jnp.linspace(-2.0, 2.0, 257)
        plain = jax.jit(jax.value_and_grad(_program, has_aux=True), static_argnames=("n",))
        quick = config.quick_jit(jax.value_and_grad(_program, has_aux=True), static_argnames=("n",))
        (v0, y0), g0 = plain(x, 7)
        (v1, y1), g1 = quick(x, n=7)
        np.testing.assert_allclose(v1, v0, rtol=1e-12)
        np.testing.assert_allclose(g1, g0, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(y1, y0, rtol=1e-12, atol=1e-14)
        assert g1.dtype == jnp.float64


def test_options_apply_on_the_cpu_and_can_be_turned_off(monkeypatch):
    if jax.default_backend() != "cpu":
        assert config.quick_compile_options() is None
        return
    assert config.quick_compile_options() == config.QUICK_COMPILE_OPTIONS
    config.quick_compile_options.cache_clear()
    monkeypatch.setenv("LATENTSCALE_QUICK_COMPILE", "0")
    assert config.quick_compile_options() is None


def test_an_xla_without_the_option_gets_the_plain_program(monkeypatch):
    monkeypatch.setattr(config, "QUICK_COMPILE_OPTIONS", {"xla_no_such_option_in_any_xla": True})
    assert config.quick_compile_options() is None
    f = config.quick_jit(lambda x: x * 3.0)
    assert float(f(2.0)) == 6.0  # compiled without the options, no error
