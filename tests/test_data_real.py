"""Integration: the real data through the registry (needs LATENTSCALE_DATA_DIR)."""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import pytest

from latentscale.data import load_dataset
from latentscale.data import registry
from latentscale.data.validate import below_floor_rows

DATA_DIR = os.environ.get("LATENTSCALE_DATA_DIR")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not DATA_DIR or not Path(DATA_DIR).is_dir(),
                       reason="set LATENTSCALE_DATA_DIR to the shared data folder"),
]
N_NORMALIZED = 111


def load(name: str):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        data = load_dataset(name)
    return data, [str(w.message) for w in rec if issubclass(w.category, UserWarning)]


@pytest.mark.parametrize("key", sorted(registry.SHA256))
def test_sha256_matches_registry(key):
    source, name = key
    digest = hashlib.sha256((Path(DATA_DIR) / source / name).read_bytes()).hexdigest()
    assert digest == registry.SHA256[key]


def test_lvf_paper():
    data, emitted = load("lvf-paper")
    assert data.n_models == 286 and data.n_families == 170 and len(data.benchmarks) == 12
    assert data.benchmarks == ("math", "ifeval", "hellaswag", "bbh", "gsm8k", "mmlu", "arc",
                               "winogrande", "truthfulqa", "mmlu-pro", "gpqa", "musr")
    msg = [w for w in data.warnings if "NORMALIZED" in w]
    assert len(msg) == 1 and msg[0].startswith(f"{N_NORMALIZED} rows")
    assert any("NORMALIZED" in w for w in emitted)
    for m in ("calme-2.1-qwen2-72b", "gemma-2-9b-it-simpo", "l3-pneuma-8b", "l3-pneuma-8b#2"):
        assert m in msg[0]
    for m in ("llama-2-7b", "qwen2-72b", "gemma-2-9b-it"):
        assert f" {m}," not in msg[0]
    # the generic check flags exactly the rows matched against the leaderboard dump
    flagged = below_floor_rows(data.frame, data.floors)
    assert len(flagged) == N_NORMALIZED
    assert all(m in msg[0] for m in flagged)
    assert not any("not caught" in w or "match no leaderboard row" in w for w in data.warnings)


def test_lvf_paper_raw():
    data, _ = load("lvf-paper-raw")
    assert data.n_models == 286 and data.n_families == 170
    assert not any("NORMALIZED" in w or "leaderboard-normalized" in w for w in data.warnings)
    msg = [w for w in data.warnings if "converted" in w]
    assert len(msg) == 1 and f"converted {N_NORMALIZED} rows" in msg[0] and "dropped 0 rows" in msg[0]
    assert below_floor_rows(data.frame, data.floors) == []
    paper, _ = load("lvf-paper")
    assert (data.frame.loc["calme-2.1-qwen2-72b", "gpqa"] > 0.3
            > paper.frame.loc["calme-2.1-qwen2-72b", "gpqa"])


def test_sloth():
    data, _ = load("sloth")
    assert data.n_models == 188 and data.n_families == 68
    assert data.frame["group"].nunique() == 35
    assert len(data.benchmarks) == 12 and "MATH Lvl 5" in data.benchmarks
    assert int(data.frame["tokens"].isna().sum()) == 13
    assert any("13 rows have no tokens" in w for w in data.warnings)
    assert below_floor_rows(data.frame, data.floors) == []
    assert not any("normalized" in w for w in data.warnings)


def test_lvf_v1_v2():
    v1, emitted = load("lvf-v1")
    assert v1.n_models == 168 and v1.n_families == 75 and emitted == []
    assert below_floor_rows(v1.frame, v1.floors) == []
    v2, _ = load("lvf-v2")
    assert v2.n_models == 216 and v2.n_families == 146
    assert any(w.startswith(f"{N_NORMALIZED} rows") for w in v2.warnings)


def test_describe_real():
    data, _ = load("sloth")
    d = data.describe()
    assert d["rows"] == 188 and d["families"] == 68 and d["groups"] == 35
    assert len(d["rows_missing_tokens"]) == 13
    assert sum(b["observed"] for b in d["benchmarks"]) == int(data.frame[list(data.benchmarks)].notna().sum().sum())
