"""The HTML report: self-contained (every figure a data: URI, nothing fetched), every section present,
PNGs written next to it and identical to the embedded ones, inputs checked; and, where Debian's
chromium is installed, the page rendered headless with its images decoded and visible."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from latentscale.model.covariates import CovariateScaler
from latentscale.model.simulate import simulate
from latentscale.report import SECTIONS, build_report, default_families, load_selection
from latentscale.results.fit_result import FitResult

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def sim_fit() -> FitResult:
    data, true, spec = simulate(k=2, n_benchmarks=5, n_families=40, family_sizes="real", seed=8)
    frame = data.frame
    scaler = CovariateScaler.fit(frame["size"], frame["tokens"])
    fit = FitResult.from_params(
        true, spec, scaler, log_likelihood=-123.4, method="aghq",
        n_obs=int(frame[list(spec.benchmarks)].notna().sum().sum()), n_models=len(frame),
        n_families=frame["family"].nunique(), families=tuple(pd.unique(frame["family"])), models=tuple(frame.index),
        data=frame[["family", "group", "size", "tokens", *spec.benchmarks]], data_name="simulated",
        diagnostics={"converged": True, "grad_norm": 1e-7, "seconds": 1.5},
    )
    fit.hessian = -np.eye(fit.theta.size) / 0.05**2
    return fit


@pytest.fixture(scope="module")
def fit():
    return sim_fit()


@pytest.fixture(scope="module")
def selection_csv(tmp_path_factory):
    # The columns `latentscale select -o` writes; AIC lowest at K = 3, BIC at K = 2.
    table = pd.DataFrame({"k": [1, 2, 3, 4], "log_likelihood": [-500.0, -440.0, -425.0, -421.0],
                          "n_params": [20, 28, 36, 44], "aic": [1040.0, 936.0, 922.0, 930.0],
                          "bic": [1080.0, 990.0, 1000.0, 1020.0], "converged": [True] * 4, "seconds": [1.0] * 4,
                          "anchors": ["b1", "b1,b2", "b1,b2,b3", "b1,b2,b3,b4"]})
    path = tmp_path_factory.mktemp("sel") / "table.csv"
    table.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def built(fit, selection_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    family = default_families(fit, 1)
    report = build_report(fit, out, selection=selection_csv, families=family, flops=[1e20, 1e22, 1e24],
                          n_samples=200, n_parameter_draws=10)  # as `report --samples 200`
    return report, out.read_text(), family


def test_sections_and_figures(built, fit):
    report, page, family = built
    for s in SECTIONS:
        assert f"<section id='{s}'>" in page, s
    expected = {"aic_bic", "loadings", "skill_corr", "resid_corr", "coefficients", "curve_1", "allocation"}
    assert set(report.figures) == expected
    imgs = re.findall(r'<img src="data:image/png;base64,([^"]+)"[^>]*data-figure="([^"]+)"', page)
    assert {name for _, name in imgs} == expected
    for data, name in imgs:
        raw = base64.b64decode(data)
        assert raw.startswith(PNG_MAGIC)
        assert raw == report.figures[name].read_bytes()  # the saved PNG is the embedded one
        assert report.figures[name].parent == report.html.with_name("report_figures")
    # Section contents: the minima of the selection table, the fit's figures, the family, the allocation.
    assert "AIC is lowest at K = 3, BIC (n = families) at K = 2" in page
    assert "simulated" in page and "-123.400" in page
    assert f"<h3>{family[0]} (" in page
    for skill in fit.spec.skills:
        assert f"<h3>{skill}</h3>" in page
    # the residual check: its summary is that of fit.resid("pearson")'s correlations
    corr = fit.resid("pearson").corr(min_periods=10).to_numpy()
    off = corr[~np.eye(len(corr), dtype=bool)]
    assert f"the mean correlation between benchmarks is {off[np.isfinite(off)].mean():.3f}" in page
    first = report.allocation.iloc[1]
    assert f"{first['size']:.3g} [" in page


def test_page_is_self_contained(built):
    _, page, _ = built
    refs = re.findall(r"""\b(?:src|href)\s*=\s*["']([^"']*)["']""", page, flags=re.I)
    assert refs, "no src/href found at all"
    assert all(r.startswith("data:image/png;base64,") or r.startswith("#") for r in refs), \
        [r[:60] for r in refs if not (r.startswith("data:") or r.startswith("#"))]
    assert not re.search(r"https?://", page)
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    assert "url(" not in page


def test_without_selection_or_families(fit, tmp_path):
    report = build_report(fit, tmp_path / "r.html", families=[], flops=[1e22], figures_dir=tmp_path / "figs")
    page = report.html.read_text()
    assert "No selection was run" in page and "--selection table.csv" in page
    assert "No family chosen" in page
    assert set(report.figures) == {"loadings", "skill_corr", "resid_corr", "coefficients", "allocation"}
    assert all(p.parent == tmp_path / "figs" and p.read_bytes().startswith(PNG_MAGIC) for p in report.figures.values())
    # A fit without a Hessian still gets a report, with the missing standard errors said.
    bare = sim_fit()
    bare.hessian = None
    report = build_report(bare, tmp_path / "bare.html", families=[], flops=[1e22])
    page = report.html.read_text()
    assert "Standard errors are not available" in page and "<section id='notes'>" in page


def test_default_families_are_the_largest(fit):
    counts = fit.data["family"].value_counts()
    top = default_families(fit, 2)
    assert [counts[f] for f in top] == sorted(counts, reverse=True)[:2]


def test_input_errors(fit, tmp_path, selection_csv):
    with pytest.raises(ValueError, match="famil.*nobody.*not in the fit's data"):
        build_report(fit, tmp_path / "r.html", families=["nobody"])
    bad = tmp_path / "bad.csv"
    bad.write_text("k,score\n1,2\n")
    with pytest.raises(ValueError, match="lacks column.*aic, bic"):
        build_report(fit, tmp_path / "r.html", selection=bad, families=[])
    with pytest.raises(FileNotFoundError):
        load_selection(tmp_path / "none.csv")
    with pytest.raises(ValueError, match="is a folder"):
        build_report(fit, tmp_path, families=[])
    with pytest.raises(ValueError, match="level"):
        build_report(fit, tmp_path / "r.html", families=[], level=2.0)
    assert not (tmp_path / "r.html").exists()  # nothing half-written
    assert list(load_selection(selection_csv)["k"]) == [1, 2, 3, 4]


def _calibration(fitted, factors=((0.5, 1.0), (0.95, 3.0)), **info):
    from latentscale.evaluation.calibration import Calibration

    rows = [{"benchmark": b, "level": lv, "factor": f, "quantile": f, "source": "benchmark", "n": 20,
             "coverage_model": 0.8} for b in fitted.spec.benchmarks for lv, f in factors]
    return Calibration(factors=pd.DataFrame(rows), scores=pd.DataFrame(), info={"held_out": 7, **info})


def test_calibration_widens_the_curves_bands(fit, built, tmp_path):
    from latentscale.evaluation.calibration import fit_fingerprint

    report, page, family = built
    cal = _calibration(fit, fit=fit_fingerprint(fit))
    out = build_report(fit, tmp_path / "cal.html", families=family, flops=[1e22], n_samples=200,
                       n_parameter_draws=10, calibration=cal)
    text = out.html.read_text()
    assert "widened by a calibration of this fit" in text and "7 models" in text and "3.00" in text
    assert "factor@95%" in text and not out.notes
    # the same draws as the uncalibrated report's curve, drawn with wider bands
    assert out.figures["curve_1"].read_bytes() != report.figures["curve_1"].read_bytes()
    # a calibration of another fit: said in the notes; one without the curves' levels: an error, nothing written
    other = _calibration(fit, fit={**fit_fingerprint(fit), "n_models": -1})
    noted = build_report(fit, tmp_path / "other.html", families=[], flops=[1e22], calibration=other)
    assert any("made for another fit" in n for n in noted.notes)
    with pytest.raises(ValueError, match=r"no factors at 50%.*scaling curves' bands are 50% and 95%"):
        build_report(fit, tmp_path / "bad.html", families=[], flops=[1e22],
                     calibration=_calibration(fit, factors=((0.8, 2.0), (0.95, 2.0))))
    assert not (tmp_path / "bad.html").exists()


# ---- CLI -------------------------------------------------------------------------------------
def run(*args):
    from latentscale.cli.app import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_report(fit, tmp_path, selection_csv):
    fit_path = tmp_path / "fit.json"
    fit.save(fit_path)
    out = tmp_path / "out" / "page.html"
    r = run("report", fit_path, "-o", out, "--selection", selection_csv, "--flops", "1e21..1e23", "--points", "3",
            "--family", default_families(fit, 1)[0], "--samples", "200")
    assert r.exit_code == 0, r.output
    assert "wrote" in r.stdout and out.exists()
    assert (tmp_path / "out" / "page_figures" / "allocation.png").exists()
    levels_80 = tmp_path / "cal80.json"
    _calibration(fit, factors=((0.8, 2.0), (0.95, 2.0))).save(levels_80)
    for args, message in [
        (["--calibration", tmp_path / "nocal.json"], "nocal.json"),
        (["--calibration", levels_80], "no factors at 50%"),
        (["--family", "nobody"], "nobody"),
        (["--selection", tmp_path / "missing.csv"], "no such selection table"),
        (["--flops", "x..y"], "bad --flops"),
        (["--level", "0"], "bad --level"),
        (["-o", tmp_path], "is a folder"),
    ]:
        r = run("report", fit_path, "-o", tmp_path / "x.html", *args) if args[0] != "-o" else run("report", fit_path, *args)
        assert r.exit_code == 2, (args, r.output)
        lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
        assert len(lines) == 1 and message in lines[0], (args, r.stderr)
    r = run("report", tmp_path / "nofit.json")
    assert r.exit_code == 2 and "no such" in r.stderr


# ---- headless Chromium ----------------------------------------------------------------------
def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


CHECK_SCRIPT = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0 && i.naturalHeight > 0; });
  var d = document.createElement('div'); d.id = 'imgcheck';
  d.textContent = ok.length + '/' + imgs.length; document.body.appendChild(d);
});
</script>"""


