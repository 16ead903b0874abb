"""A client worker process: `python -m harness.worker`, driven over stdin/stdout.

The parent never measures (as pyperf): it starts workers, waits until every one is
warm, says "go" to all at once, and merges what they report. Protocol, one JSON object
per line:
  parent -> worker: the LoadJob, then `go` (or EOF to abort)
  worker -> parent: {"event": "warm", "errors": n, "sample": str}, then
                    {"event": "progress", "done": n} every 0.2 s, then
                    ({"event": "alive"} at least every HEARTBEAT_S s throughout)
                    {"event": "result", ...} or {"event": "error", "message": ...}
"""

from __future__ import annotations

import asyncio
import sys
import traceback
from typing import Any

import orjson

from servers.lifetime import die_with_parent

from .loadgen import LoadJob, LoadRunner
from .recorder import Recorder
from .watchdog import HEARTBEAT_S


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(obj) + b"\n")
    sys.stdout.buffer.flush()


async def _read_line() -> str:
    return (await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)).strip()


async def _progress(runner: LoadRunner, measuring: asyncio.Event) -> None:
    """Progress every 0.2 s while measuring; a heartbeat at least every HEARTBEAT_S
    always, so the parent can tell a slow worker from a frozen one (harness.watchdog)."""
    last, quiet = -1, 0.0
    while True:
        await asyncio.sleep(0.2)
        quiet += 0.2
        if measuring.is_set() and runner.done != last:
            last, quiet = runner.done, 0.0
            emit({"event": "progress", "done": last})
        elif quiet >= HEARTBEAT_S:
            quiet = 0.0
            emit({"event": "alive"})


async def main(job: LoadJob) -> int:
    runner = LoadRunner(job)
    measuring = asyncio.Event()
    ticker = asyncio.ensure_future(_progress(runner, measuring))
    try:
        warm: Recorder = await runner.warmup()
        sample = next(iter(warm.error_samples.values()), "")
        emit({"event": "warm", "errors": warm.error_count, "n": warm.n, "sample": sample})
        if await _read_line() != "go":
            return 0                         # the parent gave up (another worker failed)
        measuring.set()
        result = await runner.measure()
        ticker.cancel()
        emit({"event": "result", **result})
        return 0
    finally:
        ticker.cancel()
        await runner.close()


def run() -> None:
    die_with_parent()
    job = LoadJob(**orjson.loads(sys.stdin.readline()))
    try:
        if job.protocol.startswith("grpc"):
            code = asyncio.run(main(job))        # grpc.aio supports only the stdlib loop
        else:
            import uvloop
            code = uvloop.run(main(job))
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:   # report it to the parent in words, not a dead pipe
        emit({"event": "error", "message": f"{type(exc).__name__}: {exc}",
              "traceback": traceback.format_exc()})
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    run()
