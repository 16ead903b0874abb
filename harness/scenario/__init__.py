"""Scenario schema: YAML in, frozen dataclasses out, and the run plan.

Every section is described once, by a field table (`Field` rows read by harness/scenario/schema.py:
key, checker, default, when it applies), so each rule lives in one row and the first
problem found is reported with its full dotted path, what was expected and what was
given. The `network:` section lives in network.py. scenarios/README.md is the
user-facing reference of the same tables; keep the two in step.

Values that do not apply (embed fields of a stream workload, open-loop fields of a
closed-loop load, ...) are None in the dataclasses and absent from `to_dict()`.
"""
from harness.scenario.fields import (
                                    MAX_CONCURRENCY,
                                    METRICS,
                                    PROTOCOL_GROUPS,
                                    TARGET_PROTOCOLS,
)
from harness.scenario.loading import load_scenario, parse_scenario
from harness.scenario.model import (
                                    Connection,
                                    Dns,
                                    Load,
                                    Outputs,
                                    PlanPoint,
                                    Scenario,
                                    ScenarioError,
                                    Stage,
                                    Target,
                                    Threshold,
                                    Warmup,
                                    Workload,
)
from harness.scenario.plan import expand_plan, quick, resumption_support, with_protocols

__all__ = [
    "ScenarioError", "Workload", "Stage", "Load", "Warmup", "Connection", "Target", "Threshold",
    "Dns", "Outputs", "Scenario", "PlanPoint", "load_scenario", "parse_scenario", "quick",
    "with_protocols", "expand_plan", "resumption_support", "PROTOCOL_GROUPS",
    "TARGET_PROTOCOLS", "METRICS", "MAX_CONCURRENCY",
]
