"""OpenPEX applications opened on a test's store, every one closed after the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pex.domain.application import OpenPEX


def opener(env: Mapping[str, str], **defaults: Any) -> Iterator[Callable[..., OpenPEX]]:
    """For a fixture to `yield from`: opens applications on `env` with OpenPEX's keyword
    arguments (`defaults`, unless given at the call) and closes them once the test is over."""
    apps: list[OpenPEX] = []

    def open_app(**kwargs: Any) -> OpenPEX:
        app = OpenPEX(env, **{**defaults, **kwargs})
        apps.append(app)
        return app

    yield open_app
    for app in apps:
        app.close()
