"""Fit results: labelled parameter tables, information criteria, save/load as JSON."""

from latentscale.results.fit_result import FitResult

__all__ = ["FitResult"]
