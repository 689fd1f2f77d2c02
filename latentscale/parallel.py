"""Parallel map for sweeps (choice of K, simulation replications): joblib, or Dask when asked.

Local runs use joblib's process pool (``loky``); given a Dask scheduler address (or a
``distributed.Client``), the same tasks run on that cluster through joblib's Dask backend.
Results come back in task order whatever the backend, so a sweep's output does not depend on
where it ran. Each worker computes with one evaluation thread (the workers share the cores).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import joblib


def parallel_map(
    func: Callable[..., Any],
    tasks: Sequence[tuple],
    *,
    n_jobs: int = 1,
    scheduler: str | Any | None = None,
    on_result: Callable[[int, Any], None] | None = None,
    order: Sequence[int] | None = None,
) -> list[Any]:
    """``[func(*t) for t in tasks]`` in parallel, in task order.

    n_jobs : local worker processes (joblib ``loky``); 1 runs in this process, −1 uses every core.
    scheduler : a Dask scheduler address (``"tcp://host:8786"``) or a ``distributed.Client``;
        tasks then run on that cluster and ``n_jobs`` is ignored.
    on_result : called as results arrive, with the task's index and result (progress).
    order : the order in which the workers are handed the tasks (a permutation of their indices),
        e.g. the longest first, so that few workers do not end on one long task while the others
        idle; the results still come back in task order.
    """
    tasks = list(tasks)
    if order is not None and sorted(order) != list(range(len(tasks))):
        raise ValueError(f"order must be a permutation of the {len(tasks)} task indices, got {list(order)}")
    if scheduler is None and n_jobs == 1:
        out = []
        for i, t in enumerate(tasks):
            out.append(func(*t))
            if on_result is not None:
                on_result(i, out[-1])
        return out
    client_ctx = nullcontext()
    if scheduler is not None:
        from distributed import Client

        client_ctx = nullcontext(scheduler) if isinstance(scheduler, Client) else Client(scheduler)
    with client_ctx:
        backend = joblib.parallel_config(backend="dask") if scheduler is not None else nullcontext()
        with backend:
            runner = joblib.Parallel(n_jobs=-1 if scheduler is not None else n_jobs,
                                     return_as="generator", prefer="processes")
            sequence = list(range(len(tasks))) if order is None else list(order)
            out: list[Any] = [None] * len(tasks)
            for i, res in zip(sequence, runner(joblib.delayed(_in_worker)(func, *tasks[i]) for i in sequence)):
                out[i] = res
                if on_result is not None:
                    on_result(i, res)
    return out


def _in_worker(func: Callable[..., Any], *args) -> Any:
    """Run a sweep's task with one evaluation thread: the workers already share the cores
    (:func:`latentscale.config.one_evaluation_thread`; the setting ends with the task, which may run in
    this process when joblib or Dask runs tasks in threads)."""
    from latentscale.config import one_evaluation_thread

    with one_evaluation_thread():
        return func(*args)
