"""The peer's published results: Sloth's stored cross-validation errors, as its paper aggregates them.

Sloth (Maia Polo et al., arXiv:2412.06540) stored every absolute error of its leave-family-group-out
experiments; ``sloth/published_errors_long.csv`` holds them one row per (experiment, n, fold,
model, method, benchmark) (see the file's ``SOURCE.md``). It is not downloadable: it resolves from
``$LATENTSCALE_DATA_DIR/sloth/`` only (sha256-checked like every registered file).

:func:`published_table` aggregates them as Sloth's paper and this project's tables do (mean over a
fold's test models, then over folds, per benchmark, ×100; ``average`` over benchmarks), so its rows
stand next to ours; :func:`check_same_cases` confirms the test cases (held-out groups and test models)
are the ones our protocol produces.
"""

from __future__ import annotations

import pandas as pd

from latentscale.errors import InputError

PUBLISHED = ("sloth", "published_errors_long.csv")

#: Benchmark set → Sloth's experiment number.
EXPERIMENTS = {"v1": 0, "v2": 1, "all": 2}


def method_label(key: str) -> str:
    """This project's name for one of Sloth's method keys (``sloth-published-d2`` is its best
    variant, "Sloth (d=2)": learned link, fitted floors, family intercepts)."""
    if key.startswith("factor_trainlink_faminter_d="):
        return f"sloth-published-d{key.split('=')[1]}"
    if key.startswith("factor_sigmoid_faminter_d="):
        return f"sloth-basic-published-d{key.split('=')[1]}"
    names = {"logF_sigmoid_faminter": "flops-family-published", "logF_sigmoid": "flops-global-published",
             "logSlogT_trainlink_faminter": "size-tokens-link-published"}
    return names.get(key, f"published:{key}")


def published_errors(data_dir=None) -> pd.DataFrame:
    """Sloth's stored per-model errors (the long table), read from the data folder."""
    from latentscale.data.registry import resolve_file

    return pd.read_csv(resolve_file(*PUBLISHED, data_dir=data_dir))


def _table_errors(errors: pd.DataFrame, benchmark_set: str, n_train: int) -> pd.DataFrame:
    """The rows of the long table that belong to one of the six tables."""
    return errors[(errors["exp"] == EXPERIMENTS[benchmark_set]) & (errors["n_train_models"] == int(n_train))]


def published_table(benchmark_set: str, n_train: int, errors: pd.DataFrame | None = None,
                    methods: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Methods × benchmarks (+ ``average``) in percentage points for one of the six tables, labelled
    by :func:`method_label`; ``methods`` (Sloth's keys) restricts the rows (default: the learned-link
    factor models, Sloth basic, and the FLOPs and size-tokens laws)."""
    if benchmark_set not in EXPERIMENTS:
        raise InputError(f"published results exist for the benchmark sets v1, v2 and all, not {benchmark_set!r}")
    errors = published_errors() if errors is None else errors
    sub = _table_errors(errors, benchmark_set, n_train)
    if methods is not None:
        sub = sub[sub["method"].isin(methods)]
    else:
        keep = sub["method"].str.startswith(("factor_trainlink_faminter_d=", "factor_sigmoid_faminter_d=")) | sub[
            "method"].isin(["logF_sigmoid_faminter", "logF_sigmoid", "logSlogT_trainlink_faminter"])
        sub = sub[keep]
    per_fold = sub.groupby(["method", "fold", "benchmark"])["abs_error"].mean()
    table = per_fold.groupby(level=["method", "benchmark"]).mean().unstack("benchmark") * 100.0
    table["average"] = table.mean(axis=1)
    table.index = [method_label(k) for k in table.index]
    return table.sort_values("average")


def published_case_errors(result, errors: pd.DataFrame | None = None, labels=None) -> pd.DataFrame:
    """The published per-model errors of ``result``'s table in the columns of ``result.errors``
    (``method`` by :func:`method_label`, ``fold`` our fold of each test model), restricted to the
    methods labelled ``labels`` (default: every stored method)."""
    errors = published_errors() if errors is None else errors
    sub = _table_errors(errors, result.benchmark_set, result.n_train)
    sub = sub.assign(method=sub["method"].map(method_label))
    if labels is not None:
        sub = sub[sub["method"].isin(labels)]
    ours = result.errors.drop_duplicates("model").set_index("model")["fold"]
    sub = sub[sub["model"].isin(ours.index) & sub["benchmark"].isin(result.benchmarks)]
    return sub.assign(fold=sub["model"].map(ours).to_numpy())[["method", "fold", "model", "benchmark", "abs_error"]]


def check_same_cases(result, errors: pd.DataFrame | None = None) -> list[str]:
    """Differences between our folds' test cases and the published ones (empty when they are the
    same: the same test models, fold by fold, as sets of models per held-out group)."""
    errors = published_errors() if errors is None else errors
    sub = _table_errors(errors, result.benchmark_set, result.n_train)
    theirs = {frozenset(g["model"]) for _, g in sub.groupby("fold")}
    ours = {frozenset(g["model"]) for _, g in result.errors.groupby("fold")}
    out = []
    if theirs - ours:
        out.append(f"{len(theirs - ours)} published folds have test models that no fold of ours has")
    if ours - theirs:
        out.append(f"{len(ours - theirs)} of our folds have test models that no published fold has")
    return out
