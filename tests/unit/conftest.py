"""Fixtures the unit tests share: `cli`, the confctl app in-process over a fake client (confctl_fake.py)."""

from __future__ import annotations

import pytest

from confctl.cli import build_app
from confctl.commands.common import ClientApi
from confctl.settings import ClientSettings
from tests.unit.confctl_fake import FakeClient, Harness


@pytest.fixture
def cli() -> Harness:
    client = FakeClient()
    seen: list[ClientSettings] = []

    def factory(settings: ClientSettings) -> ClientApi:
        seen.append(settings)
        return client

    return Harness(client, seen, build_app(factory))
