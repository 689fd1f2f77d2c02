"""Writing results safely: atomic file creation, and the JSON document of a saved fit.

Every output file is created through a temporary file in the same folder, renamed into place:
a failure or an interrupt leaves the old file (or nothing) behind, never half a file. Saved fits
are JSON with a schema name and version (never pickle); :func:`validate_document` checks one on
load and names the file and the field at fault.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from latentscale.errors import InputError
from latentscale.results.jsonable import to_json

SCHEMA = "latentscale.fit"
#: 2: parameter blocks (natural-scale names, ``precision`` φ), quadrature spec, model options.
SCHEMA_VERSION = 2
#: Fields a saved fit cannot do without.
REQUIRED_FIELDS = ("spec", "scaler", "theta", "log_likelihood", "method", "n_obs", "n_models", "n_families",
                   "families", "models")


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Create ``path`` atomically: ``write(tmp)`` fills a temporary file in the same folder (same
    suffix, so writers that go by the extension work), which is then renamed into place; on any
    failure the temporary file is removed and ``path`` is left as it was. Errors name ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    except OSError as e:
        raise OSError(e.errno, f"cannot write {path}: {e.strerror}", str(path)) from None
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text to ``path`` through a temporary file in the same folder and an atomic rename."""
    def write(tmp: str) -> None:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_TRUNC), "w", encoding="utf-8") as fh:
            fh.write(text)

    return atomic_write(path, write)


def check_writable(path: str | os.PathLike) -> Path:
    """Fail early (before any long work) when ``path`` cannot be created: a folder, a missing or
    read-only parent folder. Nothing is created."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    probe = parent
    while not probe.exists():  # atomic_write creates missing folders: check the first that exists
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"cannot write {path}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {path}: the folder {probe} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"cannot write {path}: the file is read-only")
    return path


def frame_split(df: pd.DataFrame) -> dict:
    """A frame as JSON: index, columns and rows (NaN → null)."""
    return to_json({"index": [str(i) for i in df.index], "columns": [str(c) for c in df.columns],
                    "data": df.astype(object).to_numpy().tolist()})


def frame_from_split(d: dict) -> pd.DataFrame:
    df = pd.DataFrame(d["data"], index=pd.Index(d["index"], name="model"), columns=d["columns"])
    for col in df.columns:
        if col not in ("family", "group"):
            df[col] = pd.to_numeric(df[col]).astype(float)
    return df


def _fail(path, field: str, what: str):
    raise InputError(f"{path}: field {field!r} {what}; the file is not a usable latentscale fit "
                     "(refit, or restore the file)")


def _matrix(doc, key, shape, path):
    value = doc.get(key)
    if value is None:
        return None
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        _fail(path, key, "is not a numeric matrix")
    if arr.shape != shape:
        _fail(path, key, f"has shape {arr.shape}, but this model has {shape[0]} parameters")
    if not np.all(np.isfinite(arr)):
        _fail(path, key, "holds non-finite values")
    return arr


def validate_document(doc, path) -> dict:
    """Check a loaded fit document against its own spec; return the pieces as Python objects
    (spec, scaler, theta, hessian, score_outer, quadrature). Errors name the file and the field."""
    from latentscale.estimation.quadrature import QuadratureSpec
    from latentscale.model.covariates import CovariateScaler
    from latentscale.model.params import layout
    from latentscale.model.spec import ModelSpec

    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        found = doc.get("schema") if isinstance(doc, dict) else None
        raise InputError(f"{path} is not a latentscale fit (schema {found!r}, expected {SCHEMA!r})")
    version = doc.get("schema_version")
    if type(version) is not int or version < 1:
        raise InputError(f"{path} has no valid fit schema version ({version!r}; this latentscale writes "
                         f"{SCHEMA_VERSION})")
    if version > SCHEMA_VERSION:
        raise InputError(f"{path} has fit schema version {version}, newer than this latentscale understands "
                         f"({SCHEMA_VERSION}); upgrade latentscale")
    missing = [key for key in REQUIRED_FIELDS if key not in doc]
    if missing:
        raise InputError(f"{path} is not a complete latentscale fit: missing field(s) {', '.join(missing)}")
    try:
        spec = ModelSpec.from_dict(doc["spec"])
    except (KeyError, TypeError, ValueError) as e:
        _fail(path, "spec", f"is not a valid model specification ({e})")
    try:
        scaler = CovariateScaler.from_dict(doc["scaler"])
    except (KeyError, TypeError, ValueError) as e:
        _fail(path, "scaler", f"is not valid ({e})")
    if (scaler.mean.shape != (spec.p,) or scaler.scale.shape != (spec.p,) or not np.all(scaler.scale > 0)
            or scaler.names != spec.covariate_names):
        _fail(path, "scaler", f"does not match the {spec.p} covariates of the spec")
    try:
        quadrature = QuadratureSpec.from_dict(doc.get("quadrature"))
    except (TypeError, ValueError) as e:
        _fail(path, "quadrature", f"is not valid ({e})")
    P = layout(spec).size
    try:
        theta = np.asarray(doc["theta"], dtype=float)
    except (TypeError, ValueError):
        _fail(path, "theta", "is not a list of numbers")
    if theta.shape != (P,):
        _fail(path, "theta", f"has {theta.size} entries, but the spec ({spec.K} skills, {spec.J} benchmarks) "
                             f"has {P} parameters")
    if not np.all(np.isfinite(theta)):
        _fail(path, "theta", "holds non-finite values")
    from latentscale.estimation.estimators import METHODS

    if doc["method"] not in METHODS:
        _fail(path, "method", f"is {doc['method']!r}, not one of {', '.join(METHODS)}")
    llf = doc["log_likelihood"]
    if not isinstance(llf, (int, float)) or not np.isfinite(llf):
        _fail(path, "log_likelihood", "is not a finite number")
    for key in ("n_obs", "n_models", "n_families"):
        if type(doc[key]) is not int or doc[key] < 1:
            _fail(path, key, "is not a positive integer")
    if len(doc["families"]) != doc["n_families"]:
        _fail(path, "families", f"lists {len(doc['families'])} names for n_families = {doc['n_families']}")
    if len(doc["models"]) != doc["n_models"]:
        _fail(path, "models", f"lists {len(doc['models'])} names for n_models = {doc['n_models']}")
    hessian = _matrix(doc, "hessian", (P, P), path)
    score_outer = _matrix(doc, "score_outer", (P, P), path)
    data = None
    if doc.get("data") is not None:
        try:
            data = frame_from_split(doc["data"])
        except (KeyError, TypeError, ValueError) as e:
            _fail(path, "data", f"is not a valid table ({e})")
        missing_cols = [c for c in ("family", "size", "tokens", *spec.family_covariates, *spec.benchmarks)
                        if c not in data.columns]
        if missing_cols:
            _fail(path, "data", f"lacks column(s) {missing_cols} of the spec")
    return {"spec": spec, "scaler": scaler, "theta": theta, "quadrature": quadrature, "hessian": hessian,
            "score_outer": score_outer, "data": data}
