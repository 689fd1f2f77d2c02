"""The longest silence of each long-running command: runs it as a user would (a fresh process) and
times the arrival of every line on stderr and stdout, from the start of the process (imports
included) to its exit. The target is at most 5 s between lines.

Usage::

    python benchmarks/progress_gaps.py [--out /tmp/gaps]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path


def longest_gap(cmd: list[str]) -> tuple[float, float, int, int, str]:
    """(longest gap in s, wall s, lines, exit code, the line after the longest gap)."""
    t0 = time.perf_counter()
    stamps: list[tuple[float, str]] = []
    lock = threading.Lock()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)

    def read(stream):
        for line in stream:
            with lock:
                stamps.append((time.perf_counter() - t0, line.rstrip()))

    threads = [threading.Thread(target=read, args=(s,)) for s in (proc.stdout, proc.stderr)]
    for t in threads:
        t.start()
    rc = proc.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    stamps.sort()
    times = [0.0] + [s for s, _ in stamps] + [wall]
    gaps = [b - a for a, b in zip(times, times[1:])]
    i = max(range(len(gaps)), key=gaps.__getitem__)
    after = stamps[i][1] if i < len(stamps) else "(exit)"
    return max(gaps), wall, len(stamps), rc, after[:100]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/latentscale-gaps")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    ls = [sys.executable, "-m", "latentscale.cli.app"]
    fit = out / "fit.json"
    models = out / "new.csv"
    models.write_text("model,family,size,tokens\n" + "".join(f"new{i},llama-2,{7 * (i + 1)},2\n" for i in range(20)))
    commands = {
        "fit": [*ls, "fit", "lvf-paper", "-k", "4", "-o", str(fit)],
        "select": [*ls, "select", "lvf-paper", "--k", "1..3"],
        "predict": [*ls, "predict", str(fit), "--models", str(models), "-o", str(out / "pred.csv")],
        "posterior": [*ls, "posterior", str(fit), "llama-2"],
        "evaluate": [*ls, "evaluate", "lvf-paper", "--protocol", "holdout-largest", "-k", "2"],
        "report": [*ls, "report", str(fit), "-o", str(out / "report.html")],
    }
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores python {platform.python_version()}")
    print(f"{'command':10s} {'longest gap':>11s} {'wall':>7s} {'lines':>5s} rc  line after the gap")
    for name, cmd in commands.items():
        gap, wall, n, rc, after = longest_gap(cmd)
        print(f"{name:10s} {gap:10.1f}s {wall:6.1f}s {n:5d} {rc:2d}  {after}", flush=True)


if __name__ == "__main__":
    main()
