"""A pipeline user request, and where its time went.

One user request of a `pipeline` workload runs its stages one after another; a stage
makes `calls` calls of one kind (embeddings, or the streamed answer) with at most
`parallel` in flight, each in-flight slot (a lane) taking the next call as soon as its
last one ended. Unary calls go through the cell's client, streamed ones through its
family's streaming client on the same server (rest-h2 -> sse-h2, grpc -> grpc-stream).

Where the time went is read off the critical path: in every stage, the lane that ended
last covers the stage from its start to its end, call after call. Each of those calls is
split by its own lifecycle stamps (clients/transport/phases.py, curl -w style) into

  dns            name lookup
  tcp_handshake  TCP connect
  tls_handshake  TLS or QUIC handshake, or the WebSocket upgrade
  round_trips    request written and answered: send + wait for the first byte, less
                 the model time inside it (streams: to the last byte, less model time)
  transfer       first to last response byte (unary calls)
  model          the server's own time for the call (compute, TTFT, token pacing)
  teardown       from the response's end until the client call returned: closing the
                 connection under a new-connection policy (WebSocket's closing handshake
                 waits a round trip for the server's close frame)
  client         decoding the response, and the client's time between calls on the
                 critical path (stage and lane scheduling)
  unattributed   calls whose client stamps no lifecycle phases

so the components of one user request add up to its measured end-to-end time; how much
of it falls in `client` (time in no call at all, or in decoding) is the check that the
stamps explain the rest.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Iterator

from clients.base import Client, ClientError, StreamResult, UnaryResult, clock_ns

from harness.scenario.model import Workload
from harness.scenario.workload import embed_requests, stream_request

BUCKETS = ("dns", "tcp_handshake", "tls_handshake", "round_trips", "transfer", "model",
           "teardown", "client", "unattributed")


class CallFailed(ClientError):
    """One call of a user request failed: the user request fails with the call's class."""

    def __init__(self, stage: str, exc: ClientError) -> None:
        super().__init__(f"stage {stage}: {exc}")
        self.kind = exc.kind        # counted by the call's own error class


@dataclass
class PipelineResult:
    t_start_ns: int
    t_end_ns: int
    components_ns: dict[str, int]           # BUCKETS -> ns on the critical path
    stages_ns: dict[str, int]               # stage name -> wall ns
    calls: list[UnaryResult | StreamResult] = field(default_factory=list)

    @property
    def e2e_ns(self) -> int:
        return self.t_end_ns - self.t_start_ns


def call_end_ns(r: UnaryResult | StreamResult) -> int:
    return r.t_decoded_ns if isinstance(r, UnaryResult) else r.t_end_ns


def call_components(r: UnaryResult | StreamResult) -> dict[str, int]:
    """One call's time (start to decoded / end of stream) by bucket, in ns."""
    total = call_end_ns(r) - r.t_start_ns
    stamps = r.extra.get("phases") or r.extra.get("curl_phases")
    if not stamps or not stamps.get("total"):
        return {"unattributed": total}

    def at(name: str, floor: int) -> int:
        # Cumulative stamps, us from the start; a phase that did not happen (0) ends
        # where the one before it ended.
        return max(floor, (stamps.get(name) or 0) * 1000)
    dns = at("namelookup", 0)
    tcp = at("connect", dns)
    tls = at("appconnect", tcp)
    first = at("starttransfer", tls)
    last = at("total", first)
    model = int((r.server_time_us or 0.0) * 1000)
    out = {"dns": dns, "tcp_handshake": tcp - dns, "tls_handshake": tls - tcp}
    if isinstance(r, StreamResult):          # tokens are paced by the model to the end
        model = min(model, last - tls)
        out.update(round_trips=last - tls - model, transfer=0, model=model)
    else:                                     # the answer follows the model's time
        model = min(model, first - tls)
        out.update(round_trips=first - tls - model, transfer=last - first, model=model)
    out["client"] = total - last              # decoding (and us rounding)
    return out


class Pipeline:
    """Runs user requests of one pipeline workload (the worker's job.workload)."""

    def __init__(self, workload: Workload, seed: int, model: str | None = None) -> None:
        self.stages = [(st.name, st.calls, st.parallel, st.work.type == "stream",
                        self._requests(st.work, seed + i, model))
                       for i, st in enumerate(workload.stages)]

    @staticmethod
    def _requests(work: Workload, seed: int, model: str | None) -> Iterator[dict]:
        named = {"model": model} if model else {}
        if work.type == "stream":
            req = stream_request(work, seed, **named)
            return iter(lambda: req, None)   # the same request every time
        return embed_requests(work, seed, **named)

    async def run(self, unary: Client, stream: Client | None) -> PipelineResult:
        t0 = clock_ns()
        comps = dict.fromkeys(BUCKETS, 0)
        stages: dict[str, int] = {}
        calls: list[UnaryResult | StreamResult] = []
        cursor = t0
        for name, n, parallel, streaming, requests in self.stages:
            client = stream if streaming else unary
            s0 = clock_ns()
            comps["client"] += s0 - cursor       # between stages
            lanes = await self._stage(name, n, parallel, client, streaming, requests)
            s1 = clock_ns()
            stages[name] = s1 - s0
            for lane in lanes:
                calls += lane
            self._critical_path(lanes, s0, s1, comps)
            cursor = s1
        t1 = clock_ns()
        comps["client"] += t1 - cursor
        return PipelineResult(t0, t1, comps, stages, calls)

    @staticmethod
    async def _stage(name: str, n: int, parallel: int, client: Client, streaming: bool,
                     requests: Iterator[dict]) -> list[list[UnaryResult | StreamResult]]:
        remaining = iter(range(n))
        failed: list[CallFailed] = []
        lanes: list[list[UnaryResult | StreamResult]] = [[] for _ in range(parallel)]

        async def lane(done: list) -> None:
            for _ in remaining:
                if failed:                   # a failed call ends the user request
                    return
                try:
                    if streaming:
                        r = await client.generate(next(requests))
                    else:
                        r = await client.embed(next(requests))
                except ClientError as exc:
                    failed.append(CallFailed(name, exc))
                    return
                r.extra["returned_ns"] = clock_ns()     # after any connection close
                done.append(r)

        if parallel == 1:
            await lane(lanes[0])
        else:
            await asyncio.gather(*(lane(done) for done in lanes))
        if failed:
            raise failed[0]
        return lanes

    @staticmethod
    def _critical_path(lanes: list[list], s0: int, s1: int, comps: dict[str, int]) -> None:
        """Add the stage's time, along the lane that ended last, to the buckets."""
        busy = [lane for lane in lanes if lane]
        if not busy:
            comps["client"] += s1 - s0
            return
        lane = max(busy, key=lambda calls: call_end_ns(calls[-1]))
        cursor = s0
        for r in lane:
            comps["client"] += r.t_start_ns - cursor      # the lane's own gap
            for bucket, ns in call_components(r).items():
                comps[bucket] += ns
            end = call_end_ns(r)
            cursor = max(end, r.extra.get("returned_ns", end))
            comps["teardown"] += cursor - end
        comps["client"] += s1 - cursor
