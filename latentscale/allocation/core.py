"""Compute-optimal allocation (SPEC §4): for a budget C = 6·N·D FLOPs, the (N, D) that maximizes a
skill or a benchmark's expected score, within a box of sizes and token counts.

Units: N in billions of parameters, D in trillions of tokens, so C = 6·(N·1e9)·(D·1e12) and the
budget line is log N + log D = s with s = log(C / 6e21).

On the raw log scale a skill is θ_k = b₁·log N + b₂·log D + b₃·log N·log D + offset_k + α_k
(``fit.B_raw``). On the budget line, with u = log N, it is the quadratic

    θ_k(u) = −b₃·u² + (b₁ − b₂ + b₃·s)·u + b₂·s + offset_k + α_k,

concave when b₃ > 0 (optimum at u* = (b₁ − b₂ + b₃·s) / (2·b₃), clipped to the box) and convex
or linear otherwise (optimum at an end of the budget line's segment inside the box). A
benchmark's linear predictor η_j = λ_jᵀθ + b_j is the same kind of quadratic with coefficients
B_raw·λ_j, and its expected score c_j + (1 − c_j)·κ_j·sigmoid(η_j) (κ_j = 1 without a fitted
ceiling) is increasing in η_j; so the
optimum of a benchmark is the optimum of that quadratic too. The family effect α only shifts the
objective by a constant (for a benchmark: the score is increasing in η + λ_jᵀα for every α), so it
never moves the optimal (N, D): a family changes the value at the optimum, not where it is.

Uncertainty: parameter draws θ ~ N(θ̂, Cov θ̂) (the fit's asymptotic covariance, in the
unconstrained coordinates), the closed-form optimum of every draw, and equal-tailed quantiles of
N*, D*, D*/N* and of the value at the optimum. An optimum pinned to an edge of the box has a
degenerate interval at that edge: the box, not the data, decides it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from latentscale.errors import InputError
from latentscale.model.covariates import FLOPS_UNIT

#: Columns of the table :func:`allocate` returns (intervals at ``level``).
ALLOCATION_COLUMNS = (
    "target", "kind", "family", "flops", "size", "tokens", "tokens_per_param", "value", "position",
    "extrapolated", "feasible", "level", "size_lower", "size_upper", "tokens_lower", "tokens_upper",
    "tokens_per_param_lower", "tokens_per_param_upper", "value_lower", "value_upper", "p_interior", "note",
)
_REL_TOL = 1e-9


def budget_log(flops) -> np.ndarray:
    """s = log N + log D on the budget line of ``flops`` (N in billions, D in trillions)."""
    return np.log(np.asarray(flops, dtype=float)) - math.log(FLOPS_UNIT)


def flops_range(low: float, high: float, points: int = 10) -> np.ndarray:
    """``points`` budgets log-spaced from ``low`` to ``high`` FLOPs (one when they are equal)."""
    if not (low > 0 and high > 0 and math.isfinite(low) and math.isfinite(high)):
        raise InputError(f"budgets must be positive finite FLOPs, got {low:g} and {high:g}")
    if high < low:
        raise InputError(f"the budget range is reversed ({low:g} > {high:g}); give LOW..HIGH")
    if int(points) != points or points < 1:
        raise InputError(f"points must be a positive integer, got {points}")
    if low == high:
        return np.array([float(low)])
    if points < 2:
        raise InputError("a range of budgets needs at least 2 points (or give LOW == HIGH for one budget)")
    return np.geomspace(low, high, int(points))


def data_ranges(fit) -> dict[str, tuple[float, float]]:
    """Ranges of size (billions), tokens (trillions) and compute 6·N·D (FLOPs) over the fit's rows."""
    data = _fit_rows(fit)
    size, tokens = data["size"].to_numpy(float), data["tokens"].to_numpy(float)
    flops = FLOPS_UNIT * size * tokens
    return {"size": (float(size.min()), float(size.max())), "tokens": (float(tokens.min()), float(tokens.max())),
            "flops": (float(flops.min()), float(flops.max()))}


def _fit_rows(fit) -> pd.DataFrame:
    data = fit.data
    if data is None:
        raise InputError("this fit carries no data, so the default box (the data's range of sizes and tokens) is "
                         "unknown; pass box=((size_lo, size_hi), (tokens_lo, tokens_hi)) and flops=")
    data = data[data["size"].notna() & data["tokens"].notna()]
    if not len(data):
        raise InputError("the fit's rows have no sizes and tokens; pass box= and flops=")
    return data


