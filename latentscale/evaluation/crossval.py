"""Leave-family-group-out cross-validation against the established scaling laws (SPEC §5).

Protocol ``family-group`` (from the Sloth paper):

1. keep complete cases: rows with size, tokens and every benchmark of the set (``v1``, ``v2`` or
   ``all``); drop families with fewer than n + 1 such rows (n = ``n_train``; n = 0 holds out
   whole families: models of families the fit never saw);
2. for each held-out group (a list of families): in each of its families the n smallest models
   (by parameters, then tokens, then name) go to training with every row of every other family;
   the remaining rows of the group's families are the test rows;
3. every method is fitted on the training rows and predicts the test rows from their family,
   size and tokens only; the test rows' scores reach no fit and no posterior (they are used
   only to score the predictions);
4. metric: absolute error of the predicted mean score, averaged over the test models of a group,
   then over groups (equal weight per group), per benchmark, and the average over benchmarks;
   reported in percentage points.

The latent-variable methods are fitted by the same estimator as ``latentscale fit``
(:meth:`latentscale.LatentScalingModel.fit`), warm-started from a fit on the *core* rows (those
that are a training row in every fold, so no fold's test row enters it), with one start and no
standard errors; their designs are padded to the shape of all complete rows, so every fold reuses
one compiled likelihood (see :mod:`latentscale.evaluation.baselines.latent`). Every fit's
convergence is recorded, per method and fold.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from latentscale.errors import InputError
from latentscale.data.dataset import ScoreData
from latentscale.data.registry import SLOTH_BENCHMARKS
from latentscale.data.validate import DataError, name_rows
from latentscale.evaluation.baselines import BASELINES, LatentMethod, make_baseline
from latentscale.evaluation.select import lowest_converged
from latentscale.model.design import padded_shape
from latentscale.model.variants import PREDICTION_VARIANT, parse_variant
from latentscale.parallel import parallel_map

#: Benchmark sets of the protocol; ``all`` is every benchmark of the data (the 12 of ``sloth``).
BENCHMARK_SETS: dict[str, tuple[str, ...]] = {"v1": SLOTH_BENCHMARKS[:6], "v2": SLOTH_BENCHMARKS[6:]}

#: Anchor rankings (the first K are the anchors of the K-skill model). ``all``: the paper's MATH Lvl 5,
#: IFEval, HellaSwag, BBH. v1 and v2 replace each by its closest counterpart in the set: v1 MATH → GSM8K,
#: IFEval → TruthfulQA (the benchmark chat tuning moves most), HellaSwag, BBH → MMLU; v2 keeps MATH Lvl 5,
#: IFEval and BBH and replaces HellaSwag by MMLU-PRO (knowledge). Benchmarks not in a ranking follow in
#: data order.
ANCHOR_RANKINGS: dict[str, tuple[str, ...]] = {
    "all": ("MATH Lvl 5", "IFEval", "HellaSwag", "BBH"),
    "v1": ("GSM8K", "TruthfulQA", "HellaSwag", "MMLU"),
    "v2": ("MATH Lvl 5", "IFEval", "MMLU-PRO", "BBH"),
}

LATENT_KS = (1, 2, 3, 4)
SLOTH_DS = (1, 2, 3, 4)
#: The latent model's variant for prediction (:data:`latentscale.model.variants.PREDICTION_VARIANT`).
AUTO = "latent-auto"
#: The methods of the tables: the baselines and ``latent-auto``, this project's default for prediction:
#: among the prediction variant at K = 1..4, with and without the data's family attributes as family
#: covariates (:func:`auto_candidates`), the one whose fit on the core rows (training rows of every fold)
#: has the lowest AIC, a rule fixed before any test fold was seen. ``latent-kK`` (the plain model with K skills)
#: and ``latent-kK:VARIANT`` (any variant) can be asked for too.
METHODS: tuple[str, ...] = BASELINES + (AUTO,)


def parse_latent(name: str) -> tuple[int, str] | None:
    """(K, variant) of a latent method name (``latent-k2``: plain; ``latent-k2:residual+ceiling``),
    or None for any other name (``latent-auto`` included)."""
    if not name.startswith("latent-k"):
        return None
    k, _, variant = name[8:].partition(":")
    if not k.isdigit() or int(k) < 1:
        raise InputError(f"bad latent method {name!r}: give latent-kK or latent-kK:VARIANT, e.g. latent-k2:residual")
    variant = variant or "plain"
    parse_variant(variant)
    return int(k), variant


def known_method(name: str) -> bool:
    return name in BASELINES or name == AUTO or parse_latent(name) is not None


def canonical_method(name: str) -> str:
    """A method's name as the tables show it (``sloth-dN``, the older name, is ``sloth-basic-dN``)."""
    if name.startswith("sloth-d") and name[7:].isdigit():
        return f"sloth-basic-d{name[7:]}"
    return name


