"""Evaluation of fitted models: choice of the number of skills (AIC/BIC)."""

from latentscale.evaluation.select import SelectionResult, anchors_for, select_k

__all__ = ["SelectionResult", "anchors_for", "select_k"]
