"""What the emulated link does, per direction: the values a scenario's `network:` key
resolves to for one plan point. Both backends (the TUN emulator and tc netem) take
this and nothing else, so a scenario reads the same whichever one runs it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Bernoulli:
    p: float = 0.0                      # drop probability per packet, 0..1


@dataclass(frozen=True)
class GilbertElliott:
    """Two-state bursty loss (netem `loss gemodel p r 1-h 1-k`)."""
    p: float                            # P(good -> bad) per packet
    r: float                            # P(bad -> good) per packet
    loss_bad: float = 1.0               # drop probability in the bad state (1 - h)
    loss_good: float = 0.0              # drop probability in the good state (1 - k)

    @property
    def mean_loss(self) -> float:
        """Stationary drop rate: pi_bad * loss_bad + pi_good * loss_good."""
        if self.p + self.r == 0:
            return self.loss_good
        bad = self.p / (self.p + self.r)
        return bad * self.loss_bad + (1 - bad) * self.loss_good


LossModel = Bernoulli | GilbertElliott


@dataclass(frozen=True)
class DropRule:
    """Drop the nth packets (1-based) among those in this direction matching the filter,
    counted from the moment the link was configured: the clean single-loss probe."""
    nth: tuple[int, ...]
    min_size: int = 0                   # IP packet bytes, inclusive
    max_size: int = 65535
    proto: Literal["any", "tcp", "udp"] = "any"

    def matches(self, size: int, proto: str) -> bool:
        return (self.min_size <= size <= self.max_size
                and (self.proto == "any" or self.proto == proto))


@dataclass(frozen=True)
class Blackhole:
    """Drop everything in this direction for a window after the link was configured."""
    start_ms: float
    duration_ms: float


@dataclass(frozen=True)
class DirectionSpec:
    delay_ms: float = 0.0               # one-way propagation delay
    jitter_ms: float = 0.0              # uniform extra delay in [0, jitter]; order kept
    reorder: bool = False               # let jitter reorder packets (netem's default)
    rate_mbit: float | None = None      # serialization rate; None: unlimited
    queue_packets: int = 1000           # drop-tail queue ahead of the rate limiter
    loss: LossModel = field(default_factory=Bernoulli)
    drops: tuple[DropRule, ...] = ()
    blackholes: tuple[Blackhole, ...] = ()

    @property
    def impaired(self) -> bool:
        return bool(self.delay_ms or self.jitter_ms or self.rate_mbit or self.drops
                    or self.blackholes or not _lossless(self.loss))


    @property
    def drops_packets(self) -> bool:
        """Loses packets by design: a loss model, a drop list or a blackhole."""
        return bool(self.drops or self.blackholes or not _lossless(self.loss))


def _lossless(loss: LossModel) -> bool:
    return isinstance(loss, Bernoulli) and loss.p == 0


@dataclass(frozen=True)
class LinkSpec:
    up: DirectionSpec = field(default_factory=DirectionSpec)     # client -> server
    down: DirectionSpec = field(default_factory=DirectionSpec)   # server -> client
    seed: int = 1
    name: str = ""                      # the scenario's label for this link variant

    @property
    def drops_packets(self) -> bool:
        return self.up.drops_packets or self.down.drops_packets

    @property
    def rtt_ms(self) -> float:
        """Base round-trip time the link adds (no jitter, no queueing)."""
        return self.up.delay_ms + self.down.delay_ms

    def describe(self) -> dict[str, Any]:
        """Plain data for the results: every setting, the loss model named."""
        def side(d: DirectionSpec) -> dict[str, Any]:
            out = asdict(d)
            out["loss"] = {"model": type(d.loss).__name__.lower(), **asdict(d.loss)}
            if isinstance(d.loss, GilbertElliott):
                out["loss"]["mean_loss"] = d.loss.mean_loss
            return out
        return {"name": self.name, "seed": self.seed, "rtt_ms": self.rtt_ms,
                "up": side(self.up), "down": side(self.down)}