ERROR_COLUMNS = ["method", "fold", "group", "family", "model", "benchmark", "predicted", "actual", "abs_error"]


def benchmark_set(data: ScoreData, benchmarks: str) -> tuple[str, ...]:
    """The benchmarks of a named set, checked against the data."""
    if benchmarks == "all":
        return tuple(data.benchmarks)
    if benchmarks not in BENCHMARK_SETS:
        raise InputError(f"unknown benchmark set {benchmarks!r}; choose v1, v2 or all")
    chosen = BENCHMARK_SETS[benchmarks]
    missing = [b for b in chosen if b not in data.benchmarks]
    if missing:
        raise DataError(f"benchmark set {benchmarks} needs column(s) {missing}, which the data "
                        f"{data.name!r} lacks (it has {list(data.benchmarks)}); use --benchmarks all")
    return chosen


def anchors_for_set(benchmarks: str, columns: Sequence[str], k: int) -> tuple[str, ...]:
    """Anchors of the K-skill model for a benchmark set (rule in :data:`ANCHOR_RANKINGS`)."""
    ranking = [b for b in ANCHOR_RANKINGS.get(benchmarks, ()) if b in columns]
    ranking += [b for b in columns if b not in ranking]
    if k > len(ranking):
        raise InputError(f"K = {k} exceeds the number of benchmarks ({len(ranking)})")
    return tuple(ranking[:k])


def complete_cases(data: ScoreData, columns: Sequence[str], n_train: int) -> tuple[pd.DataFrame, list[str]]:
    """Rows with size, tokens and every benchmark of ``columns``, in families with ≥ n + 1 of them;
    and the names of the families dropped for having fewer."""
    f = data.frame
    keep = f[["size", "tokens", *columns]].notna().all(axis=1) & (f["size"] > 0) & (f["tokens"] > 0)
    rows = f.loc[keep, ["family", "group", "size", "tokens", *data.attributes, *columns]]
    counts = rows["family"].value_counts()
    small = sorted(counts.index[counts < n_train + 1])
    return rows[~rows["family"].isin(small)], small


def smallest(rows: pd.DataFrame, n: int) -> list[str]:
    """Names of the n smallest models (by size, then tokens, then name)."""
    order = rows.assign(_name=rows.index.astype(str)).sort_values(["size", "tokens", "_name"], kind="stable")
    return list(order.index[:n])


@dataclass(frozen=True)
class Fold:
    """One held-out group (named by its first family): its families, training and test rows (names)."""

    index: int
    group: str
    families: tuple[str, ...]
    train: tuple[str, ...]
    test: tuple[str, ...]


def split_folds(rows: pd.DataFrame, groups: Sequence[Sequence[str]], n_train: int) -> list[Fold]:
    """Folds of the protocol over the eligible ``rows`` (output of :func:`complete_cases`)."""
    folds = []
    for g, families in enumerate(groups):
        held = rows[rows["family"].isin(families)]
        test = []
        for fam in families:
            fam_rows = held[held["family"] == fam]
            kept = set(smallest(fam_rows, n_train))
            test += [m for m in fam_rows.index if m not in kept]
        test_set = set(test)
        train = [m for m in rows.index if m not in test_set]
        folds.append(Fold(index=g, group=str(families[0]),
                          families=tuple(families), train=tuple(train), test=tuple(test)))
    return folds


