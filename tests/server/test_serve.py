"""`qrm serve` as a process: it refuses to listen beyond this machine without a token, stops cleanly on
SIGTERM (exit 0, nothing but INFO lines in its log after the dashboard's login link), serves its docs
without any other host, and turns an error no layer anticipated into a 500 with one line; the ASGI guard
in-process for the cases a read endpoint cannot reach (a chunked body over the cap, a bug's message)."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from reconciler.server.guard import Guard
from tests.support import api_server
from tests.support.api_server import Server
from tests.support.workspace import Workspace

SERVICE = "kind: Service\nname: web\nhost: localhost\ntype: app\n"


@pytest.fixture
def small(workspace: Workspace, tmp_path: Path) -> tuple[Workspace, dict[str, str]]:
    workspace.manifest("svc.yaml", SERVICE)
    return workspace, api_server.environment(tmp_path / "home")


@pytest.fixture
def running(small: tuple[Workspace, dict[str, str]]) -> Iterator[Server]:
    ws, env = small
    token = api_server.qrm(ws.root, env, "token", "create", "ops", "--scope", "read").strip()
    server = api_server.start(ws.root, env)
    server.tokens = {"ops": token}
    yield server
    server.stop()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.20.30.40", "example.com"])
def test_listening_beyond_this_machine_without_a_token_is_refused(small: tuple[Workspace, dict[str, str]],
                                                                   host: str) -> None:
    ws, env = small
    done = subprocess.run([sys.executable, "-m", "reconciler", "-C", str(ws.root), "serve", "--host", host,
                           "--port", str(api_server.free_port())], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"error: refusing to listen on {host} without a token (every request but /health needs one): create one "
        "with qrm token create NAME --scope read, or listen on 127.0.0.1"]


def test_a_port_in_use_is_exit_1_with_uvicorn_s_reason_and_one_line(small: tuple[Workspace, dict[str, str]]) -> None:
    ws, env = small
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "reconciler", "-C", str(ws.root), "serve", "--port", str(port)],
                              capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1
    assert [line.split(" ERROR uvicorn.error: ", 1)[1] for line in done.stderr.splitlines()
            if " ERROR uvicorn.error: " in line] == [
        f"[Errno 98] error while attempting to bind on address ('127.0.0.1', {port}): address already "
        "in use"]
    assert done.stderr.splitlines()[-1] == (f"error: qrm serve could not start on 127.0.0.1:{port} (uvicorn's ERROR "
                                            "line above says why)")
    assert "Traceback" not in done.stderr


def test_with_a_token_it_listens_on_every_address(small: tuple[Workspace, dict[str, str]]) -> None:
    ws, env = small
    token = api_server.qrm(ws.root, env, "token", "create", "ops").strip()
    server = api_server.start(ws.root, env, host="0.0.0.0")
    try:
        assert "Uvicorn running on http://0.0.0.0:" in server.log()
        assert server.get("/resources/ports", token).json()["total"] == 0
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_ends_it_cleanly_with_exit_code_0(running: Server, stop: signal.Signals) -> None:
    assert running.get("/resources/ports", running.tokens["ops"]).status_code == 200
    running.process.send_signal(stop)
    assert running.process.wait(timeout=30) == 0
    login, *lines = running.log().splitlines()
    assert login.startswith("Dashboard: http://127.0.0.1:") and "/ui/login/" in login  # printed once, at the start
    assert lines and all(" INFO " in line for line in lines), lines
    assert any("Finished server process" in line for line in lines)
    assert "Traceback" not in running.log() and running.tokens["ops"] not in running.log()


class Links(HTMLParser):
    """Every src and href of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found += [value for name, value in attrs if name in ("src", "href") and value]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_load_everything_from_this_server(running: Server, page: str) -> None:
    answer = running.get(page)
    assert answer.status_code == 200 and "text/html" in answer.headers["content-type"]
    links = Links()
    links.feed(answer.text)
    assert len(links.found) >= 2  # the script (and the stylesheet, the icon)
    for link in links.found:
        url = urljoin(running.url + page, link)
        assert urlsplit(url).netloc == f"127.0.0.1:{running.port}", link
        asset = running.get(urlsplit(url).path)
        assert asset.status_code == 200 and len(asset.content) > 0, link
    assert "http://" not in answer.text and "https://" not in answer.text  # nothing else is fetched from elsewhere
    assert "/openapi.json" in answer.text


def test_the_openapi_document_names_every_read_path_and_both_ways_to_send_a_token(running: Server) -> None:
    document = running.get("/openapi.json").json()
    assert set(document["paths"]) >= {  # the write paths and the webhooks are named by their own tests
        "/health", "/resources/ports", "/resources/ports/ranges", "/resources/ports/check/{port}",
        "/resources/services", "/resources/secrets", "/plan", "/resources/generate/env/{project}",
        "/resources/generate/docker-compose/{project}"}
    assert set(document["components"]["securitySchemes"]) == {"HTTPBearer", "APIKeyHeader"}


def test_an_operating_system_error_is_a_500_naming_the_file_and_nothing_more(running: Server) -> None:
    (running.root / "secrets.enc").mkdir()
    answer = running.get("/resources/secrets", running.tokens["ops"])
    assert (answer.status_code, answer.json()) == (500, {"error": f"{running.root / 'secrets.enc'}: Is a directory"})
    assert "Traceback" not in running.log()
    assert running.stop() == 0


# --- the guard in-process, placed as create_app places it: what no read endpoint reaches ------------------

def _read_body_length(value: str) -> int:
    return int(value)


async def echo_length(request: Request) -> JSONResponse:
    return JSONResponse({"length": len(await request.body())})


async def buggy(request: Request) -> JSONResponse:
    return JSONResponse({"port": _read_body_length("canary-value-7f3c")})


def call(app: Starlette, method: str, path: str, chunks: list[bytes] | None = None) -> httpx.Response:
    """One request to `app` in this process (httpx's ASGI transport sends a streamed body chunk by chunk)."""

    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks or []:
            yield chunk

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://guarded") as client:
            return await client.request(method, path, content=body() if chunks is not None else None)

    return asyncio.run(go())


def test_a_chunked_body_over_the_cap_is_413_as_it_is_read() -> None:
    app = Starlette(routes=[Route("/echo", echo_length, methods=["POST"])],
                    middleware=[Middleware(Guard, body_limit=10)])
    assert call(app, "POST", "/echo", [b"12345", b"12345"]).json() == {"length": 10}
    answer = call(app, "POST", "/echo", [b"12345", b"12345", b"1"])  # no Content-Length: chunked
    assert (answer.status_code, answer.json()) == (413, {"error": "the request body is larger than the limit of 10 "
                                                                  "bytes"})


def test_a_bug_is_a_500_named_by_its_type_and_place_never_its_message(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="reconciler.server.access")
    answer = call(Starlette(routes=[Route("/bug", buggy)], middleware=[Middleware(Guard)]), "GET", "/bug")
    assert answer.status_code == 500
    reason = answer.json()["error"]
    assert reason.startswith("unexpected ValueError in test_serve.py:") and "(_read_body_length)" in reason
    assert "canary-value-7f3c" not in answer.text and "canary-value-7f3c" not in caplog.text
    access = [json.loads(r.getMessage()) for r in caplog.records if r.name == "reconciler.server.access"]
    assert [(a["path"], a["status"]) for a in access] == [("/bug", 500)]
