"""Registry: file resolution, download against a local HTTP server, lvf builders (synthetic data)."""

from __future__ import annotations

import hashlib
import http.server
import threading
import warnings
from functools import partial

import numpy as np
import pandas as pd
import pytest

from latentscale.data import DataError, list_datasets, load_dataset
from latentscale.data import registry


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in ("LATENTSCALE_DATA_DIR", "LATENTSCALE_CACHE_DIR", "LATENTSCALE_DATA_URL"):
        monkeypatch.delenv(var, raising=False)


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/www on 127.0.0.1; yields (base_url, root, list of requested paths)."""
    root = tmp_path / "www"
    root.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root, requests
    finally:
        httpd.shutdown()
        httpd.server_close()


def sloth_table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({
        "Model": ["p-1b", "p-7b", "q-2b", "q-2b-chat"],
        "Family": ["p", "p", "q", "q"],
        "Family2": ["p", "p", "q", "q-chat"],
        "Instruct": [False, False, False, True],
        "#Params (B)": [1.0, 7.0, 2.0, 2.0],
        "Pretraining Data Size (T)": [1.0, 2.0, np.nan, np.nan],
    })
    for b in registry.SLOTH_BENCHMARKS:
        df[b] = np.round(0.5 + 0.3 * rng.random(4), 2)
    return df


def put_sloth(root, monkeypatch) -> None:
    (root / "sloth").mkdir(parents=True, exist_ok=True)
    sloth_table().to_csv(root / "sloth" / "data_v2.csv")
    monkeypatch.setitem(registry.SHA256, ("sloth", "data_v2.csv"), sha(root / "sloth" / "data_v2.csv"))


def test_list_and_urls():
    assert set(list_datasets()) == {"lvf-paper", "lvf-paper-raw", "lvf-v1", "lvf-v2", "sloth"}
    url = registry.file_url("lvf", "df_full_v1.csv")
    assert url.startswith("https://raw.githubusercontent.com/felipemaiapolo/statistical-scaling-law/ec189676")
    assert registry.file_url("sloth", "data_v2.csv").endswith("6dc6bb3efeefc7c1db01d60cba1f4b73e5d260d1/data/data_v2.csv")
    assert registry.file_url("sloth", "x.csv", base_url="http://h/") == "http://h/sloth/x.csv"
    assert all(len(h) == 64 for h in registry.SHA256.values())


def test_download_verify_and_cache(server, tmp_path, monkeypatch):
    base, root, requests = server
    put_sloth(root, monkeypatch)
    monkeypatch.setenv("LATENTSCALE_DATA_URL", base)
    monkeypatch.setenv("LATENTSCALE_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.warns(UserWarning, match="no tokens"):
        data = load_dataset("sloth")
    assert data.n_models == 4 and data.n_families == 3
    assert list(data.frame["group"]) == ["p", "p", "q", "q"]
    assert data.attributes == ("Instruct",) and list(data.frame["Instruct"]) == [0.0, 0.0, 0.0, 1.0]
    assert data.benchmarks == registry.SLOTH_BENCHMARKS
    assert data.floors["MATH Lvl 5"] == 0.0 and data.floors["MUSR"] == pytest.approx(0.3433)
    cached = tmp_path / "cache" / "sloth" / "data_v2.csv"
    assert cached.read_bytes() == (root / "sloth" / "data_v2.csv").read_bytes()
    assert requests == ["/sloth/data_v2.csv"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_dataset("sloth")
    assert len(requests) == 1  # served from the cache
    assert [p.name for p in cached.parent.iterdir()] == ["data_v2.csv"]  # no temp files left


def test_download_hash_mismatch_deletes(server, tmp_path, monkeypatch):
    base, root, requests = server
    put_sloth(root, monkeypatch)
    monkeypatch.setitem(registry.SHA256, ("sloth", "data_v2.csv"), "0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="sha256 mismatch"):
        registry.resolve_file("sloth", "data_v2.csv", cache_dir=cache, base_url=base)
    assert not any(p.is_file() for p in cache.rglob("*"))
    assert requests == ["/sloth/data_v2.csv"]


def test_bad_cached_file_is_replaced(server, tmp_path, monkeypatch):
    base, root, _ = server
    put_sloth(root, monkeypatch)
    stale = tmp_path / "cache" / "sloth" / "data_v2.csv"
    stale.parent.mkdir(parents=True)
    stale.write_text("stale")
    path = registry.resolve_file("sloth", "data_v2.csv", cache_dir=tmp_path / "cache", base_url=base)
    assert sha(path) == registry.SHA256[("sloth", "data_v2.csv")]


def test_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTSCALE_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match="LATENTSCALE_DATA_DIR") as e:
        load_dataset("sloth")
    assert "data_v2.csv" in str(e.value)
    put_sloth(tmp_path, monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert load_dataset("sloth").n_models == 4
    monkeypatch.setitem(registry.SHA256, ("sloth", "data_v2.csv"), "0" * 64)
    with pytest.warns(UserWarning, match="differs from the registered file"):
        load_dataset("sloth")


def test_load_dataset_path_and_unknown(tmp_path):
    path = tmp_path / "mine.csv"
    pd.DataFrame({"model": ["x", "y"], "family": ["f", "f"], "size": [1.0, 2.0], "tokens": [1.0, 1.0],
                  "mmlu": [0.3, 0.4]}).to_csv(path, index=False)
    data = load_dataset(str(path))
    assert data.name == "mine" and data.benchmarks == ("mmlu",)
    with pytest.raises(DataError, match="neither a registered dataset"):
        load_dataset("no-such-dataset")
    with pytest.raises(TypeError, match="unknown options"):
        load_dataset("sloth", colour="red")


# --- lvf builders on a synthetic copy of the file layout ------------------------------------

NORM = {"IFEval": 30.0, "BBH": 5.0, "MATH Lvl 5": 1.0, "MMLU-PRO": 2.0, "GPQA": 1.5, "MUSR": 3.0}
RAW = {"IFEval": 0.30, "BBH": 0.33, "MATH Lvl 5": 0.01, "MMLU-PRO": 0.118, "GPQA": 0.261, "MUSR": 0.355}


def put_lvf(root, monkeypatch) -> None:
    d = root / "lvf"
    d.mkdir(parents=True)
    keys = {"family": ["a", "a", "c"], "size": [1.0, 7.0, 3.0], "tokens": [1.0, 2.0, 1.0]}
    v1 = pd.DataFrame({"model": ["a-1b", "a-7b", "c-3b"], **keys})
    v1["flops"] = 6 * v1["size"] * v1["tokens"]
    for b, x in zip(("arc", "hellaswag", "mmlu", "truthfulqa", "winogrande", "gsm8k"), (.3, .4, .3, .4, .55, .05)):
        v1[b] = [x, x + 0.1, x + 0.05]
    rows = [  # raw, raw, normalized (in dump), normalized (in dump, repeated name), normalized (not in dump)
        ("a-1b", "a", 1.0, 1.0, [0.20, 0.30, 0.01, 0.12, 0.26, 0.36]),
        ("a-7b", "a", 7.0, 2.0, [0.40, 0.40, 0.05, 0.25, 0.28, 0.40]),
        ("ft-7b", "ft", 7.0, 2.0, [v / 100 for v in NORM.values()]),
        ("ft-7b", "ft", 7.0, 2.0, [0.31, 0.06, 0.02, 0.03, 0.01, 0.04]),
        ("odd-7b", "odd", 7.0, 2.0, [0.25, 0.04, 0.00, 0.05, 0.02, 0.03]),
    ]
    v2 = pd.DataFrame([(m, f, s, t, 6 * s * t, *y) for m, f, s, t, y in rows],
                      columns=["model", "family", "size", "tokens", "flops",
                               "ifeval", "bbh", "math", "mmlu-pro", "gpqa", "musr"])
    board = pd.DataFrame({"fullname": ["org/ft-7B", "other/ft-7b", "zz/unrelated"]})
    for col in NORM:
        board[col] = [NORM[col], [31.0, 6.0, 2.0, 3.0, 1.0, 4.0][list(NORM).index(col)], 50.0]
        board[col + " Raw"] = [RAW[col], RAW[col] + 0.01, 0.6]
    v1.to_csv(d / "df_full_v1.csv")
    v2.to_csv(d / "df_full_v2.csv")
    board.to_csv(d / "open-llm-leaderboard_new.csv")
    for f in ("df_full_v1.csv", "df_full_v2.csv", "open-llm-leaderboard_new.csv"):
        monkeypatch.setitem(registry.SHA256, ("lvf", f), sha(d / f))


def test_lvf_paper_flags_normalized_rows(tmp_path, monkeypatch):
    put_lvf(tmp_path, monkeypatch)
    with pytest.warns(UserWarning) as rec:
        data = load_dataset("lvf-paper", data_dir=tmp_path)
    assert data.benchmarks[:4] == ("math", "ifeval", "hellaswag", "bbh") and len(data.benchmarks) == 12
    assert data.n_models == 6  # a-1b, a-7b, c-3b, ft-7b, ft-7b#2, odd-7b
    assert {"ft-7b", "ft-7b#2", "odd-7b"} <= set(data.models)
    norm = [w for w in data.warnings if "NORMALIZED" in w]
    assert len(norm) == 1 and "ft-7b, ft-7b#2" in norm[0] and "a-7b" not in norm[0]
    assert any("odd-7b" in w and "match no leaderboard row" in w for w in data.warnings)
    assert any("ft-7b#2 (other/ft-7b)" in w for w in data.warnings)
    assert {str(w.message).split(": ", 1)[1] for w in rec} >= set(data.warnings)
    assert data.frame.loc["ft-7b", "gpqa"] == pytest.approx(0.015)  # kept as published


def test_lvf_paper_raw_converts_and_drops(tmp_path, monkeypatch):
    put_lvf(tmp_path, monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_dataset("lvf-paper-raw", data_dir=tmp_path)
    assert "odd-7b" not in data.models and data.n_models == 5
    assert data.frame.loc["ft-7b", "gpqa"] == pytest.approx(RAW["GPQA"])
    assert data.frame.loc["ft-7b#2", "gpqa"] == pytest.approx(RAW["GPQA"] + 0.01)
    assert data.frame.loc["a-7b", "gpqa"] == pytest.approx(0.28)  # raw rows untouched
    msg = [w for w in data.warnings if "converted" in w]
    assert len(msg) == 1 and "converted 2 rows" in msg[0] and "dropped 1 rows" in msg[0] and "odd-7b" in msg[0]
    assert not any("NORMALIZED" in w or "look like leaderboard-normalized" in w for w in data.warnings)


def test_lvf_v1_v2(tmp_path, monkeypatch):
    put_lvf(tmp_path, monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        v1 = load_dataset("lvf-v1", data_dir=tmp_path)
    assert v1.n_models == 3 and v1.benchmarks[0] == "arc"
    with pytest.warns(UserWarning, match="NORMALIZED"):
        v2 = load_dataset("lvf-v2", data_dir=tmp_path)
    assert v2.n_models == 5 and v2.benchmarks == ("ifeval", "bbh", "math", "mmlu-pro", "gpqa", "musr")


def test_packaged_files_need_no_network_or_variable(monkeypatch):
    """The registered files the README uses ship with the package, byte for byte (sha256), with their
    license; with LATENTSCALE_DATA_DIR unset they resolve there, and no download is attempted."""
    def refuse(*args, **kwargs):
        raise AssertionError("no download expected")

    monkeypatch.setattr(registry.urllib.request, "urlopen", refuse)
    for source, filename in {f for e in registry.DATASETS.values() for f in e.files}:
        path = registry.resolve_file(source, filename)
        assert path == registry.packaged_file(source, filename)
        assert sha(path) == registry.SHA256[(source, filename)]
        assert "MIT License" in (path.parent / "LICENSE").read_text()
        assert "sha256" in (path.parent / "SOURCE.md").read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert load_dataset("lvf-paper").n_models == 286 and load_dataset("sloth").n_models == 188


def test_failed_download_names_the_address_and_leaves_no_folder(tmp_path):
    """An unreachable address: one error naming the URL, the local file and LATENTSCALE_DATA_DIR; the cache
    folder the call would have made is not left behind."""
    cache = tmp_path / "cache"
    url = "http://127.0.0.1:9"  # discard port: connection refused
    with pytest.raises(DataError) as e:
        registry.resolve_file("lvf", "df_full_v1.csv", cache_dir=cache, base_url=url)
    msg = str(e.value)
    assert f"{url}/lvf/df_full_v1.csv" in msg and str(cache / "lvf" / "df_full_v1.csv") in msg
    assert "LATENTSCALE_DATA_DIR" in msg
    assert not cache.exists()


def test_fit_command_runs_offline_without_the_variable(tmp_path, monkeypatch):
    """`latentscale fit lvf-paper` with LATENTSCALE_DATA_DIR unset, HOME a new empty folder and every
    download refused: the shipped tables are used (a cheap K = 1 Laplace fit keeps the test fast)."""
    import socket

    from typer.testing import CliRunner

    from latentscale.cli.app import app

    def refuse(*args, **kwargs):
        raise OSError("network blocked by the test")

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(registry.urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    res = CliRunner().invoke(app, ["fit", "lvf-paper", "-k", "1", "--method", "laplace", "--starts", "1",
                                   "--hessian", "laplace", "--json"])
    assert res.exit_code == 0, res.output
    assert '"n_models": 286' in res.stdout
    assert not list(tmp_path.rglob("*.csv"))  # no data cached or downloaded into the new HOME
