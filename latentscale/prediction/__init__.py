"""Family posteriors, predictions for unevaluated models and scaling curves (SPEC §4)."""

from latentscale.prediction.curves import plot_scaling_curve, scaling_curve
from latentscale.prediction.posterior import FamilyPosterior, compare_families, family_posterior, family_posteriors
from latentscale.prediction.predict import PREDICTION_COLUMNS, predict

__all__ = ["FamilyPosterior", "PREDICTION_COLUMNS", "compare_families", "family_posterior", "family_posteriors",
           "plot_scaling_curve", "predict", "scaling_curve"]