def resolve_box(fit, box=None) -> tuple[tuple[float, float], tuple[float, float]]:
    """The box ((size_lo, size_hi), (tokens_lo, tokens_hi)); None, or a None side, means the data's range."""
    if box is None:
        box = (None, None)
    try:
        size_box, tokens_box = box
    except (TypeError, ValueError):
        raise InputError(f"box must be ((size_lo, size_hi), (tokens_lo, tokens_hi)), got {box!r}") from None
    out = []
    for side, name, unit in ((size_box, "size", "billions of parameters"), (tokens_box, "tokens", "trillions of tokens")):
        if side is None:
            side = data_ranges(fit)[name]
        try:
            lo, hi = (float(v) for v in side)
        except (TypeError, ValueError):
            raise InputError(f"the {name} side of the box must be (low, high) in {unit}, got {side!r}") from None
        if not (lo > 0 and hi > 0 and math.isfinite(lo) and math.isfinite(hi)):
            raise InputError(f"the {name} side of the box must be positive and finite ({unit}), got {lo:g}, {hi:g}")
        if hi < lo:
            raise InputError(f"the {name} side of the box is reversed ({lo:g} > {hi:g}); give (low, high)")
        out.append((lo, hi))
    return out[0], out[1]


# ---- the objective on the budget line -------------------------------------------------------
def target_coefficients(fit, thetas: np.ndarray, target: str, kind: str, family: str | None = None):
    """Raw-scale coefficients of the objective for parameter draws (S, d): (S, 3) on
    (log N, log D, log N·log D), the constant (S,), the weights w (S, K) with which α enters
    (e_k for a skill, λ_j for a benchmark) and the range (floor, top) and link power γ of the expected score (top
    = c + (1 − c)·κ with a fitted ceiling share κ, else 1; unused for a skill). Family covariates
    enter the constant at ``family``'s values (None: their sample means, the typical family)."""
    spec = fit.spec
    thetas = np.atleast_2d(np.asarray(thetas, float))
    S, p, K = len(thetas), spec.p, spec.K
    scale, mean = np.asarray(fit.scaler.scale, float), np.asarray(fit.scaler.mean, float)
    lay = fit.layout
    B = thetas[:, lay.slices["B"]].reshape(S, p, K)
    B_raw = B / scale[None, :, None]
    offset = -np.einsum("p,spk->sk", mean / scale, B)
    p0 = p - len(spec.family_covariates)
    if p0 < p:  # a family's kind only shifts the objective
        from latentscale.prediction.posterior import family_covariate_row

        z = mean[p0:] if family is None else family_covariate_row(fit, family)
        offset = offset + np.einsum("q,sqk->sk", z, B_raw[:, p0:])
        B_raw = B_raw[:, :p0]
    B_raw, offset = _as_size_token_terms(B_raw, offset, spec.covariates)
    if kind == "skill":
        k = spec.skills.index(target)
        w = np.zeros((S, K))
        w[:, k] = 1.0
        return B_raw[:, :, k], offset[:, k], w, (0.0, 1.0, 1.0)
    j = spec.benchmarks.index(target)
    params = lay.unpack_many(thetas, ("loadings", "intercepts"))
    lam, icpt = params["loadings"][:, :, j], params["intercepts"][:, j]  # (S, K), (S,)
    coef = np.einsum("spk,sk->sp", B_raw, lam)
    const = np.einsum("sk,sk->s", offset, lam) + icpt
    floor = float(spec.floors[j])
    kappa = float(fit.constrained["ceiling"][j]) if "ceiling" in fit.constrained else 1.0
    gamma = float(fit.constrained["link_power"][j]) if "link_power" in fit.constrained else 1.0
    return coef, const, lam, (floor, floor + (1.0 - floor) * kappa, gamma)


def _as_size_token_terms(B_raw: np.ndarray, offset: np.ndarray, covariates: str):
    """Raw coefficients (S, p, K) of any covariate set as coefficients on (log N, log D,
    log N·log D) and the offset: ``size-tokens`` has no interaction; ``flops`` (log C = log 6e21
    + log N + log D) puts the same coefficient on log N and log D, so every split of a budget
    gives the same skill."""
    if covariates == "paper":
        return B_raw, offset
    S, _, K = B_raw.shape
    zero = np.zeros((S, 1, K))
    if covariates == "size-tokens":
        return np.concatenate([B_raw, zero], axis=1), offset
    b = B_raw[:, :1, :]
    return np.concatenate([b, b, zero], axis=1), offset + b[:, 0, :] * math.log(FLOPS_UNIT)


