"""Supervision of the dev stack's processes: a child that dies is restarted with backoff, and the reason is said.

A child that keeps dying waits longer each time (1 s, 2 s, 4 s … up to 30 s); one that stayed up for a minute
starts from 1 s again. Each child's pid is written to `<run_dir>/<name>.pid`, so operators and the benchmark can
find (and kill) it.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0
STABLE_AFTER = 60.0


def describe_exit(code: int) -> str:
    """`exited with code 1`, `killed by SIGKILL`."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class Child:
    name: str
    start: Callable[[], subprocess.Popen[bytes]]
    run_dir: Path
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff: float = FIRST_BACKOFF
    restart_at: float | None = None
    restarts: int = field(default=0)

    def launch(self) -> None:
        self.proc = self.start()
        self.started_at = time.monotonic()
        self.restart_at = None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / f"{self.name}.pid").write_text(f"{self.proc.pid}\n")

    def check(self, say: Callable[[str], None], now: float | None = None) -> None:
        """Notice an exit (schedule the restart, say why) or restart when its time has come."""
        now = time.monotonic() if now is None else now
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.restarts += 1
                self.launch()
                say(f"{self.name}: restarted (pid {self.proc.pid if self.proc else '?'})")
            return
        if self.proc is None or self.proc.poll() is None:
            return
        if now - self.started_at >= STABLE_AFTER:
            self.backoff = FIRST_BACKOFF
        say(f"{self.name}: {describe_exit(self.proc.returncode)}; restarting in {self.backoff:g} s")
        self.restart_at = now + self.backoff
        self.backoff = min(self.backoff * 2, MAX_BACKOFF)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()

    def wait(self, timeout: float = 15) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        (self.run_dir / f"{self.name}.pid").unlink(missing_ok=True)


def supervise(children: Sequence[Child], say: Callable[[str], None], *, interval: float = 0.5) -> None:
    """Keep the children running until SIGINT or SIGTERM; then stop them all (newest first)."""
    stopping = False

    def _on_signal(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    while not stopping:
        for child in children:
            child.check(say)
        time.sleep(interval)
    for child in reversed(children):
        child.stop()
    for child in reversed(children):
        child.wait()
