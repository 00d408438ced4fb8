"""What every tier's conftest does at collection: mark its tests, skip them with one reason."""

from __future__ import annotations

import pytest


def mark_tier(items: list[pytest.Item], folder: str, marker: pytest.MarkDecorator,
              reason: str) -> None:
    """Mark the items under ``folder`` (pytest calls every conftest's hook with all items) and,
    when ``reason`` is not empty, skip them saying why."""
    for item in items:
        if folder in str(item.fspath):
            item.add_marker(marker)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))