def _quadratic(coef: np.ndarray, s: float):
    """(a, b, c) of f(u) = a·u² + b·u + c, the raw-scale part of the objective on log N + log D = s."""
    b1, b2, b3 = coef[..., 0], coef[..., 1], coef[..., 2]
    return -b3, b1 - b2 + b3 * s, b2 * s


def line_optimum(coef: np.ndarray, s: float, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """The maximizer u* = log N* of the quadratic on [lo, hi] (closed form), per row of ``coef``
    (…, 3), and whether it is interior. Concave: the vertex clipped into the segment; convex or
    linear: the better end (the lower one on an exact tie)."""
    a, b, c = _quadratic(np.asarray(coef, float), s)
    f = lambda u: a * u * u + b * u + c  # noqa: E731
    with np.errstate(divide="ignore", invalid="ignore"):
        vertex = np.where(a < 0, -b / (2.0 * a), np.nan)
    ends = np.where(f(hi) > f(lo), hi, lo)
    u = np.where(a < 0, np.clip(vertex, lo, hi), ends)
    interior = (a < 0) & (vertex > lo) & (vertex < hi)
    return u, interior


def budget_segment(s: float, size_box, tokens_box) -> tuple[float, float]:
    """The budget line's segment in the box, as an interval of log N (lo > hi: empty)."""
    return (max(math.log(size_box[0]), s - math.log(tokens_box[1])),
            min(math.log(size_box[1]), s - math.log(tokens_box[0])))


def _position(u: float, s: float, lo: float, hi: float, size_box, tokens_box) -> str:
    """Where the optimum sits: ``interior`` or the edge of the box that binds."""
    tol = 1e-9 * max(1.0, abs(u))
    if lo < u - tol and u + tol < hi:
        return "interior"
    if abs(u - lo) <= tol:
        return "size_min" if math.log(size_box[0]) >= s - math.log(tokens_box[1]) else "tokens_max"
    return "size_max" if math.log(size_box[1]) <= s - math.log(tokens_box[0]) else "tokens_min"


def _numeric_optimum(objective, lo: float, hi: float, grid: int = 4001) -> float:
    """argmax of a scalar function on [lo, hi]: a dense grid, then a bounded refinement around the best point."""
    from scipy.optimize import minimize_scalar

    if hi - lo <= 0:
        return lo
    us = np.linspace(lo, hi, grid)
    vals = np.array([objective(u) for u in us])
    i = int(np.argmax(vals))
    a, b = us[max(i - 1, 0)], us[min(i + 1, grid - 1)]
    if b > a:
        res = minimize_scalar(lambda u: -objective(u), bounds=(a, b), method="bounded",
                              options={"xatol": 1e-12 * max(1.0, abs(us[i]))})
        if res.success and objective(res.x) >= vals[i]:
            return float(res.x)
    return float(us[i])


def _value(coef, const, weight, floor, u, s, alpha, kind):
    """The objective at u = log N on the budget line: the skill, or the benchmark's expected score."""
    a, b, c = _quadratic(coef, s)
    eta = a * u * u + b * u + c + const + np.sum(weight * alpha, axis=-1)
    if kind == "skill":
        return eta
    low, top, gamma = floor
    return low + (top - low) / (1.0 + np.exp(-eta) / gamma) ** gamma  # sigmoid(η + log γ)^γ


# ---- the public function ----------------------------------------------------------------
def allocate(fit, skill: str | None = None, benchmark: str | None = None, family: str | None = None,
             flops: float | Sequence[float] | None = None, box=None, level: float = 0.95, *,
             uncertainty: bool = True, n_draws: int = 2000, seed: int = 0, cov_kind: str = "observed",
             method: str = "closed", points: int = 10) -> pd.DataFrame:
    """Compute-optimal (N, D) for each budget in ``flops``.

    Parameters
    ----------
    fit : a :class:`~latentscale.FitResult`.
    skill, benchmark : what to maximize: a skill (named by its anchor) or a benchmark's expected
        score. Neither: every skill, one block of rows each.
    family : a family of the fit's data; its posterior-mean skills set the value at the optimum
        (never the optimum itself). None: the typical family (α = 0).
    flops : one budget or a sequence of budgets (FLOPs, C = 6·N·D). None: ``points`` budgets
        log-spaced over the range of 6·N·D in the fit's data.
    box : ((size_lo, size_hi), (tokens_lo, tokens_hi)) in billions / trillions; None (or a None
        side): the data's range. Optima outside the data's range are flagged ``extrapolated``.
    level : level of the equal-tailed intervals from ``n_draws`` parameter draws (seeded).
    uncertainty : False skips the draws (interval columns NaN); needed for a fit without a Hessian.
    cov_kind : ``"observed"``, ``"opg"`` or ``"sandwich"`` covariance (see :meth:`FitResult.cov_params`).
    method : ``"closed"`` (the quadratic's maximizer) or ``"numeric"`` (grid and bounded search of the
        skill or the expected score itself, a check of the closed form; the draws always use it).

    Returns one row per target and budget with the columns of :data:`ALLOCATION_COLUMNS`: the
    optimum ``size`` (billions), ``tokens`` (trillions), ``tokens_per_param`` (D/N, tokens per
    parameter), ``value`` (skill, or expected score), ``position`` (``interior`` or the binding edge:
    ``size_min``, ``size_max``, ``tokens_min``, ``tokens_max``), ``extrapolated`` (optimum outside
    the data's range of sizes or tokens), ``feasible`` (the budget line meets the box), intervals,
    ``p_interior`` (share of draws with an interior optimum) and a ``note``.
    """
    spec = fit.spec
    if skill is not None and benchmark is not None:
        raise InputError("give skill= or benchmark=, not both")
    if skill is not None and skill not in spec.skills:
        raise InputError(f"unknown skill {skill!r}; the fit's skills are {', '.join(spec.skills)}")
    if benchmark is not None and benchmark not in spec.benchmarks:
        raise InputError(f"unknown benchmark {benchmark!r}; the fit's benchmarks are {', '.join(spec.benchmarks)}")
    if not 0.0 < level < 1.0:
        raise InputError(f"level must be between 0 and 1 (exclusive), got {level}")
    if method not in ("closed", "numeric"):
        raise InputError(f"method must be 'closed' or 'numeric', got {method!r}")
    if uncertainty and int(n_draws) < 2:
        raise InputError(f"n_draws must be at least 2, got {n_draws}")
    targets = ([(skill, "skill")] if skill is not None else [(benchmark, "benchmark")] if benchmark is not None
               else [(s, "skill") for s in spec.skills])
    budgets = _budgets(fit, flops, points)
    size_box, tokens_box = resolve_box(fit, box)
    data_size, data_tokens = _data_box(fit)
    alpha = _family_alpha(fit, family)

    thetas = None
    if uncertainty:
        from latentscale.prediction.sampling import checked_covariance, parameter_draws

        cov = checked_covariance(fit, cov_kind, "--draws 0; uncertainty=False", "cov_kind")
        thetas = parameter_draws(fit.theta, cov, int(n_draws), seed)

    rows = []
    for target, kind in targets:
        coef, const, weight, floor = target_coefficients(fit, np.asarray(fit.theta)[None], target, kind, family)
        coef, const, weight = coef[0], const[0], weight[0]
        draws = target_coefficients(fit, thetas, target, kind, family) if thetas is not None else None
        for C in budgets:
            rows.append(_one_budget(C, target, kind, family, coef, const, weight, floor, alpha, draws,
                                    size_box, tokens_box, data_size, data_tokens, level, method))
    table = pd.DataFrame(rows, columns=list(ALLOCATION_COLUMNS))
    return table


def _budgets(fit, flops, points) -> np.ndarray:
    if flops is None:
        lo, hi = data_ranges(fit)["flops"]
        return flops_range(lo, hi, points)
    arr = np.atleast_1d(np.asarray(flops, dtype=float)).ravel()
    if not arr.size or not np.all(np.isfinite(arr) & (arr > 0)):
        raise InputError(f"budgets must be positive finite FLOPs (C = 6·N·D), got {np.asarray(flops).tolist()}")
    return arr


def _data_box(fit):
    if fit.data is None:
        return None, None
    r = data_ranges(fit)
    return r["size"], r["tokens"]


def _family_alpha(fit, family) -> np.ndarray:
    if family is None:
        return np.zeros(fit.spec.K)
    from latentscale.prediction.posterior import family_posterior

    return np.asarray(family_posterior(fit, family, parameter_uncertainty=False, n_samples=50).mean, float)


def _outside(value, rng) -> bool:
    if rng is None:
        return False
    return bool(value < rng[0] * (1 - _REL_TOL) or value > rng[1] * (1 + _REL_TOL))


def _one_budget(C, target, kind, family, coef, const, weight, floor, alpha, draws, size_box, tokens_box,
                data_size, data_tokens, level, method) -> dict:
    s = float(budget_log(C))
    lo, hi = budget_segment(s, size_box, tokens_box)
    row = dict.fromkeys(ALLOCATION_COLUMNS, np.nan)
    row.update(target=target, kind=kind, family=family or "", flops=float(C), level=level, note="")
    if lo > hi + 1e-12:
        c_lo, c_hi = FLOPS_UNIT * size_box[0] * tokens_box[0], FLOPS_UNIT * size_box[1] * tokens_box[1]
        row.update(feasible=False, extrapolated=False, position="none",
                   note=f"the budget line does not meet the box (sizes {size_box[0]:g}-{size_box[1]:g} B, tokens "
                        f"{tokens_box[0]:g}-{tokens_box[1]:g} T); budgets in it run from {c_lo:.3g} to {c_hi:.3g} "
                        "FLOPs: widen the box or change the budget")
        return row
    hi = max(hi, lo)
    if method == "closed":
        u, _ = line_optimum(coef, s, lo, hi)
        u = float(u)
    else:
        u = _numeric_optimum(lambda x: float(_value(coef, const, weight, floor, x, s, alpha, kind)), lo, hi)
    N, D = math.exp(u), math.exp(s - u)
    position = _position(u, s, lo, hi, size_box, tokens_box)
    out_n, out_d = _outside(N, data_size), _outside(D, data_tokens)
    notes = []
    if out_n or out_d:
        what = " and ".join(w for w, o in (("size", out_n), ("tokens", out_d)) if o)
        notes.append(f"extrapolation: the optimum's {what} is outside the data's range")
    if data_size is None:
        notes.append("the fit carries no data: extrapolation not checked")
    if position != "interior":
        notes.append(f"optimum on the box edge ({position})")
    row.update(size=N, tokens=D, tokens_per_param=1000.0 * D / N,
               value=float(_value(coef, const, weight, floor, u, s, alpha, kind)), position=position,
               extrapolated=out_n or out_d, feasible=True, note="; ".join(notes))
    if draws is not None:
        d_coef, d_const, d_weight, _ = draws
        us, interior = line_optimum(d_coef, s, lo, hi)
        vals = _value(d_coef, d_const, d_weight, floor, us, s, alpha, kind)
        q = ((1.0 - level) / 2.0, (1.0 + level) / 2.0)
        lu = np.quantile(us, q)
        lr = np.quantile(s - 2.0 * us, q)  # log(D/N) = s − 2u (decreasing in u)
        row.update(size_lower=math.exp(lu[0]), size_upper=math.exp(lu[1]),
                   tokens_lower=math.exp(s - lu[1]), tokens_upper=math.exp(s - lu[0]),
                   tokens_per_param_lower=1000.0 * math.exp(lr[0]), tokens_per_param_upper=1000.0 * math.exp(lr[1]),
                   value_lower=float(np.quantile(vals, q[0])), value_upper=float(np.quantile(vals, q[1])),
                   p_interior=float(np.mean(interior)))
    return row


def format_allocation(table: pd.DataFrame, digits: int = 3) -> str:
    """A readable text table: one block per target, the optimum with its interval."""
    lines = []
    for (target, kind, family), block in table.groupby(["target", "kind", "family"], sort=False):
        pct = f"{100 * float(block['level'].iloc[0]):g}"
        head = f"{kind} {target}" + (f", family {family}" if family else "")
        lines.append(f"{head}: optimum per budget ({pct}% intervals from the parameters' covariance)")
        show = pd.DataFrame({
            "FLOPs": block["flops"].map(lambda v: f"{v:.3g}"),
            "N* (B)": _with_interval(block, "size", digits),
            "D* (T)": _with_interval(block, "tokens", digits),
            "D*/N*": _with_interval(block, "tokens_per_param", digits),
            "value" if kind == "skill" else "score": _with_interval(block, "value", digits),
            "position": block["position"],
            "extrap.": block["extrapolated"].map(lambda v: "yes" if v is True else ""),
        })
        lines.append(show.to_string(index=False))
        for note in block.loc[~block["feasible"].astype(bool), "note"].unique():
            lines.append(f"  note: {note}")
        lines.append("")
    return "\n".join(lines).rstrip()


def _with_interval(block, col, digits) -> pd.Series:
    def fmt(r):
        v = r[col]
        if not np.isfinite(v):
            return "-"
        lo, hi = r.get(f"{col}_lower", np.nan), r.get(f"{col}_upper", np.nan)
        if np.isfinite(lo) and np.isfinite(hi):
            return f"{v:.{digits}g} [{lo:.{digits}g}, {hi:.{digits}g}]"
        return f"{v:.{digits}g}"

    return block.apply(fmt, axis=1)
