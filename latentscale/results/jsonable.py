"""Plain JSON values from numpy / pandas results (one converter for saved fits and ``--json`` output)."""

from __future__ import annotations

import math

import numpy as np


def to_json(obj):
    """Strictly JSON-serializable values: numpy scalars and arrays unpacked, tuples as lists, NaN and ±inf as None."""
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_json(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
