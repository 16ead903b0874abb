"""LinkSpec <-> plain dict, the form the emulator's JSON control protocol carries.

The loss model is tagged (`{"kind": "bernoulli", ...}` / `{"kind": "gilbert_elliott",
...}`) because the two dataclasses share field names. Round trip is exact:
`spec_from_dict(spec_to_dict(s)) == s`.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

from harness.scenario.linkspec import (Bernoulli, Blackhole, DirectionSpec, DropRule,
                              GilbertElliott, LinkSpec)

_LOSS_KINDS = {"bernoulli": Bernoulli, "gilbert_elliott": GilbertElliott}


def spec_to_dict(spec: LinkSpec) -> dict[str, Any]:
    return {"up": _direction_to_dict(spec.up), "down": _direction_to_dict(spec.down),
            "seed": spec.seed, "name": spec.name}


def spec_from_dict(d: dict[str, Any]) -> LinkSpec:
    return LinkSpec(up=_direction_from_dict(d.get("up", {})),
                    down=_direction_from_dict(d.get("down", {})),
                    seed=int(d.get("seed", 1)), name=str(d.get("name", "")))


def _direction_to_dict(s: DirectionSpec) -> dict[str, Any]:
    out = {f.name: getattr(s, f.name) for f in fields(s)
           if f.name not in ("loss", "drops", "blackholes")}
    kind = "bernoulli" if isinstance(s.loss, Bernoulli) else "gilbert_elliott"
    out["loss"] = {"kind": kind, **asdict(s.loss)}
    out["drops"] = [{**asdict(r), "nth": list(r.nth)} for r in s.drops]
    out["blackholes"] = [asdict(b) for b in s.blackholes]
    return out


def _direction_from_dict(d: dict[str, Any]) -> DirectionSpec:
    plain = {k: v for k, v in d.items() if k not in ("loss", "drops", "blackholes")}
    loss = dict(d.get("loss") or {"kind": "bernoulli"})
    cls = _LOSS_KINDS[loss.pop("kind", "bernoulli")]
    drops = tuple(DropRule(**{**r, "nth": tuple(r["nth"])}) for r in d.get("drops", ()))
    holes = tuple(Blackhole(**b) for b in d.get("blackholes", ()))
    return DirectionSpec(**plain, loss=cls(**loss), drops=drops, blackholes=holes)
