"""Named datasets: pinned source files (URL + sha256), local or cached resolution, builders.

Files resolve from ``$LATENTSCALE_DATA_DIR/<source>/<file>`` when that variable is set; otherwise
from the package data (the small MIT-licensed tables the README uses ship with the package, see
``latentscale/data/files``), else they are downloaded once into ``$LATENTSCALE_CACHE_DIR`` (default
``~/.cache/latentscale``). Every file is checked against its sha256. A download address
(``$LATENTSCALE_DATA_URL`` or ``base_url=``) or ``cache_dir=`` asks for the cache and download path
even for shipped files. ``$LATENTSCALE_DATA_URL`` (or
``base_url=``) replaces the download address by ``<base_url>/<source>/<file>``.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import tempfile
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd

from latentscale.data import lvf
from latentscale.data.dataset import ScoreData
from latentscale.data.loaders import build_score_data, read_scores
from latentscale.data.validate import DataError

#: Download address of each source, pinned to a commit.
SOURCE_URLS: dict[str, str] = {
    "lvf": "https://raw.githubusercontent.com/felipemaiapolo/statistical-scaling-law/"
    "ec189676fb1ff21115536651f46bf9d279578cb8/data",
    "sloth": "https://raw.githubusercontent.com/felipemaiapolo/sloth/"
    "6dc6bb3efeefc7c1db01d60cba1f4b73e5d260d1/data",
}

#: sha256 of every source file, keyed by (source, file name).
SHA256: dict[tuple[str, str], str] = {
    ("lvf", "df_full_v1.csv"): "38079ffdb3829ac23cce18f2d41bd11c8b13426bab37b38b6f89ac4a3b4b6ffa",
    ("lvf", "df_full_v2.csv"): "cb509883cf57c8bd9bd19a0c6ef4cc331d1348e0ca703a001dc24de2743fb4d6",
    ("lvf", "open-llm-leaderboard_new.csv"): "6fd9f4760999fb04fe441a0480b869ebb2458449233dd51dd9821c20fe958298",
    ("sloth", "data_v2.csv"): "528d08d7bc04dc71a73d42ea0a1041396616505b53a140052828104afe0c6f39",
    ("sloth", "published_errors_long.csv"): "10b19a557bfde55b50d5ecb91ed95fc0d80f4dd611ef668c3fceacb35e8c2bdb",
}

#: Registered files with no download address (derived tables): they resolve from LATENTSCALE_DATA_DIR only.
LOCAL_ONLY: frozenset[tuple[str, str]] = frozenset({("sloth", "published_errors_long.csv")})

SLOTH_BENCHMARKS = (
    "MMLU", "ARC", "HellaSwag", "Winogrande", "TruthfulQA", "GSM8K",
    "IFEval", "BBH", "MATH Lvl 5", "GPQA", "MUSR", "MMLU-PRO",
)


def file_url(source: str, filename: str, base_url: str | None = None) -> str:
    """Download address of a source file (``base_url`` or $LATENTSCALE_DATA_URL overrides)."""
    base = base_url or os.environ.get("LATENTSCALE_DATA_URL")
    if base:
        return f"{base.rstrip('/')}/{source}/{filename}"
    return f"{SOURCE_URLS[source]}/{filename}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def packaged_file(source: str, filename: str) -> Path | None:
    """Path of a registered file shipped as package data (None when it is not shipped)."""
    path = Path(str(resources.files("latentscale.data"))) / "files" / source / filename
    return path if path.is_file() else None


def _made_dirs(dest: Path) -> list[Path]:
    """The folders above ``dest`` that do not exist yet (innermost first)."""
    missing, d = [], dest.parent
    while not d.exists():
        missing.append(d)
        d = d.parent
    return missing


def _download(url: str, dest: Path, expected: str) -> None:
    """Fetch ``url`` into ``dest`` atomically; on any failure raise with what to do, leaving nothing
    behind (no partial file, no folder this call created)."""
    created = _made_dirs(dest)
    tmp = None
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                h.update(chunk)
                out.write(chunk)
        got = h.hexdigest()
        if got != expected:
            raise DataError(
                f"sha256 mismatch for {url}: expected {expected}, got {got}; the download was deleted. "
                "The file at that address changed or the transfer was corrupted."
            )
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise DataError(
            f"could not download {url} ({reason}). Put the file at {dest} yourself, or set LATENTSCALE_DATA_DIR "
            f"to a folder that holds {dest.parent.name}/{dest.name} (LATENTSCALE_DATA_URL replaces the address)."
        ) from None
    finally:
        if tmp and os.path.exists(tmp):
            os.remove(tmp)
        for d in created:  # innermost first; only folders this call made and left empty
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()


def resolve_file(
    source: str,
    filename: str,
    *,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    base_url: str | None = None,
) -> Path:
    """Local path of a registered source file: from the data dir, the cache, or a download."""
    key = (source, filename)
    if key not in SHA256:
        raise DataError(f"{source}/{filename} is not a registered source file")
    expected = SHA256[key]
    data_dir = data_dir or os.environ.get("LATENTSCALE_DATA_DIR")
    if data_dir:
        path = Path(data_dir).expanduser() / source / filename
        if not path.is_file():
            raise DataError(
                f"{path} not found. LATENTSCALE_DATA_DIR (or data_dir=) must point at the folder that "
                f"holds {source}/{filename}; set it to that folder, or unset it to download the file "
                f"from {file_url(source, filename, base_url)}."
            )
        got = _sha256(path)
        if got != expected:
            warnings.warn(
                f"{path} differs from the registered file (sha256 {got}, expected {expected}); "
                "results may not match the published data.",
                UserWarning,
                stacklevel=2,
            )
        return path
    shipped = packaged_file(source, filename)
    if shipped is not None and not (cache_dir or base_url or os.environ.get("LATENTSCALE_DATA_URL")):
        if _sha256(shipped) != expected:
            raise DataError(f"the packaged file {shipped} is damaged (sha256 differs from the registered one); "
                            "reinstall latentscale or set LATENTSCALE_DATA_DIR")
        return shipped
    if key in LOCAL_ONLY:
        raise DataError(f"{source}/{filename} has no download address; set LATENTSCALE_DATA_DIR (or data_dir=) to "
                        f"the folder that holds {source}/{filename}")
    cache = Path(cache_dir or os.environ.get("LATENTSCALE_CACHE_DIR") or "~/.cache/latentscale").expanduser()
    path = cache / source / filename
    if path.is_file() and _sha256(path) == expected:
        return path
    _download(file_url(source, filename, base_url), path, expected)
    return path


@dataclass(frozen=True)
class DatasetEntry:
    """A named dataset: its source files and a builder from their local paths."""

    name: str
    description: str
    files: tuple[tuple[str, str], ...]
    build: Callable[..., ScoreData]


def _build_sloth(paths: dict[str, Path], **options) -> ScoreData:
    df = pd.read_csv(paths["data_v2.csv"])
    return build_score_data(
        df, model="Model", family="Family2", group="Family", size="#Params (B)",
        tokens="Pretraining Data Size (T)", benchmarks=SLOTH_BENCHMARKS, name="sloth", attributes=("Instruct",),
        **options,
    )


_LVF = ("lvf", "df_full_v1.csv"), ("lvf", "df_full_v2.csv"), ("lvf", "open-llm-leaderboard_new.csv")

DATASETS: dict[str, DatasetEntry] = {
    e.name: e
    for e in (
        DatasetEntry(
            "lvf-paper",
            "Paper data (arXiv:2512.06553): outer join of lvf df_full_v1 and df_full_v2, 286 models, "
            "170 families, 12 benchmarks, as published (111 rows carry normalized v2 scores, flagged)",
            _LVF,
            lambda p, **o: lvf.build_paper(p, raw=False, **o),
        ),
        DatasetEntry(
            "lvf-paper-raw",
            "lvf-paper with the normalized v2 rows converted to raw accuracies from the leaderboard dump",
            _LVF,
            lambda p, **o: lvf.build_paper(p, raw=True, **o),
        ),
        DatasetEntry("lvf-v1", "lvf df_full_v1.csv: Open LLM Leaderboard v1 benchmarks, 168 models",
                     _LVF[:1], lvf.build_v1),
        DatasetEntry("lvf-v2", "lvf df_full_v2.csv: Open LLM Leaderboard v2 benchmarks, 216 models "
                     "(normalized rows flagged)", (_LVF[1], _LVF[2]), lvf.build_v2),
        DatasetEntry(
            "sloth",
            "Sloth data_v2.csv (arXiv:2412.06540): 188 models, family = Family2 (68), group = Family (35), "
            "12 benchmarks; family attribute Instruct (27 instruction-tuned families)",
            (("sloth", "data_v2.csv"),),
            _build_sloth,
        ),
    )
}

_RESOLVE_OPTIONS = ("data_dir", "cache_dir", "base_url")
_BUILD_OPTIONS = ("floors", "require_covariates")


def list_datasets() -> list[str]:
    """Names of the registered datasets (descriptions in ``DATASETS[name].description``)."""
    return list(DATASETS)


def load_dataset(name_or_path: str | Path, **options) -> ScoreData:
    """A registered dataset by name, or a CSV / Parquet file by path, validated as :class:`ScoreData`.

    Options for named datasets: ``data_dir``, ``cache_dir``, ``base_url`` (file resolution),
    ``floors``, ``require_covariates``. For a file, the options of :func:`read_scores`.
    """
    key = str(name_or_path)
    if key in DATASETS:
        entry = DATASETS[key]
        unknown = set(options) - set(_RESOLVE_OPTIONS) - set(_BUILD_OPTIONS)
        if unknown:
            raise TypeError(f"load_dataset({key!r}) got unknown options {sorted(unknown)}; "
                            f"allowed: {', '.join(_RESOLVE_OPTIONS + _BUILD_OPTIONS)}")
        where = {k: options[k] for k in _RESOLVE_OPTIONS if k in options}
        build = {k: options[k] for k in _BUILD_OPTIONS if k in options}
        paths = {f: resolve_file(s, f, **where) for s, f in entry.files}
        return entry.build(paths, **build)
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return read_scores(path, **options)
    raise DataError(
        f"{key!r} is neither a registered dataset ({', '.join(DATASETS)}) nor an existing file."
    )
