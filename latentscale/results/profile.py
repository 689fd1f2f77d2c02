"""Profile-likelihood confidence intervals (lme4's ``confint(method = "profile")``).

For a parameter ψ = g(θ_k), a monotone function of one coordinate of the unconstrained vector θ,
the profile log-likelihood is ℓ_p(t) = max ℓ(θ) over θ with θ_k = t, and the interval at level
1 − α is {g(t) : 2(ℓ̂ − ℓ_p(t)) ≤ χ²₁(1 − α)}. It does not assume that ℓ is quadratic in θ_k,
and it is the same whatever the coordinates (invariant under reparametrization): the interval
to read for weakly identified parameters (a ceiling share far above the data, a link power),
whose Wald intervals under-cover in simulation (docs/inference.md).

Each end is found on the signed root r(t) = sign(t − θ̂_k)·√(2(ℓ̂ − ℓ_p(t))) (lme4's ζ), which
is linear in t where ℓ is quadratic: the search starts at the Wald end, interpolates r to ±z
through the points it has (secant steps outwards; inside a bracket interpolation, or a halving of
the bracket when two interpolations in a row land on the same side, as regula falsi stalls at a
flat end) and stops when |r| is within ``tol`` of z. Each ℓ_p(t) is the estimator's projected
quasi-Newton maximization (:func:`~latentscale.estimation.optimize.quasi_newton`) with θ_k held
by its box (both bounds at t), on the fit's own likelihood (its rows, its rule), started from the
nearest profile point shifted along the regression of θ on θ_k that the fit's covariance gives.
An end beyond the optimizer's box (the profile never falls by χ²₁(1 − α)/2 inside it) is
reported as the box's value with status ``"bound"``: the interval is open on that side. The ends
are searched on the evaluation threads (:func:`~latentscale.config.thread_map`), each on its own
fork of the likelihood with its mode searches starting from θ̂'s modes, so the intervals do not
depend on the order or the number of threads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from latentscale.config import thread_map
from latentscale.errors import InputError
from latentscale.estimation.optimize import convergence_diagnostics, quasi_newton

#: Nats by which a profile point may exceed ℓ̂ (rounding, mode-search tolerance) before the fit
#: is declared not to be at the maximum of its likelihood.
ABOVE_OPTIMUM_TOL = 1e-3


class NotAtOptimumError(InputError):
    """A profile point is higher than the fit's optimum: the fit did not reach the maximum."""


def _coordinate_map(layout, theta: np.ndarray) -> np.ndarray:
    """For each natural parameter, the one coordinate of θ it depends on (−1 when several)."""
    base = np.asarray(layout.natural(theta), float)
    P = theta.size
    depends = np.zeros((base.size, P), dtype=bool)
    for k in range(P):
        step = np.array(theta, float)
        step[k] += 1e-4 * max(1.0, abs(theta[k]))
        depends[:, k] = np.asarray(layout.natural(step), float) != base
    out = np.full(base.size, -1)
    single = depends.sum(axis=1) == 1
    out[single] = np.argmax(depends[single], axis=1)
    return out


def resolve_parameters(fit, params: str | Sequence[str] | None) -> list[str]:
    """Parameter names from names and block labels (``"link_power"`` is every link power); all
    parameters when None. Unknown names are an error that lists the blocks."""
    names = fit.param_names
    if params is None:
        return list(names)
    if isinstance(params, str):
        params = [params]
    labels = [lab for lab, _, _ in fit.layout.labels]
    out: list[str] = []
    for p in params:
        if p in names:
            chosen = [p]
        else:
            chosen = [n for n, lab in zip(names, labels) if lab == p]
        if not chosen:
            blocks = ", ".join(dict.fromkeys(labels))
            raise InputError(f"{p!r} is neither a parameter nor a block of this fit; its blocks are {blocks} "
                             f"(a parameter is named like {names[0]!r}; `latentscale show` lists them)")
        out += [c for c in chosen if c not in out]
    return out


