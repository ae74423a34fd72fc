"""Start-up time of the command line: wall time of `budget-guard --help` and
`budget-guard quote "maestro 3k/1k"` as fresh processes, median of N runs each (target: under
0.5 s on a 2-core machine). Also the CPU time of each run, which the machine's other load
disturbs less than wall time, and the number of modules each imports.

    python benchmarks/startup.py [--runs 10]

Runs the installed `budget-guard` beside this interpreter (.venv/bin/budget-guard), with an
empty configuration in a temporary folder, after one warm-up run of each command (which also
fills the genai-prices cache a first run writes).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {
    "--help": ["--help"],
    'quote "maestro 3k/1k"': ["quote", "maestro 3k/1k"],
}
TARGET_SECONDS = 0.5


def executable() -> str:
    found = Path(sys.executable).with_name("budget-guard")
    if not found.exists():
        raise SystemExit(f"no budget-guard beside {sys.executable}; install it first (pip install -e .)")
    return str(found)


def one_run(command: list[str], cwd: str, env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def modules_imported(args: list[str], cwd: str, env: dict[str, str]) -> int:
    script = ("import sys, io, contextlib\nfrom bot.cli import main\n"
              "with contextlib.redirect_stdout(io.StringIO()):\n"
              "    try:\n        main(sys.argv[1:])\n    except SystemExit:\n        pass\n"
              "print(len(sys.modules))")
    done = subprocess.run([sys.executable, "-c", script, *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True)
    return int(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    program = executable()
    with tempfile.TemporaryDirectory() as folder:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("SLACK_", "TOGETHER_", "INGEST_", "BUDGET_GUARD_"))}
        print(f"budget-guard start-up, {args.runs} runs each, {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.2f} (a shared machine disturbs wall times)")
        for label, command in COMMANDS.items():
            one_run([program, *command], folder, env)  # warm-up: file caches, the genai-prices cache
            runs = [one_run([program, *command], folder, env) for _ in range(args.runs)]
            wall = statistics.median(w for w, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            verdict = "under" if wall < TARGET_SECONDS else "OVER"
            print(f"  budget-guard {label:<22} median wall {wall:.3f} s ({verdict} the {TARGET_SECONDS} s target; "
                  f"min {min(w for w, _ in runs):.3f}, max {max(w for w, _ in runs):.3f}), "
                  f"median CPU {cpu:.3f} s, {modules_imported(command, folder, env)} modules imported")


if __name__ == "__main__":
    main()
