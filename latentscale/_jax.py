"""JAX configuration shared by the package: float64 everywhere."""

import jax


def enable_x64() -> None:
    """Switch JAX to float64 (the numerical core assumes it)."""
    jax.config.update("jax_enable_x64", True)
