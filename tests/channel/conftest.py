"""Every test here runs on both of the channel's cores (see the `core` fixture)."""

from __future__ import annotations

from types import ModuleType

import pytest


@pytest.fixture(autouse=True)
def _on_each_core(core: ModuleType) -> ModuleType:
    return core
