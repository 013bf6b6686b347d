"""Fixtures for end-to-end tests: a temp store, the CLI, routers started and stopped per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.support.router import RouterProcess


@pytest.fixture
def start_router(store_path: Path, tmp_path: Path) -> Iterator[Callable[..., RouterProcess]]:
    started: list[RouterProcess] = []

    def start(*args: str, name: str = "default", env: dict[str, str] | None = None) -> RouterProcess:
        router = RouterProcess(store_path, tmp_path / "routers", *args, name=name, env=env).start()
        started.append(router)
        return router

    yield start
    for router in started:
        try:
            router.stop()
        except AssertionError:
            router.kill()


@pytest.fixture
def router(start_router: Callable[..., RouterProcess]) -> RouterProcess:
    return start_router()
