"""Running the `dualnet` command line in a child process and measuring what it costs.

`run_cli` reports the child's exit status, output, CPU time (user + system, of the child and
what it waited for, from `os.wait4`) and peak resident memory. Limits are checked on CPU
time, never on wall time: a loaded machine stretches wall time, not the work done. The peak
memory comes from GNU time (`/usr/bin/time -f %M`: `time` is small, so its child's peak is
not inflated by this large test process — on Linux a child's peak RSS includes what it had
before `exec`, i.e. a copy of its parent); without GNU time, `os.wait4` measures it. A run
still going after HARD_TIMEOUT seconds of wall time is killed (a hang).

On a slow machine, scale the CPU limit with DUALNET_TEST_TIME_SCALE (e.g. 2).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CPU_LIMIT = 2.0 * float(os.environ.get("DUALNET_TEST_TIME_SCALE", "1"))
MEMORY_LIMIT_MB = 200
HARD_TIMEOUT = 120
GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


@dataclass
class Result:
    stderr: str
    stdout: str
    code: int
    cpu: float  # seconds of CPU time, user + system
    rss_mb: float
    killed: bool = False  # still running after HARD_TIMEOUT


def run_cli(
    args: list[str], cwd: Path, prelude: str | None = None, env: dict[str, str] | None = None
) -> Result:
    """Run `python -m dualnet ARGS` in `cwd` (after the Python statements `prelude`, if
    given) and measure that child's CPU time and peak RSS."""
    child_env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DUALNET_TRACEBACK", "FORCE_COLOR", "DUALNET_MAX_PARAMS")
    }
    child_env.update(NO_COLOR="1", TERM="dumb", PYTHONIOENCODING="utf-8", **(env or {}))
    child_env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), child_env.get("PYTHONPATH")])
    )
    if prelude is None:
        command = [sys.executable, "-m", "dualnet", *args]
    else:
        code = f"{prelude}\nimport sys\nfrom dualnet.cli import main\nsys.exit(main(sys.argv[1:]))"
        command = [sys.executable, "-c", code, *args]
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r") as peak,
    ):
        if GNU_TIME:
            command = [GNU_TIME, "-f", "%M", "-o", peak.name, *command]
        proc = subprocess.Popen(
            command, cwd=cwd, env=child_env, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
        killed: list[bool] = []
        timer = threading.Timer(HARD_TIMEOUT, lambda: (killed.append(True), proc.kill()))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text = peak.read().split() if GNU_TIME else []
        kib = int(text[-1]) if text and text[-1].isdigit() else usage.ru_maxrss
        rss = kib / (1024 * 1024 if sys.platform == "darwin" and not GNU_TIME else 1024)
        return Result(
            err.read().decode("utf-8", "replace"),
            out.read().decode("utf-8", "replace"),
            proc.returncode,
            usage.ru_utime + usage.ru_stime,
            rss,
            killed=bool(killed),
        )


def show(r: Result) -> str:
    text = r.stderr if len(r.stderr) < 3000 else r.stderr[:3000] + "…"
    return f"exit {r.code}, {r.cpu:.2f} s CPU, {r.rss_mb:.0f} MB\n{text}"


def assert_clean(r: Result, code: int = 1, memory_mb: float = MEMORY_LIMIT_MB) -> None:
    """No traceback, no internal error, the exit status, and the CPU and memory limits."""
    assert not r.killed, "still running after the hard timeout (a hang)\n" + show(r)
    assert "Traceback" not in r.stderr, show(r)
    assert "internal error" not in r.stderr, show(r)
    assert r.code == code, show(r)
    assert r.cpu < CPU_LIMIT, f"took {r.cpu:.2f} s of CPU (limit {CPU_LIMIT} s)\n" + show(r)
    assert r.rss_mb < memory_mb, f"used {r.rss_mb:.0f} MB\n" + show(r)


def assert_located(r: Result, file: str, error_code: str | None = None) -> None:
    """The first diagnostic is `error[CODE]: ...` and carries `--> FILE:LINE:COL`."""
    assert r.stderr.startswith("error["), show(r)
    if error_code is not None:
        assert r.stderr.startswith(f"error[{error_code}]"), show(r)
    assert re.search(rf"^ *--> {re.escape(file)}:\d+:\d+$", r.stderr, flags=re.M), show(r)