def load_groups(groups: str | Path | Sequence[Sequence[str]] | None, benchmarks: str, n_train: int) -> list[list[str]] | None:
    """Held-out groups from a JSON file (the structure of ``sloth_heldout_groups.json``:
    ``{"groups": {n: {set: [[family, ...], ...]}}}``, or a plain list of lists of families) or a list."""
    if groups is None:
        return None
    if isinstance(groups, (str, Path)):
        path = Path(groups)
        try:
            obj = json.loads(path.read_text())
        except FileNotFoundError:
            raise DataError(f"groups file {path} not found") from None
        except json.JSONDecodeError as e:
            raise DataError(f"groups file {path} is not valid JSON: {e}") from None
        where = str(path)
    else:
        obj, where = groups, "groups"
    if isinstance(obj, dict):
        table = obj.get("groups", obj)
        if not isinstance(table, dict) or str(n_train) not in table:
            keys = list(table) if isinstance(table, dict) else []
            raise DataError(f"{where} has no groups for n = {n_train} (keys under 'groups': {keys}); "
                            "give a file with groups[n][benchmark set] or a plain list of lists of families")
        per_set = table[str(n_train)]
        if not isinstance(per_set, dict) or benchmarks not in per_set:
            raise DataError(f"{where} has no groups for n = {n_train}, benchmark set {benchmarks!r} "
                            f"(sets present: {list(per_set) if isinstance(per_set, dict) else []})")
        obj = per_set[benchmarks]
    if (not isinstance(obj, list) or not obj
            or not all(isinstance(g, list) and g and all(isinstance(f, str) for f in g) for g in obj)):
        raise DataError(f"{where}: groups must be a non-empty list of non-empty lists of family names")
    return [list(g) for g in obj]


def resolve_groups(data: ScoreData, rows: pd.DataFrame, groups: list[list[str]] | None,
                   dropped: Sequence[str]) -> tuple[list[list[str]], list[str]]:
    """Check the groups' families against the data; groups=None: every data group with eligible families.
    Returns the groups (eligible families only) and notes on what was left out."""
    notes = []
    eligible = set(rows["family"])
    if groups is None:
        out = [list(pd.unique(r["family"])) for _, r in rows.groupby("group", sort=True)]
        return out, notes
    known = set(data.frame["family"])
    unknown = sorted({f for g in groups for f in g if f not in known})
    if unknown:
        raise DataError(f"held-out group famil{'y' if len(unknown) == 1 else 'ies'} {name_rows(unknown)} not in "
                        f"the data's family column (data {data.name!r}); check the names or the --groups file")
    seen: dict[str, int] = {}
    out = []
    for i, g in enumerate(groups):
        for f in g:
            if f in seen:
                raise DataError(f"family {f!r} is in held-out groups {seen[f] + 1} and {i + 1}; a family can be "
                                "held out in one group only")
            seen[f] = i
        kept = [f for f in g if f in eligible]
        left = [f for f in g if f not in eligible]
        if left:
            notes.append(f"group {i + 1}: famil{'y' if len(left) == 1 else 'ies'} {', '.join(left)} left out "
                         f"(fewer than n + 1 complete rows)")
        if kept:
            out.append(kept)
        else:
            notes.append(f"group {i + 1} ({', '.join(g)}) skipped: no family with enough complete rows")
    if not out:
        raise DataError("no held-out group has a family with enough complete rows; check --benchmarks and --n-train")
    return out, notes


def _make_method(name: str, set_name: str, columns: Sequence[str], options: dict, start, auto: str | None = None):
    latent = parse_latent(auto if name == AUTO else name)
    if latent is not None:
        k, variant = latent
        return LatentMethod(k, anchors_for_set(set_name, columns, k), start=start,
                            **{**options, **parse_variant(variant)})
    return make_baseline(name)


def _fit_core(name: str, set_name: str, columns, train: pd.DataFrame, floors: dict, options):
    """A latent fit on the core rows: its θ (the folds' warm start) and AIC."""
    m = _make_method(name, set_name, columns, options, None).fit(train, columns, floors)
    return name, m.theta_, float(m.fit_.aic), bool(m.fit_.converged)


