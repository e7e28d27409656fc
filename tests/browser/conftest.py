"""Browser tests: Debian's Chromium, headless, driven by Playwright against Vitrine served on
loopback. `.ci/run` installs Chromium (browser downloads are not possible); where it is
missing these tests are skipped and say why."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.settings import Settings
from tests.loopback import free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if Path(CHROMIUM).exists():
        return
    skip = pytest.mark.skip(reason="Chromium is not installed (.ci/run installs it)")
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(skip)


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def settings(settings: Settings, port: int) -> Settings:
    # Links to pictures and QR codes point at where the page is served.
    return settings.model_copy(update={"public_url": f"http://127.0.0.1:{port}"})