class _Profiler:
    """The profile of one fit: its likelihood, optimum, curvature and box."""

    def __init__(self, fit, gtol: float, maxiter: int):
        self.fit = fit
        self.ml = fit.loglikelihood()
        self.theta = np.asarray(fit.theta, float)
        self.lo, self.hi = fit.layout.lower, fit.layout.upper
        self.gtol, self.maxiter = gtol, maxiter
        self.ml.reset()  # θ̂'s modes searched from 0, whatever the fit's likelihood evaluated before
        self.ll_hat = float(self.ml.loglike(self.theta))
        H = fit.hessian
        if H is None or not np.all(np.isfinite(H)):
            H = self.ml.hessian(self.theta, "fd")
        self.H = np.asarray(H, float)
        self.modes = self.ml.warm_modes()  # converged at θ̂: where every end's mode searches start
        try:
            self.cov = np.linalg.inv(-self.H)
            if not np.all(np.isfinite(self.cov)) or np.any(np.diag(self.cov) <= 0):
                self.cov = None
        except np.linalg.LinAlgError:
            self.cov = None

    def direction(self, k: int) -> tuple[np.ndarray, float]:
        """The covariance's regression of θ on θ_k (how the others move with it) and the SE of θ_k."""
        d = np.zeros_like(self.theta)
        d[k] = 1.0
        if self.cov is None:
            return d, 0.5 * max(1.0, abs(self.theta[k]))
        return self.cov[:, k] / self.cov[k, k], float(np.sqrt(self.cov[k, k]))

    def maximize_at(self, ml, k: int, t: float, start: np.ndarray) -> tuple[np.ndarray, float, bool]:
        """ℓ_p(t): the maximum of ℓ (``ml``, a fork of the fit's likelihood) over θ with θ_k = t, from
        ``start``; with its convergence."""
        lo, hi = self.lo.copy(), self.hi.copy()
        lo[k] = hi[k] = t
        start = np.clip(start, lo, hi)
        theta, B, _ = quasi_newton(ml, start, self.H, lo, hi, self.gtol, self.maxiter)
        value, grad = ml.loglike_and_score(theta)
        diag = convergence_diagnostics(theta, grad, -B, lo, hi, self.fit.param_names)
        return theta, float(value), bool(diag["converged"])

    def end(self, k: int, side: int, z: float, tol: float, max_evals: int):
        """One end of the interval in θ_k: (t, status, profile fits, all converged, [(t, r)] of its points).
        On its own fork of the likelihood, its mode searches starting from θ̂'s modes: the ends are
        independent of each other (and run on the evaluation threads)."""
        ml = self.ml.fork()
        ml.set_warm_modes(self.modes)
        d, se = self.direction(k)
        t_hat = self.theta[k]
        lo_k, hi_k = self.lo[k], self.hi[k]
        edge = hi_k if side > 0 else lo_k
        points = [(t_hat, 0.0, self.theta)]  # (t, r, θ) on this side, in the order found
        t = t_hat + side * z * se
        converged, fits, status = True, 0, "not converged"
        for _ in range(max_evals):
            t = float(np.clip(t, lo_k, hi_k))
            near = min(points, key=lambda p: abs(p[0] - t))
            theta, value, ok = self.maximize_at(ml, k, t, near[2] + d * (t - near[0]))
            fits += 1
            if self.ll_hat - value > 0.5 * z * z:
                # beyond the threshold, where this point decides the end: the shifted start can land in a
                # poor region when the covariance's regression is steep (a flat direction), so the point
                # is also maximized from the nearest point inside with only θ_k moved, the better kept
                inner = min((p for p in points if abs(p[1]) < z), key=lambda p: abs(p[0] - t))
                other = self.maximize_at(ml, k, t, inner[2])
                fits += 1
                if other[1] > value:
                    theta, value, ok = other
            converged &= ok
            drop = self.ll_hat - value
            if drop < -ABOVE_OPTIMUM_TOL:
                raise NotAtOptimumError(
                    f"profiling {self.fit.param_names[k]} found a log-likelihood {-drop:.4f} nats above the fit's "
                    f"({value:.4f} against {self.ll_hat:.4f}): the fit is not at the maximum; refit starting from "
                    "this fit (start_params=fit) or with more starts (n_starts)")
            r = side * np.sqrt(2.0 * max(drop, 0.0))
            points.append((t, r, theta))
            if abs(r) < z and t == edge:
                status = "bound"
                break
            # |r| within tol of z, or |r| so steep here that the bracket has narrowed to rounding
            if abs(abs(r) - z) < tol or self._bracket_width(points, z) < 1e-6 * max(1.0, abs(t)):
                status = "ok"
                break
            t = self._next(points, side, z, t_hat, edge)
        else:  # out of points: the farthest one inside
            t = max((p for p in points if abs(p[1]) <= z), key=lambda p: side * p[0])[0]
        return t, status, fits, converged, [p[:2] for p in points[1:]]

    @staticmethod
    def _bracket_width(points, z) -> float:
        """The distance in t between the nearest points on either side of the threshold (inf without both)."""
        below = [p[0] for p in points if abs(p[1]) < z]
        above = [p[0] for p in points if abs(p[1]) > z]
        if not above:
            return float("inf")
        return min(abs(u - v) for u in below for v in above)

    @staticmethod
    def _next(points, side, z, t_hat, edge) -> float:
        """The next t: interpolation of r to side·z inside a bracket, else a secant step outwards
        (at most three times as far from θ̂_k as the farthest point so far)."""
        target = side * z
        below = [p for p in points if abs(p[1]) < z]
        above = [p for p in points if abs(p[1]) > z]
        if above:
            a = max(below, key=lambda p: side * p[0])
            b = min(above, key=lambda p: side * p[0])
            earlier = points[:-1]
            bracketed_before = any(abs(p[1]) > z for p in earlier) and any(abs(p[1]) < z for p in earlier)
            same_side = (abs(points[-1][1]) < z) == (abs(points[-2][1]) < z)
            if b[1] == a[1] or (bracketed_before and same_side):
                # the interpolation stalls at a flat end of the bracket (regula falsi): halve it instead
                return 0.5 * (a[0] + b[0])
            t = a[0] + (target - a[1]) * (b[0] - a[0]) / (b[1] - a[1])
            lo_t, hi_t = sorted((a[0], b[0]))
            margin = 0.05 * (hi_t - lo_t)  # keep inside the bracket (a flat stretch stalls the secant)
            return float(np.clip(t, lo_t + margin, hi_t - margin))
        a, b = sorted(points, key=lambda p: side * p[0])[-2:]
        far = b[0]
        if b[1] != a[1] and side * (b[1] - a[1]) > 0:
            t = a[0] + (target - a[1]) * (b[0] - a[0]) / (b[1] - a[1])
        else:
            t = far + 2.0 * (far - t_hat)
        limit = t_hat + 3.0 * (far - t_hat)
        t = min(t, limit) if side > 0 else max(t, limit)
        if side * (t - far) <= 0:
            t = far + 0.5 * (far - t_hat)
        return float(min(t, edge) if side > 0 else max(t, edge))


