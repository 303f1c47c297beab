"""Cold start: how long the command line, the API and the worker take to be useful, and what they import.

    .venv/bin/python bench/bench_cold_start.py [--runs 5]

Prints, each the median (and best) of --runs fresh processes on a fresh SQLite database in a temporary var dir:
- `revloop --help`: wall time to the help text (goal: < 1 s);
- `revloop serve`: wall time from start to the first 200 from GET /v1/health;
- `revloop worker`: wall time from start to its "worker started" line;
and from `python -X importtime` (one run each): the cumulative import time of the CLI (`api.cli`), the API app
(`api.app`) and the worker's runtime (`agents.runtime`), and which heavy packages each pulls in. With
REVLOOP_LLM=none nothing here should import openai; the CLI and the API import none of them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_speed_to_lead import free_port  # noqa: E402

HEAVY = (
    "openai",
    "chromadb",
    "langgraph",
    "langsmith",
    "langchain_core",
    "sklearn",
    "pandas",
    "scipy",
    "numpy",
    "fpdf",
    "streamlit",
    "onnxruntime",
)
IMPORTS = {
    "revloop --help (api.cli)": "api.cli",
    "the API app (api.app)": "api.app",
    "the worker (agents.runtime)": "agents.runtime",
}


def revloop_command() -> list[str]:
    script = Path(sys.executable).with_name("revloop")
    return [str(script)] if script.exists() else [sys.executable, "-m", "api.cli"]


def clean_env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVLOOP_")}
    env.update(REVLOOP_VAR_DIR=str(folder), REVLOOP_LLM="none")
    return env


def time_help(env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([*revloop_command(), "--help"], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def time_serve(env: dict[str, str], folder: Path) -> float:
    port = free_port()
    start = time.perf_counter()
    with (folder / "serve.log").open("ab") as log:
        proc = subprocess.Popen([*revloop_command(), "serve", "--port", str(port)], env=env, stdout=log, stderr=log)
    try:
        deadline = start + 120
        while time.perf_counter() < deadline:
            if proc.poll() is not None:
                sys.exit(f"revloop serve exited; see {folder / 'serve.log'}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200:
                    return time.perf_counter() - start
            except httpx.HTTPError:
                pass
            time.sleep(0.01)
        sys.exit("revloop serve did not answer within 120 s")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def time_worker(env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen([*revloop_command(), "worker"], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        for line in proc.stderr:
            if b"worker started" in line:
                return time.perf_counter() - start
        sys.exit("revloop worker exited before it started")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    raise AssertionError("unreachable")


def import_profile(module: str, env: dict[str, str]) -> tuple[float, list[str]]:
    """(cumulative seconds of importing `module`, the heavy top-level packages it imported)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"], env=env, capture_output=True, text=True
    )
    total, seen = 0.0, set()
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        name = name.strip()
        if name == module:
            total = int(cumulative) / 1e6
        top = name.split(".")[0]
        if top in HEAVY:
            seen.add(top)
    return total, sorted(seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per figure (median and best printed)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="revloop-bench-cold-"))
    env = clean_env(folder)
    subprocess.run([*revloop_command(), "db", "upgrade"], env=env, check=True, capture_output=True)

    figures: dict[str, list[float]] = {"revloop --help": [], "revloop serve -> first 200": [], "revloop worker": []}
    for n in range(args.runs):
        print(f"run {n + 1}/{args.runs}", file=sys.stderr)
        figures["revloop --help"].append(time_help(env))
        figures["revloop serve -> first 200"].append(time_serve(env, folder))
        figures["revloop worker"].append(time_worker(env))

    load = os.getloadavg()[0]
    print(f"\nCold start ({args.runs} runs each, SQLite, REVLOOP_LLM=none, {os.cpu_count()} cores, load {load:.1f})")
    for name, values in figures.items():
        goal = (
            "  (goal < 1 s: " + ("met" if statistics.median(values) < 1 else "NOT met") + ")" if "help" in name else ""
        )
        print(f"  {name:<28} median {statistics.median(values):6.2f} s   best {min(values):6.2f} s{goal}")
    print("\nImports (python -X importtime, one run each)")
    for label, module in IMPORTS.items():
        seconds, heavy = import_profile(module, env)
        print(f"  {label:<30} {seconds:6.2f} s   heavy packages: {', '.join(heavy) or 'none'}")


if __name__ == "__main__":
    main()
