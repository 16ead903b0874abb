"""A run's status as it really is: a summary left `running` by a killed run is `killed`.

The runner rewrites summary.json after every point with status `running`, and a last
time with its final status; SIGKILL leaves no last time. So each summary names the
runner's PID and the machine's boot id: a `running` summary whose runner is gone (or
whose machine rebooted since) was killed, and says so wherever it is read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

KILLED = "killed"


def boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def runner_identity() -> dict[str, Any]:
    """What a summary records so a later reader can tell whether its runner still lives."""
    return {"runner_pid": os.getpid(), "boot_id": boot_id()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:                                 # a zombie is gone for this purpose
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return True


def effective_status(summary: dict[str, Any]) -> str:
    status = summary.get("status", "?")
    if status != "running":
        return status
    pid, boot = summary.get("runner_pid"), summary.get("boot_id")
    if boot is not None and boot != boot_id():
        return KILLED                    # the machine restarted since
    if isinstance(pid, int) and pid != os.getpid() and not _alive(pid):
        return KILLED
    return status


def mark_killed_runs(root: Path) -> list[Path]:
    """Rewrite the summaries under `root` whose runner was killed; the ones rewritten."""
    marked = []
    for path in sorted(root.glob("*/summary.json")):
        try:
            summary = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if summary.get("status") == "running" and effective_status(summary) == KILLED:
            summary["status"] = KILLED
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(summary, indent=1))
            os.replace(tmp, path)
            marked.append(path.parent)
    return marked