def auto_candidates(attributes: Sequence[str] = ()) -> list[str]:
    """The latent methods ``latent-auto`` chooses among by AIC: the prediction variant at every K and,
    when the data carry family attributes (sloth: ``Instruct``), the same with all of them as family
    covariates."""
    names = [f"latent-k{k}:{PREDICTION_VARIANT}" for k in LATENT_KS]
    if attributes:
        family = "+".join(f"family:{a}" for a in attributes)
        names += [f"latent-k{k}:{PREDICTION_VARIANT}+{family}" for k in LATENT_KS]
    return names


def _latent_names(methods: Sequence[str], candidates: Sequence[str]) -> list[str]:
    """The latent fits a set of methods needs on the core rows (``latent-auto``: its ``candidates``)."""
    names = [m for m in methods if parse_latent(m) is not None]
    if AUTO in methods:
        names += list(candidates)
    return list(dict.fromkeys(names))


def _run_fold(fold: Fold, train: pd.DataFrame, test: pd.DataFrame, actual: np.ndarray, methods: Sequence[str],
              set_name: str, columns: Sequence[str], floors: dict, options: dict, starts: dict,
              auto: str | None, candidates: Sequence[str]) -> dict:
    """Fit every method on a fold's training rows and score its predictions of the test rows
    (``latent-auto`` is the latent method ``auto``, chosen on the core rows)."""
    parts, seconds, converged = [], {}, {}
    for name in methods:
        t0 = time.perf_counter()
        if name == AUTO and auto is None:  # no core rows: the candidate with the lowest AIC on this fold's rows
            fitted = [_make_method(c, set_name, columns, options, None).fit(train, columns, floors)
                      for c in candidates]
            m = fitted[lowest_converged({i: (x.fit_.aic, bool(x.fit_.converged)) for i, x in enumerate(fitted)})]
        else:
            start = starts.get(auto if name == AUTO else name)
            m = _make_method(name, set_name, columns, options, start, auto).fit(train, columns, floors)
        pred = np.asarray(m.predict(test), float)
        seconds[name] = time.perf_counter() - t0
        converged[name] = getattr(m, "converged_", None)
        n, J = pred.shape
        parts.append(pd.DataFrame({
            "method": name, "fold": fold.index, "group": fold.group,
            "family": np.repeat(test["family"].to_numpy(), J), "model": np.repeat(test.index.to_numpy(), J),
            "benchmark": np.tile(np.asarray(columns, dtype=object), n),
            "predicted": pred.ravel(), "actual": actual.ravel(), "abs_error": np.abs(pred - actual).ravel(),
        }))
    return {"fold": fold.index, "errors": pd.concat(parts, ignore_index=True), "seconds": seconds,
            "converged": converged}


