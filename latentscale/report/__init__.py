"""A self-contained HTML report of a fit (figures embedded as PNG, also saved next to the page)."""

from latentscale.report.build import SECTIONS, Report, build_report, default_families, load_selection

__all__ = ["SECTIONS", "Report", "build_report", "default_families", "load_selection"]
