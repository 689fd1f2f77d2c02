"""Simulate score tables from the latent-variable scaling model (SPEC §2), for tests and studies.

The generative model is the one the likelihood assumes:

    x_i = standardized (log N, log D, log N · log D)       (over the simulated sample)
    α_f ~ N_K(0, Σ),  θ_i = Bᵀ x_i + α_f(i)
    μ_ij = c_j + (1 − c_j) · sigmoid(λ_jᵀ θ_i + b_j)
    y_ij ~ Beta(φ_j μ_ij, φ_j (1 − μ_ij))

with families, sizes, token counts and missingness drawn to look like the real data
(``lvf`` tables of arXiv:2512.06553, union of the v1 and v2 leaderboards: 286 models in 170
families). Everything is vectorized numpy; 100,000 families take a few seconds.

Choices, measured on that union (``/work/shared/data/lvf/df_full_v1.csv`` ∪ ``df_full_v2.csv``):

- family sizes: the empirical distribution :data:`REAL_FAMILY_SIZES` (66 % singletons,
  mean 1.68 models per family, at most 8);
- sizes: log-uniform on [0.1, 180] billion parameters, drawn per model;
- tokens: log-uniform on [0.2, 15] trillion per family; a family shares its token count with
  probability :data:`SHARED_TOKENS_PROB` (in the real data 38 of 58 multi-model families do),
  otherwise each model gets the family's count times a log-normal factor (sd 0.4), clipped
  into the range;
- ``missing="real"``: benchmarks split into two blocks like leaderboard v1 / v2 (first
  ``ceil(J/2)`` benchmarks, the rest); each family draws a pattern (both blocks 34 %, first
  only 25 %, second only 41 %, as in the real union, where 1/3 of the cells are missing) and
  each model keeps its family's pattern with probability 0.75, else draws its own.

No row is ever left without an observed score and no benchmark without an observed model
(a cell is restored where MCAR missingness would empty one).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from latentscale.errors import InputError
from latentscale.model.covariates import CovariateScaler
from latentscale.model.observation import precisions
from latentscale.model.params import CORE_BLOCKS, layout, pack, unpack
from latentscale.model.spec import DEFAULT_CLIP, ModelSpec

#: Family-size distribution of the real data (lvf v1 ∪ v2: 170 families, 286 models).
REAL_FAMILY_SIZES: dict[int, float] = {
    1: 0.659, 2: 0.182, 3: 0.082, 4: 0.035, 5: 0.012, 6: 0.006, 7: 0.012, 8: 0.012,
}
SIZE_RANGE = (0.1, 180.0)  # billions of parameters
TOKEN_RANGE = (0.2, 15.0)  # trillions of tokens
SHARED_TOKENS_PROB = 0.65
TOKEN_JITTER_SD = 0.4
#: Missingness patterns of the real data: (first block observed, second block observed) → probability.
REAL_PATTERNS: dict[tuple[bool, bool], float] = {(True, True): 0.343, (True, False): 0.245, (False, True): 0.412}
REAL_PATTERN_KEEP = 0.75


def default_floors(n_benchmarks: int) -> np.ndarray:
    """Floors alternating 0, 0.25, 0, 0.25, … (free-form and four-choice benchmarks)."""
    return np.where(np.arange(n_benchmarks) % 2 == 0, 0.0, 0.25)


#: How :func:`random_params` draws the true values of the variants' blocks that take a range: the law and
#: the default range of each entry.
TRUTH_LAWS = {
    "residual_sd": ("uniform", (0.2, 0.6)),
    "slope_sd": ("uniform", (0.2, 0.5)),
    "ceiling": ("uniform", (0.7, 0.95)),
    "link_power": ("log-uniform", (0.6, 2.5)),
}


def check_truth_ranges(ranges, drawn: tuple[str, ...] | None = None) -> dict[str, tuple[float, float]]:
    """``ranges`` ({block: (low, high)}) checked against :data:`TRUTH_LAWS` and, when given, the
    extra blocks ``drawn``; errors say what a range must be."""
    out = {}
    for name, bounds in dict(ranges or {}).items():
        if name not in TRUTH_LAWS:
            raise InputError(f"the true values of {name!r} take no range; ranges are defined for "
                             f"{', '.join(TRUTH_LAWS)}")
        if drawn is not None and name not in drawn:
            raise InputError(f"a range for {name!r}, but the model drawn from has no such block (its extra "
                             f"blocks: {', '.join(drawn) or 'none'}): choose a variant that has it")
        try:
            low, high = (float(v) for v in bounds)
        except (TypeError, ValueError):
            raise InputError(f"the range of {name!r} must be two numbers (low, high), got {bounds!r}") from None
        if not (np.isfinite(low) and np.isfinite(high) and low < high):
            raise InputError(f"the range of {name!r} must have low < high (finite), got {low:g}, {high:g}")
        if name == "ceiling" and not (0 < low and high < 1):
            raise InputError(f"ceiling shares lie in (0, 1): the range {low:g}, {high:g} must too")
        if low <= 0:
            raise InputError(f"{name} is positive: the range {low:g}, {high:g} must start above 0")
        out[name] = (low, high)
    return out


def random_params(k: int, n_benchmarks: int, seed: int = 0, p: int = 3, extra_blocks: tuple[str, ...] = (),
                  ranges: dict[str, tuple[float, float]] | None = None) -> dict:
    """Plausible true parameters (constrained form, anchors = the first ``k`` benchmarks).

    Anchor loadings ~ U(0.5, 1.5) on their own skill, other loadings ~ N(0, 0.5²),
    intercepts ~ N(0, 1), precisions log-uniform on [20, 200], B ~ N(0.5, 0.3²) entrywise,
    and a correlation matrix with moderate correlations (all |ρ| ≤ 0.6). ``extra_blocks``
    (drawn from a stream of their own, so the core draws do not change): ``precision_slope``
    γ ~ N(0, 0.3²) entrywise, ``residual_sd`` τ ~ U(0.2, 0.6), ``slope_sd`` ω ~ U(0.2, 0.5),
    ``ceiling`` κ ~ U(0.7, 0.95), ``link_power`` γ log-uniform on [0.6, 2.5] (:data:`TRUTH_LAWS`).
    ``ranges`` ({block: (low, high)}) replaces those ranges, the law kept (the same uniform
    numbers, so a range moves each true value monotonically).
    """
    ranges = check_truth_ranges(ranges, tuple(extra_blocks))
    core = _core_params(k, n_benchmarks, seed, p)
    rng = np.random.default_rng([int(seed), 2])
    for name in extra_blocks:
        if name == "precision_slope":
            core[name] = rng.normal(0.0, 0.3, size=(p, int(n_benchmarks)))
        elif name in TRUTH_LAWS:
            law, default = TRUTH_LAWS[name]
            low, high = ranges.get(name, default)
            if law == "log-uniform":
                core[name] = np.exp(rng.uniform(np.log(low), np.log(high), size=int(n_benchmarks)))
            else:
                core[name] = rng.uniform(low, high, size=int(n_benchmarks))
        else:
            raise InputError(f"no random values are defined for the parameter block {name!r}; pass params")
    return core


def with_family_effects(params: dict, q: int, seed: int = 0) -> dict:
    """``params`` (3 covariate rows) with the effects Γ of q family covariates added as further rows
    of B (and zero rows of γ: a family's kind does not move the precision). Each entry of Γ is
    ±U(0.2, 0.6) with a random sign: a kind shifts a skill by 0.2–0.6 family-effect SDs per SD of
    the standardized covariate, the size of the sloth table's Instruct estimates (≈ 0.25)."""
    if not q:
        return params
    K = params["B"].shape[1]
    rng = np.random.default_rng([int(seed), 4])
    gamma = rng.choice([-1.0, 1.0], size=(q, K)) * rng.uniform(0.2, 0.6, size=(q, K))
    out = {**params, "B": np.vstack([params["B"], gamma])}
    if "precision_slope" in out:
        out["precision_slope"] = np.vstack([out["precision_slope"], np.zeros((q, out["precision_slope"].shape[1]))])
    return out


def _core_params(k: int, n_benchmarks: int, seed: int, p: int) -> dict:
    K, J = int(k), int(n_benchmarks)
    if not 1 <= K <= J:
        raise InputError(f"need 1 <= k <= n_benchmarks, got k={K}, n_benchmarks={J}")
    rng = np.random.default_rng(seed)
    loadings = rng.normal(0.0, 0.5, size=(K, J))
    loadings[:, :K] = 0.0
    loadings[np.arange(K), np.arange(K)] = rng.uniform(0.5, 1.5, size=K)
    return {
        "B": rng.normal(0.5, 0.3, size=(p, K)),
        "loadings": loadings,
        "intercepts": rng.normal(0.0, 1.0, size=J),
        "precision": np.exp(rng.uniform(np.log(20.0), np.log(200.0), size=J)),
        "corr": np.linalg.cholesky(_random_correlation(K, rng)),
    }


def _random_correlation(K: int, rng: np.random.Generator, max_abs: float = 0.6) -> np.ndarray:
    """A random correlation matrix from normalized rows of a unit-diagonal lower-triangular
    matrix with N(0, 0.5²) entries; redrawn until every |ρ| ≤ ``max_abs``."""
    if K == 1:
        return np.ones((1, 1))
    for _ in range(1000):
        M = np.eye(K)
        M[np.tril_indices(K, -1)] = rng.normal(0.0, 0.5, size=K * (K - 1) // 2)
        L = M / np.linalg.norm(M, axis=1, keepdims=True)
        C = L @ L.T
        if np.max(np.abs(C[np.tril_indices(K, -1)])) <= max_abs:
            np.fill_diagonal(C, 1.0)
            return C
    return np.eye(K)  # pragma: no cover - practically unreachable


def family_size_draws(family_sizes, n_families: int, rng: np.random.Generator) -> np.ndarray:
    """Number of models in each family: "real" (empirical law), an int (all equal), a mapping
    {size: probability}, or an array of n_families sizes."""
    if isinstance(family_sizes, str):
        if family_sizes != "real":
            raise InputError(f"family_sizes must be 'real', an int, a mapping or an array, got {family_sizes!r}")
        family_sizes = REAL_FAMILY_SIZES
    if isinstance(family_sizes, Mapping):
        sizes = np.array(list(family_sizes.keys()), dtype=int)
        prob = np.array(list(family_sizes.values()), dtype=float)
        if np.any(sizes < 1) or np.any(prob < 0) or prob.sum() <= 0:
            raise InputError("family size distribution needs sizes >= 1 and non-negative probabilities")
        return rng.choice(sizes, size=n_families, p=prob / prob.sum())
    if np.ndim(family_sizes) == 0:
        m = int(family_sizes)
        if m < 1:
            raise InputError(f"family size must be at least 1, got {m}")
        return np.full(n_families, m, dtype=int)
    arr = np.asarray(family_sizes, dtype=int)
    if arr.shape != (n_families,) or np.any(arr < 1):
        raise InputError(f"family_sizes as an array needs {n_families} entries, each >= 1")
    return arr


def _log_uniform(rng, low, high, size):
    return np.exp(rng.uniform(np.log(low), np.log(high), size=size))


def _resolve_floors(floors, J: int) -> np.ndarray:
    if floors is None:
        return default_floors(J)
    if isinstance(floors, Mapping):
        out = default_floors(J)
        for name, c in floors.items():
            j = int(str(name).lstrip("b")) - 1
            out[j] = float(c)
        return out
    arr = np.broadcast_to(np.asarray(floors, dtype=float), (J,)).copy()
    return arr


def _missing_mask(missing, fam_of_model: np.ndarray, n_families: int, J: int, rng) -> np.ndarray:
    """(n_models, J) boolean mask of missing cells; every row keeps a cell, every column too."""
    n = fam_of_model.shape[0]
    if isinstance(missing, str):
        if missing != "real":
            raise InputError(f"missing must be a fraction in [0, 1) or 'real', got {missing!r}")
        patterns = np.array(list(REAL_PATTERNS.keys()), dtype=bool)  # (3, 2) observed blocks
        prob = np.array(list(REAL_PATTERNS.values()))
        fam_pat = rng.choice(len(prob), size=n_families, p=prob / prob.sum())
        own_pat = rng.choice(len(prob), size=n, p=prob / prob.sum())
        pat = np.where(rng.random(n) < REAL_PATTERN_KEEP, fam_pat[fam_of_model], own_pat)
        block = (np.arange(J) >= math.ceil(J / 2)).astype(int)  # 0: first block, 1: second
        mask = ~patterns[pat][:, block]
    else:
        frac = float(missing)
        if not 0.0 <= frac < 1.0:
            raise InputError(f"missing fraction must lie in [0, 1), got {frac}")
        mask = rng.random((n, J)) < frac
    empty = np.flatnonzero(mask.all(axis=1))
    if empty.size:
        mask[empty, rng.integers(0, J, size=empty.size)] = False
    for j in np.flatnonzero(mask.all(axis=0)):
        mask[rng.integers(0, n), j] = False
    return mask


def _beta_draws(skills: np.ndarray, params: dict, c: np.ndarray, logit_clip: float | None,
                rng: np.random.Generator, X: np.ndarray, residual: np.ndarray | None = None) -> np.ndarray:
    """Scores y ~ Beta(φμ, φ(1 − μ)) for skills θ (n, K) of models with covariates X (n, p), and
    their families' residuals (n, J) when the model has them: the model's observation step."""
    eta = skills @ params["loadings"] + params["intercepts"]
    if residual is not None:
        eta = eta + residual
    if logit_clip is not None:
        eta = np.clip(eta, -logit_clip, logit_clip)
    phi = precisions(params, X)
    kappa = params.get("ceiling", 1.0)
    gamma = params.get("link_power", 1.0)
    log_s = -np.logaddexp(0.0, -(eta + np.log(gamma)))  # log sigmoid(η + log γ); the link's g = that^γ
    a = np.maximum(phi * (c + (1.0 - c) * kappa * np.exp(gamma * log_s)), 1e-300)
    b = np.maximum(phi * (1.0 - c) * ((1.0 - kappa) - kappa * np.expm1(gamma * log_s)), 1e-300)
    return rng.beta(a, b)


def simulate_scores(fit, data, rng: np.random.Generator, alpha=None):
    """Scores drawn from a fitted model for the rows of ``data`` (its observed cells only): family
    effects from N(0, Σ̂), or ``alpha`` (a frame of families × skills, e.g. ``fit.ranef()``), and
    residuals (if the model has them) from N(0, τ̂²); clipped as the fit's scores. Returns a :class:`~latentscale.data.ScoreData` of the same shape."""
    from dataclasses import replace

    spec = fit.spec
    p = fit.constrained
    frame = data.frame
    fams = frame["family"].astype(str).to_numpy()
    names, codes = np.unique(fams, return_inverse=True)
    if alpha is None:
        a = rng.standard_normal((len(names), spec.K)) @ p["corr"].T
    else:
        a = alpha.reindex(names).to_numpy(float)
    X = fit.scaler.transform_frame(frame)
    u = _draw_residuals(p, spec, len(names), rng)
    y = _beta_draws(X @ p["B"] + a[codes], p, np.asarray(spec.floors), spec.logit_clip, rng, X,
                    model_residuals(u, codes, X, spec))
    if spec.clip is not None:
        y = np.clip(y, *spec.clip)
    out = frame.copy()
    observed = frame[list(spec.benchmarks)].notna().to_numpy()
    out[list(spec.benchmarks)] = np.where(observed, y, np.nan)
    return replace(data, frame=out, name=f"{data.name} (simulated)", warnings=())


def simulate(
    params=None,
    *,
    k: int,
    n_benchmarks: int,
    n_families: int,
    family_sizes="real",
    missing=0.0,
    floors=None,
    seed: int = 0,
    clip: tuple[float, float] | None = None,
    design_seed: int | None = None,
    logit_clip: float | None = None,
    hetero_precision: bool = False,
    residual: bool = False,
    residual_slope: bool = False,
    ceiling: bool = False,
    family_covariates: Sequence[str] = (),
    link_power: bool = False,
):
    """Draw a score table from the model.

    Parameters
    ----------
    params : constrained true parameters (the dict :func:`~latentscale.model.params.unpack`
        returns, anchors = the first ``k`` benchmarks), or None for :func:`random_params`
        with the same ``seed``.
    k, n_benchmarks, n_families : K, J and the number of families F.
    family_sizes : "real" (the empirical law of the real data), an int (every family that
        size), a mapping {size: probability} or an array of F sizes.
    missing : fraction of cells missing completely at random, or "real" (whole benchmark
        blocks missing per model, as in the v1/v2 leaderboard union).
    floors : guessing floors: None (alternating 0 and 0.25), a scalar, J values, or a mapping
        {"b3": 0.25, ...} overriding the default.
    seed : seed of the family effects and scores (and of the design unless ``design_seed``).
    design_seed : seed of the design (family sizes, model sizes, tokens, which cells are
        missing); fixing it while ``seed`` varies redraws the scores on one fixed design, so
        every replication has the same shape (compiled once) and the same covariates.
    logit_clip : draw from the model with the linear predictor clamped to ±logit_clip (the
        reference code's variant; the returned spec carries it).
    hetero_precision : draw from the model whose precision depends on the covariates
        (``params`` then needs ``precision_slope``; the returned spec carries the option).
    residual : draw from the model with family × benchmark residuals u_fj ~ N(0, τ_j²) (``params``
        then needs ``residual_sd``); the drawn residuals are returned as ``"residual"`` (F, J).
    residual_slope : with ``residual``, family × benchmark random slopes v_fj ~ N(0, ω_j²) in the first
        standardized covariate (``params["slope_sd"]``), returned as ``"slope"`` (F, J).
    ceiling : draw from the model with a ceiling share κ_j per benchmark (``params["ceiling"]``).
    link_power : draw from the model with the power link μ = c + (1 − c)·κ·sigmoid(η + log γ_j)^γ_j
        (``params["link_power"]``).
    family_covariates : names of binary family covariates (each family a kind with probability
        0.4, like the sloth table's instruction-tuned families), columns of the returned data in
        the mean of the family effect; ``params["B"]`` then has 3 + q rows (the last q: Γ for the
        standardized covariates). Random parameters draw Γ as :func:`with_family_effects` says.
    clip : None: scores stay as drawn (in [0, 1]) and the returned spec carries the package's
        default clip (0.001, 0.999), the one :func:`latentscale.fit` uses; (low, high): scores
        are clipped into it and the spec carries it.

    Returns
    -------
    (ScoreData, true_params, spec): benchmarks ``b1..bJ``, families ``fam001..``, models
    ``fam001-m1..`` (sizes in billions, tokens in trillions). ``true_params`` holds the
    constrained parameters (``pack(true_params, spec)`` is the true unconstrained vector) and,
    in addition, ``"alpha"``: the drawn family effects (F, K), in family order.
    """
    K, J, F = int(k), int(n_benchmarks), int(n_families)
    if F < 1:
        raise InputError(f"n_families must be at least 1, got {F}")
    if not 1 <= K <= J:  # before the spec, whose anchors would otherwise silently be fewer
        raise InputError(f"need 1 <= k <= n_benchmarks, got k={K}, n_benchmarks={J}")
    design_rng = np.random.default_rng(seed if design_seed is None else design_seed)
    rng = np.random.default_rng([int(seed), 1])  # responses: independent of the design stream
    benchmarks = tuple(f"b{j + 1}" for j in range(J))
    c = _resolve_floors(floors, J)
    spec = ModelSpec(benchmarks=benchmarks, anchors=benchmarks[:K], floors=tuple(float(v) for v in c),
                     clip=DEFAULT_CLIP if clip is None else tuple(clip), logit_clip=logit_clip,
                     hetero_precision=hetero_precision, residual=residual, ceiling=ceiling,
                     residual_slope=residual_slope, link_power=link_power, family_covariates=tuple(family_covariates))
    params = _true_params(params, spec, seed)

    fam, within, size, tokens = _draw_design(family_sizes, F, design_rng)
    q = len(spec.family_covariates)
    kinds = (np.random.default_rng([int(seed if design_seed is None else design_seed), 3]).random((F, q)) < 0.4
             ).astype(float)
    if q and F > 1:  # both kinds present, so Γ is identified
        kinds[0], kinds[1] = 0.0, 1.0
    z = kinds[fam]
    X = CovariateScaler.fit(size, tokens, extra_values=z, extra=spec.family_covariates).transform(size, tokens, z)

    alpha, u, y = _draw_scores(params, spec, X, fam, F, c, rng)
    if clip is not None:
        y = np.clip(y, clip[0], clip[1])
    y[_missing_mask(missing, fam, F, J, design_rng)] = np.nan
    data = _score_data(y, fam, within, size, tokens, benchmarks, c, F, dict(zip(spec.family_covariates, z.T)))
    true = dict(params)
    true["alpha"] = alpha
    if u is not None:
        true["residual"] = u[:, :J]
    if spec.residual_slope:
        true["slope"] = u[:, J:]
    return data, true, spec


def _draw_scores(params: dict, spec: ModelSpec, X: np.ndarray, fam: np.ndarray, F: int, c: np.ndarray,
                 rng: np.random.Generator):
    """Family effects α (F, K), residuals (F, J), with slopes (F, 2J), or None, and every model's scores (n, J)."""
    alpha = rng.standard_normal((F, spec.K)) @ params["corr"].T
    u = _draw_residuals(params, spec, F, rng)
    y = _beta_draws(X @ params["B"] + alpha[fam], params, c, spec.logit_clip, rng, X, model_residuals(u, fam, X, spec))
    return alpha, u, y


def _draw_residuals(params: dict, spec: ModelSpec, F: int, rng: np.random.Generator):
    """The families' residuals u (F, J), then their slopes v with ``residual_slope`` (F, 2J); None without."""
    if not spec.residual:
        return None
    u = rng.standard_normal((F, spec.J)) * params["residual_sd"]
    if spec.residual_slope:
        u = np.concatenate([u, rng.standard_normal((F, spec.J)) * params["slope_sd"]], axis=1)
    return u


def model_residuals(u, fam: np.ndarray, X: np.ndarray, spec: ModelSpec):
    """Each model's residual term in η (n, J): u_fj, plus v_fj·z_i with slopes (z the first
    standardized covariate); None when the model has no residuals."""
    if u is None:
        return None
    out = u[fam, : spec.J]
    if spec.residual_slope:
        out = out + u[fam, spec.J:] * X[:, :1]
    return out


def _true_params(params, spec: ModelSpec, seed: int) -> dict:
    """The true parameters of every block of ``spec`` (random ones with ``seed`` when None),
    checked, and with the anchor structure imposed by a round trip through the parametrization."""
    K, J = spec.K, spec.J
    names = layout(spec).slices
    if params is None:
        params = random_params(K, J, seed=seed, extra_blocks=tuple(n for n in names if n not in CORE_BLOCKS))
        params = with_family_effects(params, len(spec.family_covariates), seed)
    lacking = [name for name in names if name not in params]
    if lacking:
        raise InputError(f"params lack the block(s) {lacking} of this model")
    params = {name: np.asarray(params[name], dtype=float) for name in names}
    if params["loadings"].shape != (K, J) or params["B"].shape != (spec.p, K):
        raise InputError(
            f"params do not match k={K}, n_benchmarks={J}: loadings {params['loadings'].shape}, B {params['B'].shape}"
        )
    return {name: np.asarray(v) for name, v in unpack(pack(params, spec), spec).items()}


def _draw_design(family_sizes, F: int, rng: np.random.Generator):
    """Family of each model, its index inside the family, sizes and tokens (the design)."""
    m_f = family_size_draws(family_sizes, F, rng)
    fam = np.repeat(np.arange(F), m_f)
    within = np.arange(fam.size) - np.repeat(np.cumsum(m_f) - m_f, m_f)  # 0-based index inside family
    size = _log_uniform(rng, *SIZE_RANGE, fam.size)
    fam_tokens = _log_uniform(rng, *TOKEN_RANGE, F)
    shared = rng.random(F) < SHARED_TOKENS_PROB
    jitter = np.exp(rng.normal(0.0, TOKEN_JITTER_SD, fam.size))
    tokens = np.where(shared[fam], fam_tokens[fam], np.clip(fam_tokens[fam] * jitter, *TOKEN_RANGE))
    return fam, within, size, tokens


def _score_data(y, fam, within, size, tokens, benchmarks, c, F: int, attributes: dict | None = None):
    """The simulated table as ScoreData (families ``fam001..``, models ``fam001-m1..``)."""
    from latentscale.data.loaders import build_score_data  # data layer imports model; keep lazy

    width = max(3, len(str(F)))
    fam_names = np.array([f"fam{f + 1:0{width}d}" for f in range(F)])
    model_names = np.char.add(np.char.add(fam_names[fam], "-m"), (within + 1).astype(str))
    frame = pd.DataFrame(y, columns=list(benchmarks))
    frame.insert(0, "model", model_names)
    frame.insert(1, "family", fam_names[fam])
    frame.insert(2, "size", size)
    frame.insert(3, "tokens", tokens)
    for i, (name, values) in enumerate((attributes or {}).items()):
        frame.insert(4 + i, name, values)
    # Scores are raw accuracies by construction: the mixed-scale heuristic (rows far below
    # the floor on several benchmarks) would only flag Beta noise, so it is off here.
    return build_score_data(frame, benchmarks=list(benchmarks), floors=dict(zip(benchmarks, c.tolist())),
                            name="simulated", check_mixed=False, attributes=list(attributes or {}))
