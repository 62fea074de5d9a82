"""Interop with nats.js under Node.js: a client library nobody here wrote discovers an asyncmp
service with its services client, calls it, and reads its standard error codes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest
from nats_helpers import NatsServer, check_info, check_ping, check_stats, inventory, serving_service

pytestmark = pytest.mark.anyio

NATS_JS = "nats@2.29.3"  # the nats.js release the script is written for
SCRIPT = Path(__file__).parent / "js" / "interop.mjs"


@pytest.fixture(scope="session")
def nats_js(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with nats.js installed from the npm registry (once per session) and the
    interop script; skipped only where Node.js is missing. A failing install fails."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("Node.js (node and npm) is not installed: the nats.js interop test needs it")
    folder = tmp_path_factory.mktemp("nats-js")
    (folder / "package.json").write_text('{"private": true}\n')
    install = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", NATS_JS],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if install.returncode != 0:
        pytest.fail(f"npm install {NATS_JS} failed:\n{install.stdout}\n{install.stderr}")
    shutil.copy(SCRIPT, folder / SCRIPT.name)
    return folder


async def test_nats_js_discovers_and_calls_an_asyncmp_service(
    nats_server: NatsServer, nats_js: Path
) -> None:
    """nats.js's services client finds the service with PING, INFO and STATS; its requests
    get the reply, and its ServiceError reads the codes of a ServiceError (404), a handler
    failure (500) and a malformed request (400); STATS shows those requests and errors."""
    node = shutil.which("node")
    assert node is not None
    with anyio.fail_after(60):
        async with serving_service(
            nats_server.url, "inventory", "1.0.0", {"inventory.get": inventory}
        ) as service:
            result = await anyio.run_process(
                [node, SCRIPT.name, nats_server.url, "inventory", "inventory.get"],
                cwd=nats_js,
                check=False,
            )
    assert result.returncode == 0, result.stderr.decode()
    seen: dict[str, Any] = json.loads(result.stdout)
    [ping] = seen["ping"]
    check_ping(ping)
    assert (ping["name"], ping["id"], ping["version"]) == ("inventory", service.id, "1.0.0")
    [info] = seen["info"]
    check_info(info)
    assert [e["subject"] for e in info["endpoints"]] == ["inventory.get"]
    assert seen["apple"] == {"reply": {"item": "apple", "stock": 3}}
    assert seen["plum"] == {"code": 404, "description": "no such item: plum"}
    assert seen["crash"]["code"] == 500
    assert seen["crash"]["description"] == "RuntimeError: the handler crashed"
    assert seen["malformed"]["code"] == 400
    assert seen["malformed"]["description"].startswith("asyncmp.nats.MalformedMessage:")
    [stats] = seen["stats"]
    check_stats(stats)
    [endpoint] = stats["endpoints"]
    assert (endpoint["num_requests"], endpoint["num_errors"]) == (4, 3)
    assert endpoint["last_error"].startswith("400:")
