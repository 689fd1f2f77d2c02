"""What to evaluate next: rank model × benchmark runs by the expected reduction of a target's
predictive uncertainty per unit cost, at the fitted parameters (or with their uncertainty)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from latentscale.data.validate import DataError, name_rows
from latentscale.design.draws import FamilyDraws, family_draws
from latentscale.design.value import DesignProblem, greedy_design, score_moments
from latentscale.errors import InputError
from latentscale.prediction.posterior import unknown_families_message
from latentscale.prediction.predict import conditioning_frame

#: Targets of :func:`design_evaluations`.
TARGETS = ("scores", "model", "skill", "ranking")
#: Columns of the ranked table.
DESIGN_COLUMNS = ("rank", "family", "model", "benchmark", "cost", "variance_before", "expected_variance",
                  "reduction", "reduction_per_cost", "batch_order")


@dataclass
class DesignResult:
    """``table``: every candidate run, best first (the greedy batch first, in its order, then the
    rest by expected reduction per unit cost when run alone); ``batch``: the chosen runs with the
    reduction each adds given those before it; ``target``: what the variance is of."""

    table: pd.DataFrame
    batch: pd.DataFrame
    target: str

    def to_dict(self) -> dict:
        return {"target": self.target, "candidates": self.table.to_dict(orient="records"),
                "batch": self.batch.to_dict(orient="records")}


def describe_target(target: str, families, model=None, skill=None) -> str:
    if target == "scores":
        return f"the unevaluated scores of famil{'y' if len(families) == 1 else 'ies'} {', '.join(families)}"
    if target == "model":
        return f"the unevaluated scores of model {model}"
    if target == "skill":
        return f"skill {skill} of famil{'y' if len(families) == 1 else 'ies'} {', '.join(families)}"
    return f"the difference in skill {skill} between {families[0]} and {families[1]}"


def _resolve_target(fit, frame, target, families, model, skill) -> list[str]:
    if target not in TARGETS:
        raise InputError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    families = list(families or [])
    if target == "model":
        if model is None:
            raise InputError("target 'model' needs the model's name (model=, --model)")
        if model not in frame.index:
            raise InputError(f"model {model!r} is not among the evaluated rows; name a model of the fit's data "
                             "(or of rows=)")
        return [str(frame.loc[model, "family"])]
    if target in ("skill", "ranking") and skill not in fit.spec.skills:
        raise InputError(f"target {target!r} needs a skill (skill=, --skill), one of {', '.join(fit.spec.skills)}; "
                         f"got {skill!r}")
    if target == "ranking" and len(families) != 2:
        raise InputError(f"target 'ranking' compares two families; got {len(families)}: {families}")
    if not families:
        raise InputError("name the famil(ies) whose runs to rank (families=, --family)")
    return families


def _family_models(frame: pd.DataFrame, candidates: pd.DataFrame | None, family: str) -> pd.DataFrame:
    """Models of a family (index model; size, tokens): its evaluated rows and new models among the candidates."""
    models = frame.loc[frame["family"] == family, ["size", "tokens"]]
    if candidates is not None and "family" in candidates.columns:
        extra = candidates[(candidates["family"] == family) & ~candidates["model"].isin(models.index)]
        if len(extra):
            missing = [c for c in ("size", "tokens") if c not in extra.columns]
            if missing:
                raise DataError(f"candidate model(s) {name_rows(extra['model'].unique())} are not in the data, so the "
                                f"candidates table needs their {' and '.join(missing)}")
            extra = extra.drop_duplicates("model").set_index("model")[["size", "tokens"]].astype(float)
            models = pd.concat([models, extra])
    return models


def _candidate_cells(fit, frame, candidates, family, models) -> tuple[list[int], list[float], list[tuple[str, str]]]:
    """Flat cell indices (model row × J + benchmark), costs and labels of the family's candidates."""
    benchmarks = list(fit.spec.benchmarks)
    J = len(benchmarks)
    observed = frame.reindex(models.index)[benchmarks].notna().to_numpy()
    if candidates is None:
        cells = np.flatnonzero(~observed.ravel())
        return list(cells), [1.0] * len(cells), [(models.index[c // J], benchmarks[c % J]) for c in cells]
    fam_of = frame["family"]
    rows = candidates[candidates["model"].map(lambda m: fam_of.get(m, None)).eq(family)
                      | (candidates["family"].eq(family) if "family" in candidates.columns else False)]
    cells, costs, labels = [], [], []
    position = {m: i for i, m in enumerate(models.index)}
    for _, r in rows.iterrows():
        j = benchmarks.index(r["benchmark"])
        i = position[r["model"]]
        if observed[i, j]:
            raise DataError(f"candidate ({r['model']}, {r['benchmark']}) is already evaluated; drop it from the "
                            "candidates table")
        cells.append(i * J + j)
        costs.append(float(r.get("cost", 1.0)))
        labels.append((r["model"], r["benchmark"]))
    return cells, costs, labels


def check_candidates(fit, frame: pd.DataFrame, candidates: pd.DataFrame | None) -> pd.DataFrame | None:
    """Validate a candidates table (model, benchmark, optional cost, family, size, tokens)."""
    if candidates is None:
        return None
    c = candidates.copy()
    missing = [k for k in ("model", "benchmark") if k not in c.columns]
    if missing:
        raise DataError(f"the candidates table lacks column(s) {missing}; it needs model and benchmark (and "
                        f"optionally cost, and family, size, tokens for models not in the data); columns present: "
                        f"{list(c.columns)}")
    c["model"] = c["model"].astype(str)
    bad = ~c["benchmark"].isin(fit.spec.benchmarks)
    if bad.any():
        raise DataError(f"candidates table, column 'benchmark': {name_rows(c.loc[bad, 'benchmark'].unique())} not "
                        f"among the fit's benchmarks ({', '.join(fit.spec.benchmarks)}); rows "
                        f"{name_rows(np.flatnonzero(bad.to_numpy()) + 2)} of the file")
    if "cost" in c.columns:
        cost = pd.to_numeric(c["cost"], errors="coerce")
        bad = ~(cost > 0)
        if bad.any():
            raise DataError(f"candidates table, column 'cost': must be a positive number; bad in row(s) "
                            f"{name_rows(np.flatnonzero(bad.to_numpy()) + 2)} of the file")
        c["cost"] = cost.astype(float)
    unknown = ~c["model"].isin(frame.index)
    if unknown.any() and ("family" not in c.columns or c.loc[unknown, "family"].isna().any()):
        raise DataError(f"candidate model(s) {name_rows(c.loc[unknown, 'model'].unique())} are not in the data; give "
                        "their family, size and tokens in the candidates table")
    if c.duplicated(["model", "benchmark"]).any():
        dup = c.loc[c.duplicated(["model", "benchmark"]), ["model", "benchmark"]]
        raise DataError(f"candidates listed twice: {name_rows([tuple(x) for x in dup.to_numpy()])}")
    return c


def evaluation_problem(fit, frame, draws: FamilyDraws, target: str, candidates=None, model=None,
                       skill=None) -> tuple[DesignProblem, list[tuple[str, str]]]:
    """The design problem of one family: candidate cells, their μ and φ per draw, and the target."""
    family = draws.family
    models = _family_models(frame, candidates, family)
    cells, costs, labels = _candidate_cells(fit, frame, candidates, family, models)
    mu, phi = draws.scores(fit, models["size"], models["tokens"])  # (n, N, J)
    n = mu.shape[0]
    mu, phi = mu.reshape(n, -1), phi.reshape(n, -1)
    cells = np.asarray(cells, int)
    if target in ("scores", "model"):
        J = fit.spec.J
        observed = frame.reindex(models.index)[list(fit.spec.benchmarks)].notna().to_numpy().ravel()
        in_target = ~observed
        if target == "model":
            in_target &= np.repeat(models.index == model, J)
        tcells = np.flatnonzero(in_target)
        g1, g2 = score_moments(mu[:, tcells], phi[:, tcells])
        where = {c: i for i, c in enumerate(tcells)}
        target_of = np.asarray([where.get(c, -1) for c in cells], int)
    else:
        k = fit.spec.skills.index(skill)
        g1 = draws.effects[:, [k]]
        g2 = g1**2
        target_of = np.full(len(cells), -1)
    problem = DesignProblem(family, mu[:, cells], phi[:, cells], g1, g2, target_of, np.asarray(costs, float),
                            labels=[f"{m} | {b}" for m, b in labels])
    return problem, labels


def design_evaluations(fit, families: list[str] | None = None, target: str = "scores", *, model: str | None = None,
                       skill: str | None = None, candidates: pd.DataFrame | None = None, rows=None, batch: int = 5,
                       n_draws: int = 1000, n_fantasies: int = 128, seed: int = 0,
                       parameter_uncertainty: bool = False, progress=None) -> DesignResult:
    """Rank candidate evaluations (model × benchmark cells; by default every unevaluated cell of the
    families' models) by the expected reduction of the target's posterior variance per unit cost,
    and choose a greedy batch of ``batch`` runs.

    ``target``: ``"scores"`` (every unevaluated score of ``families``; a run that is chosen leaves the
    target), ``"model"`` (the unevaluated scores of ``model``), ``"skill"`` (the families' skill
    ``skill``: the sum of its posterior variances) or ``"ranking"`` (two families: the variance of
    the difference of their ``skill``). ``candidates``: a frame with model, benchmark and optionally
    cost (default 1), and family, size, tokens for models not yet in the data. ``rows``: evaluated
    rows to condition on besides the fit's own (as in :func:`~latentscale.prediction.predict`).
    Draws are at θ̂ unless ``parameter_uncertainty``; ``n_fantasies`` outcomes per candidate."""
    frame = conditioning_frame(fit, rows)
    frame = frame.copy()
    frame.index = frame.index.astype(str)
    cands = check_candidates(fit, frame, candidates)
    families = _resolve_target(fit, frame, target, families, model, skill)
    known = set(frame["family"]) | (set(cands["family"].dropna()) if cands is not None and "family" in cands else set())
    unknown = [f for f in families if f not in known]
    if unknown:
        raise InputError(unknown_families_message(unknown, known))
    draws = family_draws(fit, frame, families, n_draws=n_draws, seed=seed,
                         parameter_uncertainty=parameter_uncertainty)
    problems, labels = [], []
    for f in families:
        p, lab = evaluation_problem(fit, frame, draws[f], target, cands, model, skill)
        if p.n_candidates:
            problems.append(p)
            labels.append(lab)
    if not problems:
        raise InputError(f"no candidate runs: every cell of {', '.join(families)} is evaluated; pass candidates "
                         "(new models of the family with their size and tokens)")
    rows_, chosen = greedy_design(problems, batch=batch, n_fantasies=n_fantasies, seed=seed, progress=progress)
    return _result(rows_, chosen, problems, labels, describe_target(target, families, model, skill))


def ranked_table(rows_: list[dict], chosen: list[dict]) -> pd.DataFrame:
    """The candidates of :func:`~latentscale.design.value.greedy_design`, best first: the greedy batch
    in its order, then the rest by reduction per unit cost; with ``batch_order`` and ``rank``."""
    table = pd.DataFrame(rows_)
    order = {(r["family"], r["candidate"]): r["order"] for r in chosen}
    table["batch_order"] = [order.get(key, np.nan) for key in zip(table["family"], table["candidate"])]
    table = table.sort_values(["batch_order", "reduction_per_cost"], ascending=[True, False], na_position="last",
                              kind="stable").reset_index(drop=True)
    table["rank"] = np.arange(1, len(table) + 1)
    return table


def _result(rows_, chosen, problems, labels, target) -> DesignResult:
    index = {p.family: i for i, p in enumerate(problems)}
    table = ranked_table(rows_, chosen)
    table["model"] = [labels[index[f]][c][0] for f, c in zip(table["family"], table["candidate"])]
    table["benchmark"] = [labels[index[f]][c][1] for f, c in zip(table["family"], table["candidate"])]
    batch = pd.DataFrame(chosen, columns=["order", "family", "candidate", "label", "cost", "reduction",
                                          "expected_variance"])
    if len(batch):
        batch["model"] = [labels[index[f]][c][0] for f, c in zip(batch["family"], batch["candidate"])]
        batch["benchmark"] = [labels[index[f]][c][1] for f, c in zip(batch["family"], batch["candidate"])]
    batch = batch.reindex(columns=["order", "family", "model", "benchmark", "cost", "reduction", "expected_variance"])
    return DesignResult(table=table[list(DESIGN_COLUMNS)], batch=batch, target=target)
