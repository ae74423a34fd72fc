"""Running `budget-guard` as real processes in tests: serve on a free port, stop it with a signal."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.harness import free_port

REPO = Path(__file__).resolve().parents[1]


class ServeProcess:
    """`budget-guard serve` in a child process, with its stderr kept for the test to read."""

    def __init__(self, env: dict[str, str], cwd: Path, *args: str) -> None:
        self.port = free_port()
        self.log_path = cwd / f"serve-{self.port}.log"
        self.env = {**os.environ, "PYTHONPATH": str(REPO), **env}
        self.args = [sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port), *args]
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> "ServeProcess":
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(self.args, env=self.env, cwd=self.cwd, stdout=self._log, stderr=self._log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited with {self.process.returncode}: {self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"serve did not become healthy: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=timeout)
        finally:
            self._log.close()
        return code

    def loop_passes(self) -> dict[str, int]:
        """How many passes each scheduler loop (`catch-up`, `outbox`) has finished, from /metrics."""
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        found = re.findall(r'^budget_guard_scheduler_loops_total\{loop="([^"]+)"\} (\d+)$', text, re.M)
        return {loop: int(n) for loop, n in found}

    def __enter__(self) -> "ServeProcess":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop(signal.SIGKILL)


def wait_until(predicate, timeout: float = 20, interval: float = 0.1) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def wait_for_loop_passes(*processes: ServeProcess, passes: int = 3, timeout: float = 30) -> bool:
    """Wait until each process's scheduler loops (`catch-up`, `outbox`) have all run `passes` more
    times: time enough for a duplicate post to show if one would."""
    start = [p.loop_passes() for p in processes]

    def done() -> bool:
        for process, before in zip(processes, start, strict=True):
            now = process.loop_passes()
            if any(now.get(loop, 0) - before.get(loop, 0) < passes for loop in ("catch-up", "outbox")):
                return False
        return True
    return wait_until(done, timeout=timeout)