@dataclass
class FamilyGroupResult:
    """Errors of every method on every test model and benchmark, and their summaries (in pp)."""

    errors: pd.DataFrame
    benchmarks: tuple[str, ...]
    methods: tuple[str, ...]
    benchmark_set: str = "all"
    n_train: int = 1
    folds: pd.DataFrame = field(default_factory=pd.DataFrame)
    seconds: float = float("nan")
    method_seconds: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    fits: pd.DataFrame = field(default_factory=pd.DataFrame)  # method, fold, converged (None: no iterations)
    published: pd.DataFrame | None = None  # the peer's published table for the same cases (:meth:`add_published`)
    published_errors: pd.DataFrame | None = None  # its per-model errors, in the columns of ``errors``

    def add_published(self, errors: pd.DataFrame | None = None) -> "FamilyGroupResult":
        """Attach Sloth's published results for this table (same groups, test models and
        aggregation; :mod:`latentscale.evaluation.published`), after checking that its test cases
        are ours; a mismatch is noted and nothing is attached."""
        from latentscale.evaluation.published import (check_same_cases, published_case_errors, published_errors,
                                                      published_table)

        errors = published_errors() if errors is None else errors
        differences = check_same_cases(self, errors)
        if differences:
            self.notes.append("published results not shown: " + "; ".join(differences))
            return self
        table = published_table(self.benchmark_set, self.n_train, errors)
        self.published = table.reindex(columns=[*self.benchmarks, "average"])
        self.published_errors = published_case_errors(self, errors, list(table.index))
        return self

    def margins(self, reference: str | None = None, level: float = 0.95) -> pd.DataFrame:
        """Every other method's average MAE minus ``reference``'s (default: ours with the lowest
        average), in pp, with a ``level`` interval: the difference is the mean over the held-out groups
        of each group's difference (mean over benchmarks of the mean over its test models, the
        tables' own aggregation), so the interval is Student's t over the G groups (G − 1 degrees of
        freedom), the groups taken as independent and the methods paired on the same test cases.
        Published methods (:meth:`add_published`) are compared on the same cases too. Rows
        ``method, difference, low, high, groups``, sorted by the difference."""
        from scipy.stats import t as student

        errors = self.errors if self.published_errors is None else pd.concat(
            [self.errors, self.published_errors], ignore_index=True)
        if reference is None:
            reference = self.table()["average"].idxmin()
        per = errors.groupby(["method", "fold", "benchmark"], sort=False)["abs_error"].mean()
        group = per.groupby(level=["method", "fold"], sort=False).mean().unstack("method") * 100.0
        if reference not in group.columns:
            raise InputError(f"no method {reference!r} in this evaluation; it has {', '.join(group.columns)}")
        rows = []
        for method in group.columns.drop(reference):
            d = (group[method] - group[reference]).dropna()
            g = len(d)
            half = float(student.ppf(0.5 + level / 2, g - 1) * d.std(ddof=1) / np.sqrt(g)) if g > 1 else np.nan
            rows.append({"method": method, "difference": float(d.mean()), "low": float(d.mean()) - half,
                         "high": float(d.mean()) + half, "groups": g})
        out = pd.DataFrame(rows, columns=["method", "difference", "low", "high", "groups"])
        out.attrs["reference"] = reference
        return out.sort_values("difference", ignore_index=True)

    @property
    def has_rivals(self) -> bool:
        """Whether there is more than one method (ours and published) to compare."""
        return len(self.methods) + (0 if self.published is None else len(self.published)) > 1

    def margins_record(self) -> dict:
        """:meth:`margins` as plain values (``--json``, the six-table script's summary)."""
        m = self.margins()
        return {"reference": m.attrs["reference"], "level": 0.95, "rows": m.to_dict(orient="records")}

    def margins_line(self, nearest: int = 4) -> str:
        """The ``nearest`` methods' margins over the lowest average, in one line."""
        m = self.margins()
        return (f"margins of {m.attrs['reference']} (each method's average minus its, 95 % t-interval over "
                f"the {int(m['groups'].max())} held-out groups): "
                + "; ".join(f"{r.method} {r.difference:+.2f} [{r.low:+.2f}, {r.high:+.2f}]"
                            for r in m.head(nearest).itertuples()))

    def convergence(self) -> pd.DataFrame:
        """Per method: fits, how many converged, how many did not (fits without an iterative
        optimizer count as converged)."""
        if self.fits.empty:
            return pd.DataFrame(columns=["fits", "converged", "not_converged"])
        ok = self.fits["converged"].map(lambda v: v is None or bool(v))
        t = ok.groupby(self.fits["method"], sort=False).agg(fits="size", converged="sum")
        t["not_converged"] = t["fits"] - t["converged"]
        return t.reindex([m for m in self.methods if m in t.index])

    def summary(self) -> pd.DataFrame:
        """Columns method, benchmark, mae_pp: mean absolute error over a group's test models, then over
        groups, in percentage points; benchmark ``average`` is the mean over benchmarks."""
        per_group = self.errors.groupby(["method", "fold", "benchmark"], sort=False)["abs_error"].mean()
        per_bench = per_group.groupby(level=["method", "benchmark"], sort=False).mean() * 100.0
        rows = []
        for m in self.methods:
            vals = [float(per_bench.get((m, b), np.nan)) for b in self.benchmarks]
            rows += [{"method": m, "benchmark": b, "mae_pp": v} for b, v in zip(self.benchmarks, vals)]
            rows.append({"method": m, "benchmark": "average", "mae_pp": float(np.mean(vals))})
        return pd.DataFrame(rows, columns=["method", "benchmark", "mae_pp"])

    def table(self) -> pd.DataFrame:
        """Methods × benchmarks (+ ``average``), MAE in percentage points."""
        s = self.summary()
        t = s.pivot(index="method", columns="benchmark", values="mae_pp")
        return t.loc[list(self.methods), [*self.benchmarks, "average"]]

    def to_records(self) -> list[dict]:
        """The summary rows (method, benchmark, mae_pp) as plain values, for ``--json``."""
        return [{"method": r.method, "benchmark": r.benchmark, "mae_pp": float(r.mae_pp)}
                for r in self.summary().itertuples(index=False)]

    def format(self) -> str:
        t = self.table()
        best = t["average"].idxmin()
        head = (f"leave-family-group-out, benchmarks {self.benchmark_set} ({len(self.benchmarks)}), n = {self.n_train}: "
                f"{len(self.folds)} held-out groups, {self.errors['model'].nunique()} test models; "
                f"mean absolute error in percentage points (per group, then over groups)")
        conv = self.convergence()
        failed = conv.index[conv["not_converged"] > 0] if len(conv) else []
        t = t.rename(index={m: f"{m} *" for m in failed})
        body = t.to_string(float_format=lambda v: f"{v:.2f}")
        lines = [head, body, f"lowest average: {best} ({self.table().loc[best, 'average']:.2f} pp)"]
        for m in failed:
            lines.append(f"* {m}: the fit did not converge in {int(conv.loc[m, 'not_converged'])} of "
                         f"{int(conv.loc[m, 'fits'])} folds (its predictions are those of the last iterate)")
        if self.published is not None:
            peer = self.published
            lines += ["published by Sloth (Maia Polo et al.), the same test cases and aggregation "
                      f"(best: {peer['average'].idxmin()}, {peer['average'].min():.2f} pp):",
                      peer.to_string(float_format=lambda v: f"{v:.2f}")]
        if self.has_rivals:
            lines.append(self.margins_line())
        if np.isfinite(self.seconds):
            lines.append(f"wall time {self.seconds:.0f} s")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _core_fits(rows, folds, methods, set_name, columns, floors, options, n_jobs, scheduler, notes, say,
               candidates: Sequence[str]):
    """The latent fits on the core rows (the training rows of every fold, so no test row enters
    them): the folds' warm starts by method, and the method ``latent-auto`` stands for (the lowest
    AIC among its ``candidates``), noted in ``notes``."""
    latent = _latent_names(methods, candidates)
    if not latent:
        return {}, None
    tested = {m for f in folds for m in f.test}
    core = rows[~rows.index.isin(tested)]
    if core["family"].nunique() < 2:  # every family is held out somewhere (n = 0): cold fits per fold
        if AUTO in methods:
            notes.append(f"{AUTO}: no core rows (every family is held out once), so each fold takes the candidate "
                         f"({', '.join(candidates)}) with the lowest AIC on its own training rows")
        return {}, None
    t0 = time.perf_counter()
    res = parallel_map(_fit_core, [(m, set_name, columns, core, floors, options) for m in latent],
                       n_jobs=min(n_jobs, len(latent)) if scheduler is None else n_jobs, scheduler=scheduler)
    say(f"warm starts: latent fits on the {len(core)} core rows ({time.perf_counter() - t0:.0f} s)")
    auto = None
    if AUTO in methods:
        aic = {name: (a, ok) for name, _, a, ok in res if name in candidates}
        auto = lowest_converged(aic)
        notes.append(f"{AUTO} is {auto}: the lowest AIC among the converged fits on the {len(core)} core rows "
                     "(training rows of every fold) of " + ", ".join(f"{n[len('latent-'):]} ({a:.1f}{'' if ok else ', NOT converged'})"
                                                      for n, (a, ok) in aic.items()))
    return {name: theta for name, theta, _, _ in res}, auto


