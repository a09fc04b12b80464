"""Browser tests: skipped with the reason when ComfyUI, Chromium or playwright-core is missing
(a CI run with --no-skips turns that into a failure), and run once per frontend and renderer."""

import contextlib
import pathlib

import pytest

from comfy_server import FRONTENDS, Frontend, Server, start, why_skip


def pytest_collection_modifyitems(config, items):
    reason = why_skip()
    if reason:
        here = pathlib.Path(__file__).parent
        for item in items:
            if here in pathlib.Path(str(item.fspath)).parents:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="module", params=FRONTENDS, ids=lambda f: f"frontend-{f.id}")
def frontend(request) -> Frontend:
    """Which frontend (and renderer) a module's checks run in."""
    return request.param


@pytest.fixture(scope="session")
def comfy_servers(tmp_path_factory):
    """get(version): the ComfyUI serving that frontend version, started on first use and shared by
    every module and renderer (starting one takes ~10 s). Modules put their files in its input/."""
    servers: dict[str, Server] = {}
    with contextlib.ExitStack() as stack:
        def get(version: str) -> Server:
            if version not in servers:
                base = tmp_path_factory.mktemp(f"comfy_{version}")
                servers[version] = stack.enter_context(contextlib.contextmanager(start)(base, version))
            return servers[version]
        yield get


@pytest.fixture(scope="module")
def server(comfy_servers, frontend) -> Server:
    return comfy_servers(frontend.version)
