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


#: Share of the per-process memory-map limit above which compiled code is released.
MAP_SHARE = 0.5


def _map_counts() -> tuple[int, int] | None:
    """(memory maps of this process, the kernel's per-process limit), or None off Linux."""
    try:
        with open("/proc/sys/vm/max_map_count") as f:
            limit = int(f.read())
        with open("/proc/self/maps", "rb") as f:
            return sum(1 for _ in f), limit
    except (OSError, ValueError):
        return None


def release_compiled_if_crowded(share: float = MAP_SHARE) -> bool:
    """Drop JAX's in-memory compiled code when this process nears its memory-map limit.

    XLA's CPU backend maps three memory regions per compiled kernel (about 2,500 per fitted
    shape), and Linux allows a process ``vm.max_map_count`` maps (65,530 by default). A
    long-lived process that fits many shapes (K sweeps, test suites, notebooks) would reach it
    after some 25 shapes, and the next compilation then aborts the whole process ("LLVM
    compilation error: Cannot allocate memory"). Called before each fit and prediction: above
    ``share`` of the limit the caches are cleared (code still in use is unaffected; later calls
    recompile, or reload from the persistent cache). Returns whether it cleared them.
    """
    counts = _map_counts()
    if counts is None or counts[0] < share * counts[1]:
        return False
    jax.clear_caches()
    return True
