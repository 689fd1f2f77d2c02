"""JAX configuration shared by the package: float64 everywhere, and a persistent compilation cache."""

import os

import jax


def enable_x64() -> None:
    """Switch JAX to float64 (the numerical core assumes it) and cache compiled code on disk.

    The cache lives in ``$LATENTSCALE_CACHE_DIR/jax`` (default ``~/.cache/latentscale/jax``);
    set ``LATENTSCALE_JAX_CACHE=0`` to turn it off.
    """
    jax.config.update("jax_enable_x64", True)
    if os.environ.get("LATENTSCALE_JAX_CACHE", "1") != "0":
        root = os.environ.get("LATENTSCALE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "latentscale")
        try:
            jax.config.update("jax_compilation_cache_dir", os.path.join(root, "jax"))
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
        except Exception:  # an older JAX without the option: compile every time
            pass
