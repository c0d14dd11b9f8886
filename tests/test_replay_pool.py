"""A sweep's replay processes end when the process that started them is killed (SIGKILL included)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(f"""
    import os, sys, time
    sys.path.insert(0, {str(ROOT)!r})
    from pipeline.scenarios import replay_pool
    if __name__ == "__main__":
        pool = replay_pool(2)
        busy = [pool.submit(time.sleep, 300) for _ in range(2)]  # both workers occupied, like a sweep
        time.sleep(1.0)
        print(" ".join(str(p.pid) for p in pool._processes.values()), flush=True)
        time.sleep(300)
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")  # a zombie is gone


def test_workers_exit_when_the_sweep_is_killed(tmp_path):
    script = tmp_path / "sweep.py"
    script.write_text(SCRIPT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(p) for p in parent.stdout.readline().split()]
        assert len(workers) == 2 and all(_alive(p) for p in workers)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 15
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(p) for p in workers), "replay workers outlived their killed parent"
    finally:
        parent.kill()
        for p in workers if "workers" in locals() else []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
