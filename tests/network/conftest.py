import pytest

from harness.netns import namespaces_possible

WHY_NOT = namespaces_possible()


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/network/" in str(item.fspath) and WHY_NOT:
            item.add_marker(pytest.mark.skip(reason=f"network tier: {WHY_NOT}"))
