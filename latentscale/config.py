"""Numerical settings the package needs, applied where it needs them and nowhere else.

- **float64.** The numerical core runs in double precision. Every public entry point that calls
  JAX runs inside :func:`float64` (JAX's thread-local ``enable_x64`` context), so importing or
  using latentscale never changes the precision of the user's own JAX code.
- **Persistent compilation cache.** Opt-in for library use (:func:`enable_compilation_cache`, or
  ``LATENTSCALE_JAX_CACHE=1``); the ``latentscale`` command turns it on for its own process
  (``$LATENTSCALE_CACHE_DIR/jax``, default ``~/.cache/latentscale/jax``; ``LATENTSCALE_JAX_CACHE=0``
  turns it off).
- **Memory maps.** :func:`release_compiled_if_crowded` guards long-lived processes against the
  per-process memory-map limit that XLA's CPU backend can reach.
- **Quick compilation.** :func:`quick_jit` compiles programs that run a few times per fit (the full
  quadrature rule's objective) with XLA's CPU fusion pipeline of before its fusion emitters: about
  half the compilation time for 5–15 % more run time per call (docs/performance.md).
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from contextlib import contextmanager

# JAX is imported where it is used, not here: commands that only read a saved fit (``show``,
# ``--help``) then never import it (about 1 s of a fresh process, most of it ml_dtypes' tables).


@contextmanager
def float64_scope():
    """Run the block with JAX in float64 (thread-local; the previous setting is restored)."""
    import jax

    with jax.enable_x64(True):
        yield


def device_array(x, dtype=None):
    """``x`` as a JAX array on the default device, copied without a compiled program: ``jnp.asarray``
    of a NumPy array compiles a small copy program for every new shape (15–25 ms each, too small for
    the persistent cache, so paid again by every process), ``jax.device_put`` does not. For arrays
    made once (designs, rules, starts); a per-evaluation θ of fixed shape is faster by ``jnp.asarray``
    once its program exists (21 against 34 µs per call)."""
    import jax
    import numpy as np

    return jax.device_put(np.asarray(x, dtype=dtype))


def float64(func):
    """Decorator: run ``func`` with JAX in float64 (see :func:`float64_scope`)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        import jax

        with jax.enable_x64(True):
            return func(*args, **kwargs)

    return wrapper


