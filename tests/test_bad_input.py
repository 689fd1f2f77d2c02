"""A stranger's bad input, case by case: each command fails with exit code 2 and one ``error:`` line that
names the offending file, row, column or value (plain numbers) and says what to do, and no file in the
working folder is created or changed (sha256 of every file before and after).

One small fit (Laplace, one start, K = 1) is shared; every case fails before any estimation.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from latentscale.cli.app import app
from test_cli import FAST, FLOOR_ARGS, FLOORS, simulate


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A folder with a score table, a fit of it, a models table and broken variants of each."""
    d = tmp_path_factory.mktemp("bad")
    df = simulate(n_families=30)
    df.to_csv(d / "scores.csv", index=False)
    res = CliRunner().invoke(app, ["fit", str(d / "scores.csv"), "-k", "1", *FLOOR_ARGS, *FAST,
                                   "-o", str(d / "fit.json"), "--json"])
    assert res.exit_code == 0, res.output
    df.head(3)[["model", "family", "size", "tokens"]].assign(model=["n1", "n2", "n3"]).to_csv(d / "new.csv",
                                                                                              index=False)
    (d / "new_header.csv").write_text("model,family,size,tokens\n")
    (d / "header.csv").write_text(",".join(df.columns) + "\n")
    (d / "empty.csv").write_text("")
    (d / "binary.csv").write_bytes(bytes(range(256)) * 4)
    (d / "latin1.csv").write_bytes("model,family,size,tokens,b1\ncaf\xe9,f,1,1,0.5\n".encode("latin-1"))
    one = df.copy()
    one.loc[7, "b2"] = 1.3
    one.to_csv(d / "over_one.csv", index=False)
    pct = df.copy()
    pct.loc[11, ["b1", "b2", "b3", "b4"]] = [70.26, 55.0, 61.5, 80.0]
    pct.to_csv(d / "percent_row.csv", index=False)
    doc = json.loads((d / "fit.json").read_text())
    broken = {
        "short_theta": lambda x: x.update(theta=x["theta"][:-3]),
        "short_benchmarks": lambda x: x["spec"].update(benchmarks=x["spec"]["benchmarks"][:-1]),
        "bad_hessian": lambda x: x.update(hessian=[[1.0]]),
        "nan_theta": lambda x: x.update(theta=[float("nan")] * len(x["theta"])),
        "bad_method": lambda x: x.update(method="magic"),
        "zero_scale": lambda x: x["scaler"].update(scale=[0.0] * len(x["scaler"]["scale"])),
    }
    for name, change in broken.items():
        x = json.loads(json.dumps(doc))
        change(x)
        (d / f"{name}.json").write_text(json.dumps(x))
    (d / "ro").mkdir()
    (d / "not_a_folder").write_text("a file")
    return d


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


S, F, N = "{d}/scores.csv", "{d}/fit.json", "{d}/new.csv"
FAST_FIT = ["-k", "1", *FLOOR_ARGS, *FAST]

