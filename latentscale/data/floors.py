"""Random-guess floors c_j of known benchmarks (SPEC §1) and benchmark-name aliases."""

from __future__ import annotations

import re

#: Floors of the Open LLM Leaderboard benchmarks, keyed by canonical name.
KNOWN_FLOORS: dict[str, float] = {
    "mmlu": 0.25,
    "arc": 0.25,
    "hellaswag": 0.25,
    "winogrande": 0.50,
    "truthfulqa": 0.31,
    "gsm8k": 0.0,
    "ifeval": 0.0,
    "math": 0.0,
    "mmlu-pro": 0.10,
    "gpqa": 0.25,
    "bbh": 0.28850,  # 1/#choices over the 24 BBH tasks, weighted by task size
    "musr": 0.34330,  # 1/2 on 250, 1/5 on 256, 1/3 on 250 items
}

_ALIASES: dict[str, str] = {
    "math lvl 5": "math",
    "math-lvl-5": "math",
    "math_lvl_5": "math",
    "mmlu_pro": "mmlu-pro",
    "mmlu pro": "mmlu-pro",
    "mmlupro": "mmlu-pro",
    "truthful_qa": "truthfulqa",
    "hella_swag": "hellaswag",
}


def canonical_benchmark(name: str) -> str:
    """Canonical lower-case key of a benchmark name ('MATH Lvl 5' -> 'math', 'MUSR' -> 'musr')."""
    key = re.sub(r"\s+", " ", str(name).strip().lower())
    return _ALIASES.get(key, key)


def floor_for(name: str, user_floors: dict[str, float] | None = None) -> float | None:
    """Floor of benchmark ``name``: a user-given floor wins, then the known table; None if unknown."""
    return floors_for([name], user_floors)[0]


def floors_for(names, user_floors: dict[str, float] | None = None) -> list[float | None]:
    """:func:`floor_for` of many names (the user's floors canonicalized once: wide tables stay fast)."""
    user = dict(user_floors or {})
    by_key = {}
    for k, v in user.items():
        by_key.setdefault(canonical_benchmark(k), float(v))
    out = []
    for name in names:
        if name in user:
            out.append(float(user[name]))
            continue
        key = canonical_benchmark(name)
        out.append(by_key[key] if key in by_key else KNOWN_FLOORS.get(key))
    return out
