"""``latent-k``: this project's latent-variable model as a method of the head-to-head evaluation.

Fit: :meth:`latentscale.LatentScalingModel.fit`, the same estimator as ``latentscale fit``, on the
training rows; in cross-validation warm-started from a fit on rows every fold trains on
(``start=``), with one start and no standard errors (``hessian=None``): options of that one path,
not a parallel implementation. Prediction: the posterior mean of the expected score,
E[μ_ij | y_f] = ∫ μ_ij(α) p(α | y_f, θ̂) dα, by the fit's own quadrature rule (nodes at the family's
posterior mode, weights proportional to the posterior): the family posterior conditions on that
family's training rows only; a family without training rows uses the prior N(0, Σ).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from latentscale.data.dataset import ScoreData
from latentscale.errors import InputError
from latentscale.estimation.likelihood import MarginalLikelihood
from latentscale.estimation.residual import cell_sds
from latentscale.model.observation import eta_bound, expand, link_shares, mean_score
from latentscale.model.spec import DEFAULT_CLIP


class LatentMethod:
    """The latent-variable model with K skills as a fit/predict method (module docstring).

    anchors : K benchmark names (anchor k loads only on skill k); default the first K benchmarks.
    quadrature : the fit's rule (a QuadratureSpec, dict or grid name; default the default rule).
    start : warm start (unconstrained parameter vector); ignored when its length does not match.
    pad : the shape (scores, models, families) every design is padded to (default: a few sizes per
        octave); cross-validation pads every fold to the shape of the whole data set, so all folds
        share one compiled likelihood.
    n_starts, hessian : as :class:`~latentscale.LatentScalingModel` (defaults: one start, no Hessian).
    model_options : further options of the model (logit_clip, covariates, ...).
    """

    def __init__(self, k: int = 1, anchors: Sequence[str] | None = None, *, quadrature=None,
                 clip: tuple[float, float] | None = DEFAULT_CLIP, start: np.ndarray | None = None,
                 n_starts: int = 1, hessian: str | None = None, pad: tuple[int, int, int] | None = None,
                 **model_options):
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        self.k = k
        self.anchors = None if anchors is None else tuple(anchors)
        self.quadrature = quadrature
        self.clip = clip
        self.start = start
        self.n_starts = n_starts
        self.hessian = hessian
        self.pad = pad
        self.model_options = model_options

    @property
    def name(self) -> str:
        return f"latent-k{self.k}"

    def model(self, benchmarks: Sequence[str]):
        """The :class:`~latentscale.LatentScalingModel` this method fits."""
        from latentscale.fitting import LatentScalingModel

        anchors = self.anchors if self.anchors is not None else tuple(benchmarks[: self.k])
        return LatentScalingModel(self.k, anchors, quadrature=self.quadrature, clip=self.clip,
                                  n_starts=self.n_starts, hessian=self.hessian,
                                  method_options={"pad": self.pad} if self.pad else None, **self.model_options)

    def fit(self, train: pd.DataFrame, benchmarks: Sequence[str], floors: Mapping[str, float]):
        benchmarks = tuple(benchmarks)
        frame = train.copy()
        if "group" not in frame.columns:
            frame["group"] = frame["family"]
        extra = tuple(self.model_options.get("family_covariates", ()))
        frame = frame[["family", "group", "size", "tokens", *extra, *benchmarks]]
        data = ScoreData(frame=frame, benchmarks=benchmarks, floors={b: float(floors[b]) for b in benchmarks},
                         name="training rows", attributes=extra)
        model = self.model(benchmarks)
        warm = self.start is not None and np.size(self.start) == model.spec_for(data).n_params
        return self._prepare(model.fit(data, start_params=np.asarray(self.start, float) if warm else None))

    @classmethod
    def from_fit(cls, fit, pad: tuple[int, int, int] | None = None) -> "LatentMethod":
        """The method with ``fit`` (a :class:`~latentscale.results.FitResult`) as its fitted state:
        its posterior-mean predictions without refitting."""
        return cls(fit.spec.K, fit.spec.anchors, quadrature=fit.quadrature, pad=pad)._prepare(fit)

    def _prepare(self, fit):
        """The fitted state: the fit, and every family's posterior nodes and weights at θ̂."""
        self.fit_ = fit
        self.theta_ = fit.theta
        self.log_likelihood_ = fit.llf
        self.converged_ = fit.converged
        ml = MarginalLikelihood(fit.spec, fit.design(), fit.quadrature, pad=self.pad or True)  # the fit's shape
        _, self.posterior_nodes_, self.posterior_weights_ = ml.posterior_nodes(fit.theta)
        self.family_index_ = {f: i for i, f in enumerate(fit.families)}
        rule = fit.quadrature.rule(fit.spec.K)
        self.prior_nodes_ = rule.nodes @ fit.constrained["corr"].T
        self.prior_weights_ = rule.weights
        if fit.spec.residual:  # inner nodes of r_fj = u_fj (, v_fj) given each outer node, and the prior's rule
            self.residual_nodes_, self.residual_weights_ = ml.residual_nodes(fit.theta)  # (F, Q, J, R, m)
            inner = fit.quadrature.inner_rule(fit.spec.residual_terms)
            self.prior_residual_ = (inner.nodes[None, :, :] * cell_sds(fit.constrained)[:, None, :],
                                    inner.weights)  # (J, R, m), (R,)
        return self

    def predict(self, models: pd.DataFrame) -> np.ndarray:
        """Posterior-mean expected scores (n, J) of new models of the fitted families."""
        fit = self.fit_
        p = fit.constrained
        c = np.asarray(fit.spec.floors)
        kappa = link_shares(p)
        kappa_cells = expand(kappa, 1)  # (J, 1): against the inner nodes
        bound = eta_bound(fit.spec.logit_clip)
        fixed_x = fit.scaler.transform_frame(models, "the test models")
        fixed = fixed_x @ p["B"]  # (n, K)
        out = np.empty((len(models), fit.spec.J))
        for i, fam in enumerate(models["family"].to_numpy()):
            f = self.family_index_.get(fam)
            nodes, w = ((self.posterior_nodes_[f], self.posterior_weights_[f]) if f is not None
                        else (self.prior_nodes_, self.prior_weights_))
            eta = (fixed[i] + nodes) @ p["loadings"] + p["intercepts"]  # (Q, J)
            if not fit.spec.residual:
                out[i] = w @ mean_score(eta, c, bound, kappa)  # (Q, J) → (J,)
                continue
            w_cell = np.array([1.0, fixed_x[i, 0]])[: fit.spec.residual_terms]  # η gets u (+ v·z)
            if f is not None:  # E over r_fj given each outer node, by the inner nodes and weights
                r, wu = self.residual_nodes_[f], self.residual_weights_[f]  # (Q, J, R, m), (Q, J, R)
                inner = np.sum(wu * mean_score(eta[..., None] + r @ w_cell, c[:, None], bound, kappa_cells), axis=-1)
            else:  # a family without rows: u_fj ~ N(0, τ_j²) (, v_fj ~ N(0, ω_j²))
                r, wu = self.prior_residual_
                inner = mean_score(eta[..., None] + (r @ w_cell)[None], c[:, None], bound, kappa_cells) @ wu
            out[i] = w @ inner
        return out

    def to_fit_result(self):
        """The fit, a :class:`~latentscale.results.FitResult` (no Hessian unless asked for)."""
        return self.fit_

