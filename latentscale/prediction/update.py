"""Add evaluated scores to a fit without refitting: the parameters stay at θ̂, and every
posterior, prediction, ranking and design computed from the updated fit conditions on the new
rows too (the empirical-Bayes update, exact at θ̂). ``refit=True`` re-estimates θ from the
merged data, starting at θ̂."""

from __future__ import annotations

import numpy as np
import pandas as pd

from latentscale.data.dataset import ScoreData
from latentscale.data.validate import DataError, name_rows
from latentscale.prediction.posterior import rows_for


def merge_rows(fit, rows) -> tuple[pd.DataFrame, dict]:
    """The fit's rows with ``rows`` (a frame or ScoreData of evaluated models) merged in: new cells
    of known models filled, new models appended. A cell that already has a score, or a known model
    listed with another family, size or tokens, is an error naming it."""
    new = rows_for(fit, [], rows).frame
    base = fit.training_data().frame
    benchmarks = list(fit.spec.benchmarks)
    known = new.index.intersection(base.index)
    for col in ("family", "size", "tokens"):
        a, b = base.loc[known, col], new.loc[known, col]
        differ = (a != b) if col == "family" else ~np.isclose(a.astype(float), b.astype(float), rtol=1e-9)
        if np.any(differ):
            bad = list(known[np.asarray(differ)])
            raise DataError(f"model(s) {name_rows(bad)} are in the fit with another {col} "
                            f"({name_rows(a[np.asarray(differ)].tolist())}); the new rows give "
                            f"{name_rows(b[np.asarray(differ)].tolist())}: fix the {col!r} column of the new rows")
    both = base.loc[known, benchmarks].notna().to_numpy() & new.loc[known, benchmarks].notna().to_numpy()
    if both.any():
        i, j = np.nonzero(both)
        cells = [f"{known[a]} / {benchmarks[b]}" for a, b in zip(i, j)]
        raise DataError(f"score(s) already in the fit: {name_rows(cells)}; an update adds scores, it does not "
                        "replace them (drop those cells from the new rows, or refit on corrected data)")
    merged = base.copy()
    if len(known):
        merged.loc[known, benchmarks] = merged.loc[known, benchmarks].fillna(new.loc[known, benchmarks])
    added = new.loc[new.index.difference(base.index, sort=False)]
    merged = pd.concat([merged, added[merged.columns]])
    scores = int(new[benchmarks].notna().to_numpy().sum())
    info = {"scores_added": scores, "models_added": len(added), "models_updated": int(len(known)),
            "families_added": sorted(set(added["family"]) - set(base["family"])),
            "families_updated": sorted(set(new["family"])),
            "estimation_scores": int(fit.n_obs)}
    return merged, info


def update(fit, rows, refit: bool = False, progress=None):
    """A new :class:`~latentscale.results.FitResult` with ``rows`` (evaluated scores of existing or
    new families) added to its data. Without ``refit`` the parameters, their covariance and ℓ stay
    those of the estimation (the diagnostics say so under ``"update"``), and the posteriors and
    predictions of the returned fit condition on the new rows. With ``refit`` θ is re-estimated
    on the merged data, warm-started at θ̂ (one start)."""
    merged, info = merge_rows(fit, rows)
    data = ScoreData(frame=merged, benchmarks=tuple(fit.spec.benchmarks),
                     floors=dict(zip(fit.spec.benchmarks, fit.spec.floors)), name=fit.data_name)
    if refit:
        new = _refit_model(fit).fit(data, progress=progress, start_params=fit)
        new.diagnostics["update"] = {**info, "refit": True, "log_likelihood_before": fit.log_likelihood}
        return new
    diagnostics = {**fit.diagnostics, "update": {**info, "refit": False}}
    return fit.with_rows(merged, diagnostics)


def _refit_model(fit):
    """The fit's model and estimator, one start (the start is θ̂): its saved options, completed from
    its specification where a fit carries none (one built from parameters)."""
    from latentscale.fitting import LatentScalingModel

    spec = fit.spec
    options = {"anchors": list(spec.anchors), "clip": spec.clip, "logit_clip": spec.logit_clip,
               "covariates": spec.covariates, "family_covariates": spec.family_covariates,
               **spec.switches, "power_prior": spec.power_prior, "floors": dict(zip(spec.benchmarks, spec.floors)),
               "method": fit.method, "quadrature": fit.quadrature}
    options.update({k: v for k, v in fit.options.items() if k != "k" and v is not None})
    options["n_starts"] = 1
    return LatentScalingModel(spec.K, **options)
