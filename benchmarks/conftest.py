"""pytest setup for the micro-benchmarks in this folder.

pyproject's addopts carry `--benchmark-disable` (the test suite runs benchmarks once,
as correctness checks), and pytest-benchmark refuses `--benchmark-only` together with
it. Asking for `--benchmark-only` here means "measure", so it turns benchmarking back
on: `python -m pytest benchmarks -q --benchmark-only` works as written.
"""

from __future__ import annotations


import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # Runs before pytest-benchmark's own (trylast) pytest_configure reads the options.
    if getattr(config.option, "benchmark_only", False):
        config.option.benchmark_enable = True
