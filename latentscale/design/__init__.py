"""Optimal design on the fitted law: which evaluations to run next and which models to train next."""

from latentscale.design.evaluate import DESIGN_COLUMNS, DesignResult, design_evaluations

__all__ = ["DESIGN_COLUMNS", "DesignResult", "design_evaluations"]
