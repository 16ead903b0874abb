"""YAML in, a validated Scenario out: strict loading (duplicate keys refused) and the
errors that point at a line."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import yaml

from harness.scenario.model import Scenario, ScenarioError
from harness.scenario.rules import _SCENARIO
from harness.scenario.schema import (
    Invalid,
    show,
)

# --------------------------------------------------------------------------- loading

class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (plain YAML keeps the last, silently)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    loader.flatten_mapping(node)
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:       # unhashable: construct_mapping reports it
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {show(key)}", key_node.start_mark)
    return loader.construct_mapping(node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                              _construct_mapping)


def load_scenario(path: str | PathLike) -> Scenario:
    """Read and validate a YAML scenario file; every problem is a ScenarioError."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(source, "", "file not found") from None
    except UnicodeDecodeError:
        raise ScenarioError(source, "", "not UTF-8 text") from None
    except OSError as exc:
        raise ScenarioError(source, "", exc.strerror or str(exc)) from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(source, exc) from None
    except yaml.YAMLError as exc:
        raise ScenarioError(source, "", f"YAML error: {exc}") from None
    if data is None:
        raise ScenarioError(source, "", "the file is empty")
    return parse_scenario(data, source)


def _yaml_error(source: str, exc: yaml.MarkedYAMLError) -> ScenarioError:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or "invalid YAML"
    if exc.context and exc.problem:
        problem += f" ({exc.context})"
    if mark is None:
        return ScenarioError(source, "", f"YAML error: {problem}")
    line, column = mark.line + 1, mark.column + 1
    return ScenarioError(source, "", f"line {line}, column {column}: YAML error: {problem}",
                         line, column)


def parse_scenario(data: dict, source: str = "<string>") -> Scenario:
    """Validate plain data (as YAML gives it) into a Scenario; first problem raises."""
    try:
        values = _SCENARIO.values(data, "")
    except Invalid as exc:
        raise ScenarioError(source, exc.field, exc.message) from None
    return Scenario(**values, source=source)
