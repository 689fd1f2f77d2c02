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
