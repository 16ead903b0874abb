"""The scenario's `network:` key: the emulated link between the client and server
namespaces, read into LinkSpecs (one per link variant, sweeps expanded).

    network:
      backend: auto                 # auto | tun | netem
      congestion_control: reno      # pinned in both namespaces
      seed: 7
      links:                        # or `link:` for a single variant
        - name: loss
          rtt_ms: 40                # shorthand: half of it each way
          down: {loss: [0, 0.5%, 1%, 2%, 5%]}
        - name: one-drop
          rtt_ms: 40
          down: {drops: [{nth: 60, min_size: 200}]}

Every numeric link value may be a list: a sweep. A link variant with several lists
runs their cartesian product. `both:` sets values for the two directions at once;
`up:` / `down:` override it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any

from harness.scenario.linkspec import (
    Bernoulli,
    Blackhole,
    DirectionSpec,
    DropRule,
    GilbertElliott,
    LinkSpec,
)
from harness.scenario.schema import (
    Field,
    Invalid,
    Section,
    boolean,
    choice,
    integer,
    items,
    join,
    number,
    optional,
    show,
    string,
    sweep,
)

BACKENDS = ("auto", "tun", "netem")
CONGESTION_CONTROLS = ("reno", "cubic", "bbr")


@dataclass(frozen=True)
class Network:
    backend: str
    congestion_control: str
    seed: int
    links: tuple[LinkSpec, ...]          # every variant, sweeps expanded, in run order
    raw: Any = None                      # as written (for to_dict and the results)

    def ends(self) -> "Network":
        """First and last variant of each named link: the --quick version of a sweep; of
        repeated single drops (one_per_run) the first three, so a quick run still has a
        median and a spread, early in the streams (quick streams are short)."""
        by_name: dict[str, list[LinkSpec]] = {}
        for link in self.links:
            by_name.setdefault(link.name.split(" ")[0], []).append(link)
        kept = tuple(v for group in by_name.values()
                     for v in (group[:3] if all(".drop=" in g.name for g in group)
                               else dict.fromkeys((group[0], group[-1]))))
        return replace(self, links=kept)


# --------------------------------------------------------------------------- checkers

def _fraction(v: Any, path: str) -> float:
    """A loss probability: 0..1, or a percent string such as "2%"."""
    if isinstance(v, str) and v.strip().endswith("%"):
        try:
            value = float(v.strip()[:-1]) / 100
        except ValueError:
            raise Invalid(path, f'expected a percent such as "2%", got {show(v)}') from None
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
        value = float(v)
        if value > 1:
            raise Invalid(path, f"{show(v)} is above 1: a bare number is a fraction 0..1; "
                                f'write percent with %, e.g. "{v:g}%"')
    else:
        raise Invalid(path, f'expected a fraction 0..1 or a percent such as "2%", got {show(v)}')
    if not 0 <= value <= 1:
        raise Invalid(path, f"expected a probability between 0 and 100%, got {show(v)}")
    return value


def _loss(v: Any, path: str) -> tuple:
    """A Bernoulli probability (or a sweep of them), or a Gilbert-Elliott mapping."""
    if isinstance(v, dict):
        model = v.get("model", "bernoulli")
        if model == "gilbert_elliott":
            return (_GE(v, path),)
        if model == "bernoulli":
            return tuple(Bernoulli(p) for p in _BERNOULLI(v, path).p)
        raise Invalid(join(path, "model"), f'expected "bernoulli" or "gilbert_elliott", '
                                            f"got {show(model)}")
    return tuple(Bernoulli(p) for p in sweep(_fraction)(v, path))


@dataclass(frozen=True)
class _BernoulliRaw:
    model: str
    p: tuple[float, ...]


_BERNOULLI = Section(_BernoulliRaw, (
    Field("model", choice("bernoulli"), "bernoulli"),
    Field("p", sweep(_fraction)),
))

_GE = Section(GilbertElliott, (
    Field("model", choice("gilbert_elliott")),
    Field("p", _fraction),
    Field("r", _fraction),
    Field("loss_bad", _fraction, 1.0),
    Field("loss_good", _fraction, 0.0),
), post=lambda values, path: values.pop("model"))


def _nth(v: Any, path: str) -> tuple[int, ...]:
    ints = [v] if not isinstance(v, list) else v
    out = tuple(integer(1)(x, where) for x, where in items(ints, path, ""))
    if not out:
        raise Invalid(path, "expected packet numbers >= 1, got []")
    return out


@dataclass(frozen=True)
class _DropRaw:
    """A drop rule as written. With `one_per_run`, its nth values are alternatives: one
    link variant per value, each dropping that one packet (repeated single drops at
    varied positions); without, one run drops every listed packet."""
    nth: tuple[int, ...]
    min_size: int
    max_size: int
    proto: str
    one_per_run: bool

    def rules(self) -> tuple[DropRule, ...]:
        """The DropRule of each variant (one, unless one_per_run)."""
        nths = [(n,) for n in self.nth] if self.one_per_run else [self.nth]
        return tuple(DropRule(n, self.min_size, self.max_size, self.proto) for n in nths)


_DROP = Section(_DropRaw, (
    Field("nth", _nth),
    Field("min_size", integer(0, 65535), 0),
    Field("max_size", integer(0, 65535), 65535),
    Field("proto", choice("any", "tcp", "udp"), "any"),
    Field("one_per_run", boolean, False),
))

_BLACKHOLE = Section(Blackhole, (
    Field("start_ms", number(0)),
    Field("duration_ms", number(0, lo_open=True)),
))


def _list_of(section: Section):
    def check(v: Any, path: str) -> tuple:
        return tuple(section(x, where) for x, where in items(v, path, "a list of mappings"))
    return check


@dataclass(frozen=True)
class _DirectionRaw:
    """One direction as written: sweepable values are tuples, None = not given."""
    delay_ms: tuple | None
    jitter_ms: tuple | None
    reorder: bool | None
    rate_mbit: tuple | None
    queue_packets: tuple | None
    loss: tuple | None
    drops: tuple | None
    blackholes: tuple | None


_DIRECTION = Section(_DirectionRaw, (
    Field("delay_ms", optional(sweep(number(0))), None),
    Field("jitter_ms", optional(sweep(number(0))), None),
    Field("reorder", optional(boolean), None),
    Field("rate_mbit", optional(sweep(number(0, lo_open=True))), None),
    Field("queue_packets", optional(sweep(integer(1, 1_000_000))), None),
    Field("loss", optional(_loss), None),
    Field("drops", optional(_list_of(_DROP)), None),
    Field("blackholes", optional(_list_of(_BLACKHOLE)), None),
))


@dataclass(frozen=True)
class _LinkRaw:
    name: str
    rtt_ms: tuple | None
    both: _DirectionRaw | None
    up: _DirectionRaw | None
    down: _DirectionRaw | None


def _no_rtt_and_delay(values: dict, path: str) -> None:
    if values["rtt_ms"] is None:
        return
    for side in ("both", "up", "down"):
        if values[side] is not None and values[side].delay_ms is not None:
            raise Invalid(join(path, f"{side}.delay_ms"),
                          "give either rtt_ms or per-direction delay_ms, not both")


_LINK = Section(_LinkRaw, (
    Field("name", string(r"[A-Za-z0-9_.-]+", "a name made of letters, digits, _ . -"), "link"),
    Field("rtt_ms", optional(sweep(number(0))), None),
    Field("both", optional(_DIRECTION), None),
    Field("up", optional(_DIRECTION), None),
    Field("down", optional(_DIRECTION), None),
), post=_no_rtt_and_delay)


@dataclass(frozen=True)
class _NetworkRaw:
    backend: str
    congestion_control: str
    seed: int
    link: _LinkRaw | None
    links: tuple[_LinkRaw, ...] | None


def _one_of_link_or_links(values: dict, path: str) -> None:
    if (values["link"] is None) == (values["links"] is None):
        raise Invalid(join(path, "links"), "give either link (one) or links (a list), "
                                           "exactly one of them")
    names: dict[str, str] = {}
    for i, link in enumerate(values["links"] or ()):
        where = join(path, f"links[{i}].name")
        if link.name in names:
            raise Invalid(where, f"duplicate link name {show(link.name)} (also {names[link.name]})")
        names[link.name] = where


_NETWORK = Section(_NetworkRaw, (
    Field("backend", choice(*BACKENDS), "auto"),
    Field("congestion_control", choice(*CONGESTION_CONTROLS), "reno"),
    Field("seed", integer(0), 1),
    Field("link", optional(_LINK), None),
    Field("links", optional(_list_of(_LINK)), None),
), post=_one_of_link_or_links)


# --------------------------------------------------------------------------- expansion

_SWEPT = ("delay_ms", "jitter_ms", "rate_mbit", "queue_packets", "loss")


def _merged(both: _DirectionRaw | None, side: _DirectionRaw | None) -> dict[str, Any]:
    """Per-direction values: `side` over `both`, unset ones left out."""
    out: dict[str, Any] = {}
    for layer in (both, side):
        if layer is not None:
            out.update({k: v for k, v in vars(layer).items() if v is not None})
    return out


def _label(value: Any) -> str:
    if isinstance(value, Bernoulli):
        return f"{value.p * 100:g}%"
    if isinstance(value, GilbertElliott):
        return f"GE{value.mean_loss * 100:.2g}%"
    return f"{value:g}"


def _drop_axis(d: str, raw: tuple[_DropRaw, ...], path: str) -> tuple[tuple, tuple]:
    """(the rules every variant has, the alternatives of the one_per_run rule or ())."""
    fixed = tuple(r for rule in raw if not rule.one_per_run for r in rule.rules())
    swept = [rule for rule in raw if rule.one_per_run]
    if len(swept) > 1:
        raise Invalid(path, f"{d}.drops: at most one rule with one_per_run per direction")
    return fixed, (swept[0].rules() if swept else ())


def _expand(link: _LinkRaw, seed: int, path: str = "network") -> list[LinkSpec]:
    dirs = {d: _merged(link.both, getattr(link, d)) for d in ("up", "down")}
    axes: list[tuple[str, str | None, tuple]] = []       # (dir or "rtt", key, values)
    if link.rtt_ms is not None:
        axes.append(("rtt", None, link.rtt_ms))
    for d, values in dirs.items():
        axes += [(d, k, values[k]) for k in _SWEPT if k in values]
        if "drops" in values:
            fixed, alternatives = _drop_axis(d, values["drops"], path)
            values["drops"] = fixed
            if alternatives:            # one single-drop variant per position
                axes.append((d, "drop", tuple(fixed + (rule,) for rule in alternatives)))
    specs = []
    for combo in itertools.product(*(values for _, _, values in axes)):
        fixed = {d: {k: v for k, v in dirs[d].items() if k not in _SWEPT} for d in dirs}
        parts = []
        for (d, k, values), value in zip(axes, combo):
            if d == "rtt":
                fixed["up"]["delay_ms"] = fixed["down"]["delay_ms"] = value / 2
            elif k == "drop":
                fixed[d]["drops"] = value
                parts.append(f"{d}.drop={value[-1].nth[0]}")
                continue
            else:
                fixed[d][k] = value
            if len(values) > 1:
                parts.append(f"{k or 'rtt_ms'}={_label(value)}" if d == "rtt"
                             else f"{d}.{k}={_label(value)}")
        name = " ".join([link.name] + parts)
        specs.append(LinkSpec(up=DirectionSpec(**fixed["up"]), down=DirectionSpec(**fixed["down"]),
                              seed=seed, name=name))
    return specs


def network_section(raw: Any, path: str) -> Network:
    values = _NETWORK(raw, path)
    links = (values.link,) if values.link is not None else values.links
    specs = tuple(spec for link in links for spec in _expand(link, values.seed))
    return Network(values.backend, values.congestion_control, values.seed, specs, raw)
