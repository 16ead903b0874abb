"""Groups of cells in one scenario: which rows answer the protocol question together.

A comparison table is a claim about protocols only where the rows differ in protocol
alone. A scenario may therefore split its cells into named groups (in YAML order):

    groups:
      fastest: [rest-h1@caddy+curl, rest-h2@caddy+curl, rest-h3@caddy+curl, grpc, ws]
      python:  [rest-h1, rest-h2, rest-h3]

The first group is the one whose rows are ranked against each other; later groups are
shown beside it, labelled, and compared with it per protocol (what the library costs).
Without `groups:` every cell is in one group. With `groups:` and no `protocols:`, the
protocols are the groups' cells in order.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from harness.scenario.schema import Invalid, show

Groups = tuple[tuple[str, tuple[str, ...]], ...]
ONE_GROUP = "all"


def parse_groups(v: Any, path: str, cell: Callable[[Any, str], str]) -> Groups:
    """{name: [cell, ...]} -> ((name, (label, ...)), ...); each cell in one group only."""
    if v is None or v == [] or v == {}:
        return ()
    pairs = v.items() if isinstance(v, dict) else v
    out, seen = [], {}
    try:
        pairs = [(name, cells) for name, cells in pairs]
    except (TypeError, ValueError):
        raise Invalid(path, f"expected a mapping of group name to a list of cells, got "
                            f"{show(v)}") from None
    for name, cells in pairs:
        where = f"{path}.{name}"
        if not isinstance(name, str) or not name.strip():
            raise Invalid(path, f"a group name must be a non-empty string, got {show(name)}")
        if not isinstance(cells, (list, tuple)) or not cells:
            raise Invalid(where, f"expected a non-empty list of cells, got {show(cells)}")
        labels = []
        for i, raw in enumerate(cells):
            label = cell(raw, f"{where}[{i}]")
            if label in seen:
                raise Invalid(f"{where}[{i}]", f"{show(label)} is already in group "
                                               f"{show(seen[label])}; a cell belongs to one group")
            seen[label] = name
            labels.append(label)
        out.append((name, tuple(labels)))
    return tuple(out)


def check_groups(groups: Groups, protocols: Iterable[str]) -> None:
    """Every grouped cell must be one of the scenario's protocols."""
    known = set(protocols)
    for name, cells in groups:
        for i, label in enumerate(cells):
            if label not in known:
                raise Invalid(f"groups.{name}[{i}]", f"{show(label)} is not in protocols "
                                                     f"({', '.join(sorted(known))})")


def restrict(groups: Groups, kept: Iterable[str]) -> Groups:
    """The groups after --protocols kept only some cells (empty groups dropped)."""
    keep = set(kept)
    return tuple((name, tuple(c for c in cells if c in keep))
                 for name, cells in groups if any(c in keep for c in cells))


def group_of(groups: Groups | list | dict | None, cell: str) -> str:
    """The group a cell's row belongs to ('all' when the scenario has none)."""
    for name, cells in _pairs(groups):
        if cell in cells:
            return name
    return ONE_GROUP if not groups else "other"


def group_names(groups: Groups | list | dict | None) -> list[str]:
    return [name for name, _ in _pairs(groups)] or [ONE_GROUP]


def _pairs(groups: Any) -> list[tuple[str, Any]]:
    """Groups as the Scenario holds them, or as summary.json gives them back (a mapping)."""
    if not groups:
        return []
    return list(groups.items()) if isinstance(groups, dict) else [tuple(g) for g in groups]
