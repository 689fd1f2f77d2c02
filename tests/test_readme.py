"""Every Python block of the README runs as written, in order, in one namespace (as a reader would paste
them), in a scratch folder; the data are the registered datasets (shipped with the package) and a
`scores.csv` written here for the block that reads the reader's own table."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_blocks_compile_and_import():
    """The fast check: every block parses and every name it imports exists."""
    import importlib

    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 3 and any("ls.fit(data, k=4)" in b for b in blocks)
    for i, block in enumerate(blocks):
        compile(block, f"README.md python block {i + 1}", "exec")
        for module, names in re.findall(r"^from ([\w.]+) import ([\w, ]+)$", block, flags=re.M):
            mod = importlib.import_module(module)
            for name in (n.strip() for n in names.split(",")):
                assert hasattr(mod, name), f"README block {i + 1}: {module} has no {name}"


@pytest.mark.slow
@pytest.mark.integration
def test_every_python_block_of_the_readme_runs(tmp_path, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    n = 12
    pd.DataFrame({"model": [f"m{i}" for i in range(n)], "family": [f"f{i // 3}" for i in range(n)],
                  "size": np.exp(rng.uniform(0, 4, n)), "tokens": np.exp(rng.uniform(-1, 1, n)),
                  "my_bench": rng.uniform(0.3, 0.8, n), "mmlu": rng.uniform(0.3, 0.7, n)}).to_csv("scores.csv",
                                                                                              index=False)
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, block in enumerate(python_blocks(README.read_text())):
            try:
                exec(compile(block, f"README.md python block {i + 1}", "exec"), namespace)
            except Exception as e:  # name the block in the failure
                raise AssertionError(f"README python block {i + 1} failed: {type(e).__name__}: {e}") from e
    assert Path("fit.json").is_file() and Path("report.html").is_file() and Path("frontier.png").is_file()
    k, j = 1, 2  # the last fit: the reader's own table
    assert namespace["result"].n_params == k * (k - 1) // 2 + 3 * k + k + k * (j - k) + 2 * j
