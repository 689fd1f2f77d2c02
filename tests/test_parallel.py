"""The parallel map of the sweeps: results in task order whatever the dispatch order or backend."""

import os

import pytest

from latentscale.parallel import parallel_map


def _square_and_pid(x):
    return x * x, os.getpid()


def test_results_come_back_in_task_order_whatever_the_dispatch_order():
    seen = []
    out = parallel_map(_square_and_pid, [(i,) for i in range(6)], n_jobs=2, order=[5, 4, 3, 2, 1, 0],
                       on_result=lambda i, r: seen.append((i, r[0])))
    assert [r[0] for r in out] == [i * i for i in range(6)]
    assert seen == [(i, i * i) for i in [5, 4, 3, 2, 1, 0]]  # reported as dispatched, with the task's index
    assert all(pid != os.getpid() for _, pid in out)  # they ran in worker processes


def test_sequential_map_and_bad_orders():
    assert [r[0] for r in parallel_map(_square_and_pid, [(2,), (3,)], n_jobs=1, order=[1, 0])] == [4, 9]
    with pytest.raises(ValueError, match="permutation"):
        parallel_map(_square_and_pid, [(2,), (3,)], n_jobs=2, order=[0, 0])


def _threads_here():
    from latentscale.config import evaluation_threads

    return evaluation_threads()


def test_sweep_workers_compute_on_one_evaluation_thread(monkeypatch):
    monkeypatch.setenv("LATENTSCALE_THREADS", "4")
    assert _threads_here() == 4
    assert parallel_map(_threads_here, [(), ()], n_jobs=2) == [1, 1]  # the workers share the cores
    assert parallel_map(_threads_here, [()], n_jobs=1) == [4]  # in this process: the setting stands


def test_evaluation_threads_setting_and_its_errors(monkeypatch):
    import jax.numpy as jnp

    from latentscale import config
    from latentscale.errors import InputError

    monkeypatch.delenv("LATENTSCALE_THREADS", raising=False)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    previous = config.set_evaluation_threads(None)
    try:
        assert config.evaluation_threads() == max(1, min(config.MAX_THREADS, cores))
        monkeypatch.setenv("LATENTSCALE_THREADS", "two")
        with pytest.raises(InputError, match="LATENTSCALE_THREADS must be a whole number"):
            config.evaluation_threads()
        monkeypatch.setenv("LATENTSCALE_THREADS", "0")
        assert config.evaluation_threads() == 1
        assert config.set_evaluation_threads(3) is None
        assert config.evaluation_threads() == 3  # the call wins over the environment
        # in order, and in float64 in every thread (JAX's precision setting is per thread)
        out = config.thread_map(lambda i: (i, str(jnp.zeros(1).dtype)), range(7))
        assert out == [(i, "float64") for i in range(7)]
    finally:
        config.set_evaluation_threads(previous)


def test_a_task_run_in_this_process_leaves_the_setting_as_it_was(monkeypatch):
    from latentscale import config
    from latentscale.parallel import _in_worker

    monkeypatch.setenv("LATENTSCALE_THREADS", "3")
    assert _in_worker(_threads_here) == 1  # the task itself: one thread
    assert _threads_here() == 3  # and after it, in this thread: as before
    assert config.thread_map(lambda _: _in_worker(_threads_here), range(2), threads=2) == [1, 1]
    assert _threads_here() == 3
