"""Compute-optimal allocation of a FLOP budget between parameters and tokens (SPEC §4)."""

from latentscale.allocation.core import (ALLOCATION_COLUMNS, FLOPS_UNIT, allocate, budget_log, data_ranges,
                                         flops_range, format_allocation, line_optimum, resolve_box)
from latentscale.allocation.plot import plot_frontier

__all__ = ["ALLOCATION_COLUMNS", "FLOPS_UNIT", "allocate", "budget_log", "data_ranges", "flops_range",
           "format_allocation", "line_optimum", "plot_frontier", "resolve_box"]
