"""Test-session settings: one persistent JAX compilation cache per session, shared by the test
workers (pytest-xdist) and the worker processes of parallel sweeps (joblib), so that a program is
compiled once per session however many processes need it. It starts empty: the suite's timing is
that of a cold cache. XLA compiles at its lowest optimization level here, and with test workers each
computes on one thread, latentscale's evaluation threads included (see below)."""

from __future__ import annotations

import os
import shutil
import tempfile

#: The modules that take longest (seconds of one CI-like run, 2026-12-07: 68, 42, 40, 39, 38, 32, 27, 27, 26, 26,
#: 25, 22, 21, 20, 18), run first: the test workers take whole modules (``--dist loadscope``) in collection
#: order (``--no-loadscope-reorder``), and a long module taken last leaves the other worker idle.
LONGEST_FIRST = ("test_variants.py", "test_slopes.py", "test_link_power.py", "test_design.py", "test_likelihood.py",
                 "test_prediction.py", "test_calibration.py", "test_clamp.py", "test_profile.py", "test_simstudy.py",
                 "test_report.py", "test_psga.py", "test_fit_real.py", "test_select.py", "test_holdout.py")


def pytest_configure(config):
    if hasattr(config, "workerinput"):  # an xdist worker: the controller set the environment
        return
    if "LATENTSCALE_TEST_CACHE" not in os.environ:
        path = tempfile.mkdtemp(prefix="latentscale-test-jax-")
        os.environ["LATENTSCALE_TEST_CACHE"] = path
        config._latentscale_cache = path
    os.environ["LATENTSCALE_CACHE_DIR"] = os.environ["LATENTSCALE_TEST_CACHE"]
    os.environ["LATENTSCALE_JAX_CACHE"] = "1"
    # The suite compiles hundreds of small programs and runs each briefly: XLA's CPU backend at its lowest
    # optimization level compiles them faster (the same IEEE arithmetic, no fast-math), about 7 % of the
    # suite's time. A flag the user set wins.
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in flags:
        flags += " --xla_backend_optimization_level=0"
    # For the same reason every program compiles with the CPU backend's fusion pipeline of before its fusion
    # emitters (what latentscale.config.quick_jit does for the programs a command runs a few times): test_variants.py
    # and test_link_power.py in one process took 77.4 and 77.4 s against 102.0 and 92.3 s (2026-12-07).
    if "xla_cpu_use_fusion_emitters" not in flags:
        flags += " --xla_cpu_use_fusion_emitters=false"
    # With test workers (pytest-xdist, one per core) each worker computes on one thread: XLA's and the
    # BLAS's thread pools in every worker would otherwise contend for the same cores (265 s against
    # 298 s for the CI run on the 2-core machine).
    if getattr(config.option, "numprocesses", None) not in (None, 0):
        if "xla_cpu_multi_thread_eigen" not in flags:
            flags += " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "LATENTSCALE_THREADS"):
            os.environ.setdefault(var, "1")
    os.environ["XLA_FLAGS"] = flags.strip()


def pytest_unconfigure(config):
    path = getattr(config, "_latentscale_cache", None)
    if path:
        shutil.rmtree(path, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """The longest modules first (:data:`LONGEST_FIRST`), the rest in file order after them; a stable sort,
    so every worker collects the same order."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