def profile_intervals(
    fit,
    params: str | Sequence[str] | None = None,
    level: float = 0.95,
    *,
    tol: float = 0.01,
    max_evals: int = 20,
    gtol: float = 1e-6,
    maxiter: int = 200,
    progress: Callable[[str], None] | None = None,
    with_traces: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Profile-likelihood intervals of ``params`` (names or block labels; all when None) at ``level``.

    Returns one row per parameter: ``estimate``, ``lower``, ``upper`` (natural scale),
    ``lower_status`` / ``upper_status`` (``"ok"``; ``"bound"``: the profile stays above the
    threshold up to the optimizer's box, so the interval is open on that side and the box's value
    is shown; ``"not converged"``: the search ran out of ``max_evals`` points),
    ``profile_fits`` (how many constrained maximizations, the second starts of points beyond the
    threshold included), ``converged`` (all of them converged),
    and the Wald interval of the same level (``wald_lower``, ``wald_upper``) beside it. A parameter
    that depends on several coordinates (a skill correlation at K ≥ 3) is an error. Raises
    :class:`NotAtOptimumError` when a profile point is above the fit's optimum. With
    ``with_traces``, also the profile points (``parameter``, ``value`` on the natural scale, ``zeta``:
    the signed root, negative below the estimate; lme4's ζ), as a second table.
    """
    from scipy.special import ndtri

    if not 0 < level < 1:
        raise InputError(f"level must be in (0, 1), got {level}")
    if tol <= 0 or int(max_evals) != max_evals or max_evals < 2:
        raise InputError(f"need tol > 0 and an integer max_evals >= 2, got tol={tol}, max_evals={max_evals}")
    if fit.data is None:
        raise InputError("profile intervals refit the model on its rows, and this fit carries none "
                         "(saved by an older latentscale?); refit it")
    names = resolve_parameters(fit, params)
    lay = fit.layout
    theta = np.asarray(fit.theta, float)
    coord = _coordinate_map(lay, theta)
    index = {n: i for i, n in enumerate(lay.names)}
    several = [n for n in names if coord[index[n]] < 0]
    if several:
        raise InputError(f"{', '.join(several)}: each depends on several coordinates of the fit (a skill "
                         "correlation at K >= 3), so it has no one-coordinate profile; use the Wald interval")
    z = float(ndtri(0.5 + level / 2.0))
    prof = _Profiler(fit, gtol, maxiter)
    natural = np.asarray(lay.natural(theta), float)
    wald = fit.conf_int(1.0 - level) if fit.hessian is not None else None
    rows, traces = [], []

    def one_end(task):  # the two ends of every parameter, on the evaluation threads
        i, name, side = task
        if progress is not None and side < 0:
            progress(f"profile {i + 1}/{len(names)}: {name}")
        return prof.end(int(coord[index[name]]), side, z, tol, max_evals)

    tasks = [(i, name, side) for i, name in enumerate(names) for side in (-1, 1)]
    found = dict(zip([(name, side) for _, name, side in tasks], thread_map(one_end, tasks)))
    for name in names:
        j = index[name]
        k = int(coord[j])
        ends = {side: found[name, side] for side in (-1, 1)}

        def value_at(t: float) -> float:
            th = theta.copy()
            th[k] = t
            return float(np.asarray(lay.natural(th), float)[j])

        increasing = value_at(theta[k] + 1e-3) >= natural[j]
        low_side, high_side = (-1, 1) if increasing else (1, -1)
        rows.append({
            "parameter": name, "estimate": natural[j],
            "lower": value_at(ends[low_side][0]), "upper": value_at(ends[high_side][0]),
            "lower_status": ends[low_side][1], "upper_status": ends[high_side][1],
            "profile_fits": ends[-1][2] + ends[1][2], "converged": ends[-1][3] and ends[1][3],
            "wald_lower": np.nan if wald is None else float(wald.loc[name, "lower"]),
            "wald_upper": np.nan if wald is None else float(wald.loc[name, "upper"]),
        })
        sign = 1.0 if increasing else -1.0
        traces += [{"parameter": name, "value": value_at(t), "zeta": sign * r}
                   for side in (-1, 1) for t, r in ends[side][4]]
        traces.append({"parameter": name, "value": natural[j], "zeta": 0.0})
    table = pd.DataFrame(rows).set_index("parameter")
    if not with_traces:
        return table
    trace = pd.DataFrame(traces, columns=["parameter", "value", "zeta"])
    trace = trace.sort_values(["parameter", "value"], kind="stable").reset_index(drop=True)
    return table, trace


def plot_profiles(table: pd.DataFrame, traces: pd.DataFrame, level: float, path=None):
    """ζ against each parameter (lme4's profile plot): the profile points, the ±z lines of ``level``,
    the profile interval (solid) and the Wald interval (dashed). Saved atomically to ``path``
    (returned), or the figure when no path is given."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from scipy.special import ndtri

    z = float(ndtri(0.5 + level / 2.0))
    n = len(table)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False)
    for ax, (name, row) in zip(axes.flat, table.iterrows()):
        pts = traces[traces["parameter"] == name]
        keep = pts["zeta"].abs() <= 2.5 * z  # far points only stretch the axis
        ax.plot(pts.loc[keep, "value"], pts.loc[keep, "zeta"], "o-", ms=3, color="tab:blue")
        for y in (-z, z):
            ax.axhline(y, color="0.5", lw=0.8)
        for x, style in ((row["lower"], "-"), (row["upper"], "-"), (row["wald_lower"], "--"), (row["wald_upper"], "--")):
            if np.isfinite(x):
                ax.axvline(x, color="tab:red" if style == "-" else "0.3", ls=style, lw=0.9)
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("ζ")
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(f"profile ζ, {100 * level:g}% profile (red) and Wald (dashed) intervals", fontsize=10)
    fig.tight_layout()
    if path is None:
        return fig
    from pathlib import Path

    from latentscale.results.io import atomic_write

    atomic_write(Path(path), fig.savefig)
    plt.close(fig)
    return Path(path)
