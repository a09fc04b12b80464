"""Browser tests: skipped with the reason when ComfyUI, Chromium or playwright-core is missing
(a CI run with --no-skips turns that into a failure), and run once per frontend."""

import pathlib

import pytest

from comfy_server import FRONTENDS, why_skip


def pytest_collection_modifyitems(config, items):
    reason = why_skip()
    if reason:
        here = pathlib.Path(__file__).parent
        for item in items:
            if here in pathlib.Path(str(item.fspath)).parents:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="module", params=FRONTENDS, ids=lambda f: f"frontend-{f}")
def frontend(request) -> str:
    """Which frontend a module's server serves: "pinned" (ComfyUI's own) or a version."""
    return request.param
