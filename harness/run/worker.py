"""A client worker process: `python -m harness.run.worker`, driven over stdin/stdout.

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


from base.lifetime import die_with_parent

from harness.run.events import Alive, Event, Failure, Progress, Warm, Warning, encode
from harness.run.job import LoadJob
from harness.run.load.loadgen import LoadRunner
from harness.measure.recorder import Recorder
from harness.run.watchdog import HEARTBEAT_S

SILENT_TIMEOUTS = 3     # timed-out requests, none answered, that stop a point early


def emit(event: Event) -> None:
    sys.stdout.buffer.write(encode(event))
    sys.stdout.buffer.flush()


async def _read_line() -> str:
    return (await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)).strip()


def _silence(runner: LoadRunner, warned: list[bool]) -> str | None:
    """Watch for a target that accepts but never answers: warn at the first timeouts,
    and say why to stop once the phase's first requests all timed out (none answered)."""
    rec, job = runner.phase_rec, runner.job
    timeouts = rec.errors.get("timeout", 0)
    if timeouts and not warned[0]:
        warned[0] = True
        emit(Warning(f"{timeouts} request(s) got no complete response within "
                     f"{job.timeout_s:g} s"))
    if rec.n == 0 and timeouts >= min(SILENT_TIMEOUTS, max(1, job.concurrency)):
        return (f"the first {timeouts} requests all timed out ({job.timeout_s:g} s each) and "
                f"none was answered: the target accepts connections but does not answer; "
                f"the point was stopped early")
    return None


async def _progress(runner: LoadRunner, measuring: asyncio.Event,
                    main: asyncio.Task | None = None, stop: list[str] | None = None) -> None:
    """Progress every 0.2 s while measuring; a heartbeat at least every HEARTBEAT_S
    always, so the parent can tell a slow worker from a frozen one (harness.run.watchdog)."""
    last, quiet, warned = -1, 0.0, [False]
    while True:
        await asyncio.sleep(0.2)
        quiet += 0.2
        why = _silence(runner, warned)
        if why and main is not None and stop is not None and not stop:
            stop.append(why)
            main.cancel()
        if measuring.is_set() and runner.done != last:
            last, quiet = runner.done, 0.0
            emit(Progress(last))
        elif quiet >= HEARTBEAT_S:
            quiet = 0.0
            emit(Alive())


async def main(job: LoadJob) -> int:
    runner = LoadRunner(job)
    measuring, stop = asyncio.Event(), []
    ticker = asyncio.ensure_future(_progress(runner, measuring, asyncio.current_task(), stop))
    try:
        warm: Recorder = await runner.warmup()
        sample = next(iter(warm.error_samples.values()), "")
        emit(Warm(warm.error_count, warm.n, sample))
        if await _read_line() != "go":
            return 0                         # the parent gave up (another worker failed)
        measuring.set()
        result = await runner.measure()
        ticker.cancel()
        emit(result)
        return 0
    except asyncio.CancelledError:
        if not stop:
            raise
        emit(Failure(stop[0]))
        return 1
    finally:
        ticker.cancel()
        await runner.close()


def run() -> None:
    die_with_parent()
    job = LoadJob.from_json(sys.stdin.readline())
    try:
        if job.protocol.startswith("grpc"):
            code = asyncio.run(main(job))        # grpc.aio supports only the stdlib loop
        else:
            import uvloop
            code = uvloop.run(main(job))
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:   # report it to the parent in words, not a dead pipe
        emit(Failure(f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    run()