# (case id, arguments with {d} for the folder, substrings every one of which the message must hold)
CASES = [
    # outputs that are inputs (nothing is replaced)
    ("fit -o = data", ["fit", S, *FAST_FIT, "-o", S], ["scores.csv", "is also an input"]),
    ("predict -o = fit", ["predict", F, "--models", N, "-o", F], ["fit.json", "is also an input"]),
    ("predict -o = models", ["predict", F, "--models", N, "-o", N], ["new.csv", "is also an input"]),
    ("report -o = fit", ["report", F, "-o", F], ["fit.json", "is also an input"]),
    ("two outputs the same", ["select", S, "--k", "1", *FLOOR_ARGS, "-o", "{d}/x.json", "--plot", "{d}/x.json"],
     ["x.json", "two different outputs"]),
    # outputs that cannot be written, found before the work
    ("fit -o under a file", ["fit", S, *FAST_FIT, "-o", "{d}/not_a_folder/fit.json"],
     ["not_a_folder/fit.json", "not a folder"]),
    ("fit -o a folder", ["fit", S, *FAST_FIT, "-o", "{d}/ro"], ["ro", "is a folder"]),
    ("predict -o under a file", ["predict", F, "--models", N, "-o", "{d}/not_a_folder/p.csv"], ["not_a_folder"]),
    ("curve -o under a file", ["curve", F, "--family", "fam1", "-o", "{d}/not_a_folder/c.csv"], ["not_a_folder"]),
    ("allocate -o under a file", ["allocate", F, "--skill", "b1", "-o", "{d}/not_a_folder/a.csv"], ["not_a_folder"]),
    ("report -o under a file", ["report", F, "-o", "{d}/not_a_folder/r.html"], ["not_a_folder"]),
    # saved fits that are damaged
    ("show short theta", ["show", "{d}/short_theta.json"], ["short_theta.json", "theta"]),
    ("show short benchmarks", ["show", "{d}/short_benchmarks.json"], ["short_benchmarks.json"]),
    ("show bad hessian", ["show", "{d}/bad_hessian.json"], ["bad_hessian.json", "hessian"]),
    ("show --json bad hessian", ["show", "{d}/bad_hessian.json", "--json"], ["bad_hessian.json", "hessian"]),
    ("show NaN theta", ["show", "{d}/nan_theta.json"], ["nan_theta.json", "theta"]),
    ("show unknown method", ["show", "{d}/bad_method.json"], ["bad_method.json", "method", "magic"]),
    ("show zero scale", ["show", "{d}/zero_scale.json"], ["zero_scale.json", "scale"]),
    ("show a CSV", ["show", S], ["scores.csv", "not a latentscale fit"]),
    ("predict with a CSV as fit", ["predict", S, "--models", N], ["scores.csv"]),
    # data that is wrong: the message names the row, the column and the value
    ("score above 1", ["fit", "{d}/over_one.csv", *FAST_FIT], ["over_one.csv", "m", "b2", "1.3"]),
    ("a row in percent", ["fit", "{d}/percent_row.csv", *FAST_FIT], ["percent_row.csv", "70.26"]),
    ("header-only data", ["fit", "{d}/header.csv", *FAST_FIT], ["header.csv", "no rows"]),
    ("header-only models", ["predict", F, "--models", "{d}/new_header.csv"], ["new_header.csv", "no rows"]),
    ("empty file", ["fit", "{d}/empty.csv", *FAST_FIT], ["empty.csv"]),
    ("binary file", ["fit", "{d}/binary.csv", *FAST_FIT], ["binary.csv"]),
    ("latin-1 file", ["data", "{d}/latin1.csv"], ["latin1.csv", "UTF-8"]),
    ("missing file", ["fit", "{d}/nope.csv", *FAST_FIT], ["nope.csv"]),
    # options
    ("fit -k 0", ["fit", S, "-k", "0", *FLOOR_ARGS], ["-k", "0"]),
    ("select reversed range", ["select", S, "--k", "3..1", *FLOOR_ARGS], ["3..1", "reversed", "1..3"]),
    ("unknown floor benchmark", ["fit", S, *FAST_FIT, "--floor", "nosuch=0.3"], ["nosuch", "not a benchmark"]),
    ("bad floor value", ["fit", S, "-k", "1", "--floor", "b1=1.5"], ["--floor", "b1=1.5"]),
    ("curve unknown family", ["curve", F, "--family", "fma1"], ["fma1", "fam1"]),
    ("posterior unknown family", ["posterior", F, "nosuch"], ["nosuch"]),
    ("allocate unknown skill", ["allocate", F, "--skill", "nosuch"], ["nosuch", "b1"]),
    ("bad level", ["predict", F, "--models", N, "--level", "1.5"], ["--level", "1.5"]),
    ("unknown variant", ["fit", S, *FAST_FIT, "--variant", "residul"], ["residul", "residual"]),
    ("bad power penalty", ["fit", S, *FAST_FIT, "--variant", "power:-1"], ["power:-1", "positive number"]),
    ("unknown dataset", ["fit", "lvf-papr", "-k", "1"], ["lvf-papr"]),
    ("column options on a dataset", ["fit", "sloth", "-k", "1", "--size-col", "x"], ["--size-col", "sloth"]),
]


@pytest.mark.parametrize("args, needles", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_exits_2_names_the_culprit_and_writes_nothing(work, args, needles):
    before = digest(work)
    res = CliRunner().invoke(app, [a.format(d=work) for a in args])
    assert res.exit_code == 2, (res.exit_code, res.output)
    err = res.stderr
    assert "Traceback" not in res.output and "np.float64" not in err and "RuntimeWarning" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err  # one error line (progress lines may precede it)
    for needle in needles:
        assert needle in err, (needle, err)
    assert res.stdout.strip() == "" or "--json" not in args  # nothing half-written on stdout either
    assert digest(work) == before  # no file created or changed


def test_number_of_cases():
    """The issue lists nine kinds of failure; every kind has cases above (and more than one where it has several
    forms)."""
    assert len(CASES) >= 35


def test_family_names_and_their_default_group_are_stripped_alike(tmp_path):
    """A family name with a trailing space is the same family; its default group is the same group."""
    from latentscale.data import load_dataset

    df = simulate(n_families=6)
    df.loc[df.index[0], "family"] = df.loc[df.index[0], "family"] + " "
    path = tmp_path / "spaced.csv"
    df.to_csv(path, index=False)
    data = load_dataset(str(path), floors=FLOORS)
    assert data.frame["family"].nunique() == 6 and data.frame["group"].nunique() == 6


def test_predict_flags_extrapolation(work):
    """A 1e6 B-parameter, 1,000 T-token model is far outside the fitted covariates: the rows say so."""
    new = work.parent / "huge.csv"
    new.write_text("model,family,size,tokens\nhuge,fam1,1000000,1000\nsmall,fam1,5,1\n")
    res = CliRunner().invoke(app, ["predict", str(work / "fit.json"), "--models", str(new), "--json",
                                   "--samples", "200"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["rows"]
    flag = {r["model"]: r["extrapolated"] for r in rows}
    assert flag["huge"] and not flag["small"]
    assert np.isfinite([r["mean"] for r in rows]).all()


def test_interrupt_during_the_summary_keeps_the_saved_fit(work, tmp_path, monkeypatch):
    """Ctrl-C while the summary is computed, after the fit: exit 130, a message that says the fit is saved,
    and the file is complete (it loads)."""
    import latentscale as ls

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ls.FitResult, "summary", interrupted)
    out = tmp_path / "kept.json"
    res = CliRunner().invoke(app, ["fit", str(work / "scores.csv"), *FAST_FIT, "-o", str(out)])
    assert res.exit_code == 130, res.output
    assert "the fit is saved in" in res.stderr and str(out) in res.stderr
    assert ls.FitResult.load(out).n_params > 0
