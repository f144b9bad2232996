"""Kill a writer process with SIGKILL at the point where it paused (it writes ``PAUSED`` into a folder and waits)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


def kill_when_paused(argv: Sequence[str], env: Mapping[str, str], folder: Path, timeout: float) -> None:
    """Run ``argv``; once ``folder / "PAUSED"`` exists, SIGKILL it. Fails if it exits first or takes over
    ``timeout`` seconds."""
    proc = subprocess.Popen(list(argv), env=dict(env), stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        while not (folder / "PAUSED").exists():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the writer never reached the kill point"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