def cache_dir() -> str:
    """Folder of latentscale's persistent JAX compilation cache."""
    root = os.environ.get("LATENTSCALE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "latentscale")
    return os.path.join(root, "jax")


def enable_compilation_cache(path: str | None = None, min_compile_secs: float = 0.05) -> str | None:
    """Cache compiled XLA programs on disk (process-wide, as JAX's cache is): later processes that
    fit data of the same shapes skip compilation. Programs that compile in under ``min_compile_secs``
    are not stored (JAX's default, 1 s, would recompile the 0.2 s delta-method Jacobian of every
    fit, and prediction's 0.1 s program of expected scores). Before JAX is imported the settings go
    into the environment (``JAX_COMPILATION_CACHE_DIR`` and the two thresholds), where JAX reads them
    when it is imported, and where child processes inherit them. Returns the folder, or None when JAX cannot."""
    path = path or cache_dir()
    settings = {"jax_compilation_cache_dir": path,
                "jax_persistent_cache_min_compile_time_secs": float(min_compile_secs),
                "jax_persistent_cache_min_entry_size_bytes": 0}
    if "jax" not in sys.modules:
        # JAX not imported yet (the command line, before its command): JAX reads these settings from
        # the environment when it is imported, so a command that never needs JAX never imports it.
        os.environ.update({name.upper(): str(value) for name, value in settings.items()})
        return path
    import jax

    try:
        for name, value in settings.items():
            jax.config.update(name, value)
    except Exception:  # an older JAX without these options: compile every time
        return None
    return path


def cache_from_environment(default: bool) -> str | None:
    """Turn the cache on when ``LATENTSCALE_JAX_CACHE`` says so (``1``), or by ``default`` when unset."""
    flag = os.environ.get("LATENTSCALE_JAX_CACHE")
    on = default if flag is None else flag not in ("0", "", "false", "no")
    return enable_compilation_cache() if on else None


_checked_environment = False


def opt_in_cache() -> None:
    """Library calls: the persistent cache only when ``LATENTSCALE_JAX_CACHE=1`` asks for it
    (checked once per process, e.g. by the worker processes of a parallel sweep)."""
    global _checked_environment
    if not _checked_environment:
        _checked_environment = True
        cache_from_environment(default=False)


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

    XLA's CPU backend maps three memory regions per compiled kernel (a few thousand per fitted
    shape), and Linux allows a process ``vm.max_map_count`` maps (65,530 by default). A long-lived
    process that fits many shapes (K sweeps, test suites, notebooks) reaches it, and the next
    compilation then aborts the whole process ("LLVM compilation error: Cannot allocate memory").
    Called before each fit and prediction: above ``share`` of the limit the caches are cleared (code
    in use is unaffected; later calls recompile, or reload from the persistent cache). Returns
    whether it cleared them.
    """
    counts = _map_counts()
    if counts is None or counts[0] < share * counts[1]:
        return False
    import jax

    jax.clear_caches()
    return True


#: XLA options of :func:`quick_jit`: the CPU backend's fusion pipeline without its fusion emitters,
#: which compiles the likelihood's programs in about half the time and runs them 5–15 % slower.
QUICK_COMPILE_OPTIONS = {"xla_cpu_use_fusion_emitters": False}


@functools.cache
def quick_compile_options() -> dict | None:
    """:data:`QUICK_COMPILE_OPTIONS` where they apply (the CPU backend of an XLA that has them, checked
    once on a tiny program), else None. ``LATENTSCALE_QUICK_COMPILE=0`` turns them off."""
    import jax

    if os.environ.get("LATENTSCALE_QUICK_COMPILE", "1") == "0" or jax.default_backend() != "cpu":
        return None
    try:
        jax.jit(lambda x: x + 1.0, compiler_options=QUICK_COMPILE_OPTIONS).lower(1.0).compile()
    except Exception:  # an older jax without compiler_options, or an XLA without the option
        return None
    return dict(QUICK_COMPILE_OPTIONS)


def quick_jit(fun, **jit_options):
    """``jax.jit(fun, **jit_options)`` compiled with :func:`quick_compile_options` where they apply.
    The choice is made on the first call (after the backend is known) and kept."""
    chosen = []
    lock = threading.Lock()  # prediction calls some programs from several threads

    @functools.wraps(fun)
    def call(*args, **kwargs):
        if not chosen:
            with lock:
                if not chosen:
                    import jax

                    options = quick_compile_options()
                    chosen.append(jax.jit(fun, **jit_options) if options is None
                                  else jax.jit(fun, compiler_options=options, **jit_options))
        return chosen[0](*args, **kwargs)

    return call


# ---- threads for independent likelihood evaluations ----------------------------------------------
#: The most threads :func:`thread_map` uses by default (finite differences have a few hundred columns).
MAX_THREADS = 8
_threads: int | None = None  # set by set_evaluation_threads
_worker = threading.local()  # one_evaluation_thread: a sweep's task, in its worker process or thread


def evaluation_threads() -> int:
    """Threads for independent evaluations within one fit (the columns of a finite-difference Hessian,
    the screening starts, the Laplace candidates, prediction's linearization): the value given to
    :func:`set_evaluation_threads`, else ``LATENTSCALE_THREADS``, else the cores this process may use (at
    most :data:`MAX_THREADS`). The likelihood's compiled programs compute on about one core each, so a
    second core otherwise idles through a fit. The tasks of a sweep run with 1 (:func:`one_evaluation_thread`)."""
    if getattr(_worker, "single", False):
        return 1
    if _threads is not None:
        return _threads
    env = os.environ.get("LATENTSCALE_THREADS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            from latentscale.errors import InputError

            raise InputError(f"LATENTSCALE_THREADS must be a whole number of threads, got {env!r}") from None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(MAX_THREADS, cores))


def set_evaluation_threads(n: int | None) -> int | None:
    """Fix :func:`evaluation_threads` for this process (None: back to the environment's); returns the
    previous setting."""
    global _threads
    previous, _threads = _threads, (None if n is None else max(1, int(n)))
    return previous


@contextmanager
def one_evaluation_thread():
    """Within the block, :func:`evaluation_threads` is 1 in this thread: a sweep's task, whose workers
    (processes, or threads of a Dask worker) already share the cores."""
    before = getattr(_worker, "single", False)
    _worker.single = True
    try:
        yield
    finally:
        _worker.single = before


def thread_map(func, items, threads: int | None = None) -> list:
    """``[func(x) for x in items]``, on up to ``threads`` (default :func:`evaluation_threads`) threads,
    in order; each call runs in float64 (JAX's precision setting is per thread). The result does not
    depend on the number of threads as long as ``func`` does not share mutable state between items."""
    items = list(items)
    n = min(threads or evaluation_threads(), len(items))
    if n <= 1:
        return [func(x) for x in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(float64(func), items))
