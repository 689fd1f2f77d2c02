"""Digamma and trigamma by upward recurrence and asymptotic series.

Cheaper to compile and run than the general ``jax.scipy.special.polygamma``, and their
automatic derivatives are smooth; accurate to about 1e-13 relative for x > 0.
"""

from __future__ import annotations

import jax.numpy as jnp

_SHIFT = 10  # recurrence steps: the series is used at x + 10 or beyond


def digamma(x):
    """ψ(x) for x > 0."""
    acc = jnp.zeros_like(x)
    for i in range(_SHIFT):
        acc = acc + 1.0 / (x + i)
    z = x + _SHIFT
    z2 = 1.0 / (z * z)
    series = jnp.log(z) - 0.5 / z - z2 * (1 / 12 - z2 * (1 / 120 - z2 * (1 / 252 - z2 * (1 / 240 - z2 / 132))))
    return series - acc


def trigamma(x):
    """ψ₁(x) for x > 0."""
    acc = jnp.zeros_like(x)
    for i in range(_SHIFT):
        acc = acc + 1.0 / ((x + i) * (x + i))
    z = x + _SHIFT
    iz = 1.0 / z
    z2 = iz * iz
    series = iz + 0.5 * z2 + iz * z2 * (1 / 6 - z2 * (1 / 30 - z2 * (1 / 42 - z2 * (1 / 30 - z2 * 5 / 66))))
    return series + acc