def family_group_cv(data: ScoreData, *, benchmarks: str = "all", n_train: int = 1,
                    methods: Sequence[str] | None = None, groups: str | Path | Sequence[Sequence[str]] | None = None,
                    n_jobs: int = 1, scheduler: str | Any | None = None, quadrature=None,
                    model_options: dict | None = None, progress: Callable[[str], None] | None = None) -> FamilyGroupResult:
    """Run the leave-family-group-out protocol (module docstring) for every method.

    benchmarks : ``v1``, ``v2`` or ``all``. n_train : models per held-out family kept in training (0:
        none, the held-out families are unseen and predicted from the prior).
    methods : names from :data:`METHODS` (default all). groups : a JSON file (``groups[n][set]``, or a
    list of lists of families) or a list of lists; None holds out every group of the data in turn.
    n_jobs / scheduler : folds in parallel (joblib processes, or a Dask scheduler address).
    quadrature : the rule of the latent fits (default: the default rule, as ``latentscale fit``).
    model_options : further options of the latent model (``logit_clip``, ``covariates``, ...).
    """
    latent_options = {"quadrature": quadrature, **(model_options or {})}
    t_start = time.perf_counter()
    say = progress or (lambda msg: None)
    if not isinstance(n_train, (int, np.integer)) or isinstance(n_train, bool) or n_train < 0:
        raise InputError(f"n_train must be a whole number (0: unseen families), got {n_train!r}")
    methods = tuple(METHODS if methods is None else (canonical_method(m) for m in methods))
    bad = [m for m in methods if not known_method(m)]
    if bad or not methods:
        raise InputError(f"unknown method(s) {bad}; choose from {', '.join(METHODS)}, latent-kK or latent-kK:VARIANT")
    columns = benchmark_set(data, benchmarks)
    rows, dropped = complete_cases(data, columns, n_train)
    if rows.empty:
        raise DataError(f"no family has {n_train + 1} or more rows with size, tokens and every benchmark of "
                        f"{benchmarks}; nothing to evaluate")
    group_list, notes = resolve_groups(data, rows, load_groups(groups, benchmarks, n_train), dropped)
    folds = split_folds(rows, group_list, n_train)
    floors = {b: float(data.floors[b]) for b in columns}
    # Every latent fit (core and folds) is padded to the shape of the complete rows with n = 1 (a
    # superset of those with larger n): one compiled likelihood per benchmark set and K for every fold
    # and both values of n.
    widest, _ = complete_cases(data, columns, 1)
    latent_options["pad"] = padded_shape(len(widest) * len(columns), len(widest), int(widest["family"].nunique()))
    say(f"{benchmarks} (n = {n_train}): {len(rows)} complete rows in {rows['family'].nunique()} families, "
        f"{len(folds)} held-out groups, {len(methods)} methods")

    candidates = auto_candidates(data.attributes)
    starts, auto = _core_fits(rows, folds, methods, benchmarks, columns, floors, latent_options, n_jobs, scheduler,
                              notes, say, candidates)

    model_cols = ["family", "size", "tokens", *data.attributes]
    tasks = []
    for f in folds:
        test = rows.loc[list(f.test)]
        tasks.append((f, rows.loc[list(f.train)], test[model_cols].copy(), test[list(columns)].to_numpy(float),
                      methods, benchmarks, columns, floors, latent_options, starts, auto, candidates))

    def arrived(i, res):
        f = folds[res["fold"]]
        say(f"group {i + 1}/{len(folds)} done ({f.group}: {len(f.test)} test models, "
            f"{sum(res['seconds'].values()):.0f} s)")

    results = parallel_map(_run_fold, tasks, n_jobs=n_jobs, scheduler=scheduler, on_result=arrived)
    errors = pd.concat([r["errors"] for r in results], ignore_index=True)[ERROR_COLUMNS]
    method_seconds = {m: float(sum(r["seconds"][m] for r in results)) for m in methods}
    fold_table = pd.DataFrame([{"fold": f.index, "group": f.group, "families": ",".join(f.families),
                                "n_train_rows": len(f.train), "n_test_models": len(f.test)} for f in folds])
    if dropped:
        notes.append(f"{len(dropped)} families with fewer than {n_train + 1} complete rows dropped: "
                     f"{name_rows(dropped, 8)}")
    empty = [f.group for f in folds if not f.test]
    if empty:
        notes.append(f"groups without test models (not scored): {', '.join(empty)}")
    fits = pd.DataFrame([{"method": m, "fold": r["fold"], "converged": r["converged"][m]}
                         for r in results for m in methods], columns=["method", "fold", "converged"])
    return FamilyGroupResult(errors=errors, benchmarks=tuple(columns), methods=methods, benchmark_set=benchmarks,
                             n_train=int(n_train), folds=fold_table, seconds=time.perf_counter() - t_start,
                             method_seconds=method_seconds, notes=notes, fits=fits)