def _chromium(binary: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([binary, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
                           "--no-first-run", "--disable-extensions", *args],
                          capture_output=True, text=True, timeout=120)


def _colourful_pixels(path: Path) -> int:
    from PIL import Image

    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int(np.sum(rgb.max(axis=2) - rgb.min(axis=2) > 60))  # saturated: plot lines, bands, heatmaps


@pytest.mark.skipif(chromium_binary() is None,
                    reason="no chromium binary on PATH (Debian: apt-get install chromium); the headless rendering "
                           "check of the report needs it")
def test_report_renders_in_headless_chromium(built, tmp_path):
    binary = chromium_binary()
    report, page, _ = built
    n_images = len(report.figures)
    # 1. After load, every image is decoded (naturalWidth > 0): a copy of the page with a check script.
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", CHECK_SCRIPT + "</body>"))
    res = _chromium(binary, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    m = re.search(r'<div id="imgcheck">(\d+)/(\d+)</div>', res.stdout)
    assert m, res.stdout[-2000:]
    assert (int(m.group(1)), int(m.group(2))) == (n_images, n_images)
    # 2. A full-page screenshot shows them: far more coloured pixels than the same page with the images broken.
    shot, broken_shot = tmp_path / "shot.png", tmp_path / "broken.png"
    res = _chromium(binary, f"--screenshot={shot}", "--window-size=1400,9000", report.html.as_uri())
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    broken = tmp_path / "broken.html"
    broken.write_text(re.sub(r"data:image/png;base64,[^\"]+", "data:image/png;base64,AAAA", page))
    res = _chromium(binary, f"--screenshot={broken_shot}", "--window-size=1400,9000", broken.as_uri())
    assert res.returncode == 0 and broken_shot.exists(), res.stderr[-2000:]
    rendered, without = _colourful_pixels(shot), _colourful_pixels(broken_shot)
    assert rendered > 50_000 and rendered > 5 * max(without, 1), (rendered, without)
