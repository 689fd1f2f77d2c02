"""Test-session settings: one persistent JAX compilation cache per session, shared by the test
workers (pytest-xdist) and the worker processes of parallel sweeps (joblib), so that a program is
compiled once per session however many processes need it. It starts empty: the suite's timing is
that of a cold cache. XLA compiles at its lowest optimization level here (see below)."""

from __future__ import annotations

import os
import shutil
import tempfile


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
        os.environ["XLA_FLAGS"] = (flags + " --xla_backend_optimization_level=0").strip()


def pytest_unconfigure(config):
    path = getattr(config, "_latentscale_cache", None)
    if path:
        shutil.rmtree(path, ignore_errors=True)
