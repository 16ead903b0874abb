"""The `cluster:` section: the load workers as actors on a Ray cluster, not local processes.

    cluster:
      engine: ray
      address: auto          # a running cluster; "local": start one in this process;
                             # host:port or ray://host:port: that cluster
      workers: 4             # actors, spread over the cluster's nodes

Without `cluster:` the workers are processes on this host (`workers:`). Ray is an
optional dependency (`pip install -e '.[cluster]'`); a scenario naming it without Ray
installed is refused before anything starts.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

from harness.scenario.schema import Field, Invalid, Section, choice, integer, string

INSTALL = "pip install -e '.[cluster]' (Ray)"


@dataclass(frozen=True)
class Cluster:
    engine: str
    address: str
    workers: int


CLUSTER = Section(Cluster, (
    Field("engine", choice("ray"), "ray"),
    Field("address", string(r"auto|local|(ray://)?[A-Za-z0-9.:\[\]_-]+",
                            'auto, local, host:port or ray://host:port'), "auto"),
    Field("workers", integer(1, 256), 2),
))


def ray_missing() -> str | None:
    """Why the Ray engine cannot run here, or None."""
    if importlib.util.find_spec("ray") is None:
        return f"the Ray cluster engine needs Ray, which is not installed: {INSTALL}"
    return None


def check_cluster(values: dict[str, Any]) -> None:
    cluster: Cluster | None = values["cluster"]
    if cluster is None:
        return
    missing = ray_missing()
    if missing:
        raise Invalid("cluster", missing)
    if values["network"] is not None:
        raise Invalid("cluster", "the network lab puts this host's workers in a namespace "
                                 "behind an emulated link; remove cluster or network")
