"""HTTP callback tasks against a local server started by each test (127.0.0.1 only).

The built-in task runs in this process here (``apply()``: retries happen at
once, without their countdown); tests/acceptance/test_http_worker.py runs it
in a real worker.
"""

from __future__ import annotations

import http.server
import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import RequestFactory, override_settings
from django.urls import path

from djtasks import states
from djtasks.http import (
    URL,
    HTTPStatusError,
    InvalidResponseError,
    RemoteExecuteError,
    RequestError,
    dispatch,
    request_params,
    task_webhook,
)


class Server:
    """A tiny HTTP server with the replies the tests need; records each request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.release = threading.Event()  # set at teardown: slow replies end at once
        self.fail_first = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                owner.handle(self, None)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                owner.handle(self, self.rfile.read(length))

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def url(self, route: str) -> str:
        return self.base + route

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def handle(self, h: http.server.BaseHTTPRequestHandler, body: bytes | None) -> None:
        parts = urllib.parse.urlsplit(h.path)
        query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        self.requests.append(
            {
                "method": h.command,
                "path": parts.path,
                "query": query,
                "body": body,
                "headers": dict(h.headers),
            }
        )
        route = parts.path

        def reply(
            status: int,
            content: Any,
            content_type: str = "application/json",
            headers: dict[str, str] | None = None,
        ) -> None:
            data = content if isinstance(content, bytes) else json.dumps(content).encode()
            h.send_response(status)
            h.send_header("Content-Type", content_type)
            h.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                h.send_header(key, value)
            h.end_headers()
            h.wfile.write(data)

        if route == "/multiply":
            reply(200, {"status": "success", "retval": int(query["x"]) * int(query["y"])})
        elif route == "/echo":
            reply(200, {"status": "success", "retval": json.loads(body) if body else query})
        elif route == "/fail":
            reply(200, {"status": "failure", "reason": "insufficient funds"})
        elif route == "/slow":
            self.release.wait(10)
            reply(200, {"status": "success", "retval": "late"})
        elif route == "/html":
            reply(200, b"<html><body>Welcome</body></html>", "text/html")
        elif route == "/list":
            reply(200, [1, 2])
        elif route == "/weird":
            reply(200, {"status": "maybe"})
        elif route == "/missing":
            reply(404, b"not here", "text/plain")
        elif route == "/busy":
            if self.fail_first > 0:
                self.fail_first -= 1
                reply(503, b"try later", "text/plain", {"Retry-After": "0"})
            else:
                reply(200, {"status": "success", "retval": "finally"})
        elif route.startswith("/hop/"):
            left = int(route.rsplit("/", 1)[1])
            target = f"/hop/{left - 1}" if left > 1 else "/multiply?x=2&y=3"
            reply(302, b"", "text/plain", {"Location": target})
        elif route == "/to-ftp":
            reply(302, b"", "text/plain", {"Location": "ftp://127.0.0.1/file"})
        elif route == "/huge":
            reply(200, b"[" + b"0," * 5000 + b"0]")
        else:
            reply(500, b"no route", "text/plain")


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.close()


def call(
    url: str, method: str = "GET", params: dict[str, Any] | None = None, **options: Any
) -> Any:
    """Run the built-in task in process, as a worker would (retries included)."""
    return dispatch.apply(kwargs={"url": url, "method": method, "params": params or {}, **options})


# -- the caller side ---------------------------------------------------------------


def test_success_returns_retval(server: Server) -> None:
    result = call(server.url("/multiply"), params={"x": 10, "y": 10})
    assert result.state == states.SUCCESS
    assert result.get() == 100
    assert server.requests[0]["query"] == {"x": "10", "y": "10"}
    assert server.requests[0]["headers"]["Accept"] == "application/json"


def test_post_sends_a_json_body(server: Server) -> None:
    import decimal

    result = call(server.url("/echo"), "POST", {"amount": decimal.Decimal("9.99"), "n": [1]})
    assert result.get() == {"amount": "9.99", "n": [1]}
    request = server.requests[0]
    assert request["method"] == "POST"
    assert request["headers"]["Content-Type"] == "application/json"


def test_query_params_are_added_to_the_url_s_own(server: Server) -> None:
    result = call(server.url("/echo?a=1"), params={"b": True, "c": None, "d": [1, 2]})
    assert result.get() == {"a": "1", "b": "true", "c": "", "d": "2"}


def test_failure_reason_becomes_the_error(server: Server) -> None:
    result = call(server.url("/fail"))
    assert result.state == states.FAILURE
    with pytest.raises(RemoteExecuteError, match=r"^insufficient funds$"):
        result.get()
    assert len(server.requests) == 1  # a reported failure is not retried


def test_timeout_is_retried_then_fails(server: Server) -> None:
    result = call(server.url("/slow"), timeout=0.3, max_retries=1)
    with pytest.raises(RequestError, match=r"no reply from http://127.0.0.1:\d+/slow within 0.3s"):
        result.get()
    assert result.retries == 1
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ("/html", r"is not JSON \(HTTP 200, Content-Type text/html\): '<html><body>Welcome"),
        ("/list", r"is not \{\"status\": \"success\" \| \"failure\", ...\}: '\[1, 2\]'"),
        ("/weird", r"is not \{\"status\""),
    ],
)
def test_a_reply_that_is_not_the_expected_json_is_a_clear_error(
    server: Server, route: str, message: str
) -> None:
    result = call(server.url(route))
    with pytest.raises(InvalidResponseError, match=message):
        result.get()
    assert len(server.requests) == 1


def test_redirects_are_followed_up_to_the_limit(server: Server) -> None:
    assert call(server.url("/hop/3"), max_redirects=3).get() == 6
    with pytest.raises(
        RequestError,
        match=r"redirected to .*/multiply\?x=2&y=3: more than 2 "
        r"redirect\(s\)",
    ):
        call(server.url("/hop/3"), max_redirects=2).get()
    with pytest.raises(RequestError, match="follows no redirects"):
        call(server.url("/hop/1"), max_redirects=0).get()


def test_redirects_to_other_schemes_are_refused(server: Server) -> None:
    with pytest.raises(RequestError, match="only http and https are followed"):
        call(server.url("/to-ftp")).get()


def test_server_errors_are_retried(server: Server) -> None:
    server.fail_first = 2
    result = call(server.url("/busy"), max_retries=3)
    assert result.get() == "finally"
    assert result.retries == 2
    server.fail_first = 5
    with pytest.raises(HTTPStatusError, match="answered HTTP 503"):
        call(server.url("/busy"), max_retries=1).get()


def test_client_errors_are_not_retried(server: Server) -> None:
    with pytest.raises(
        HTTPStatusError,
        match=r"GET .*/missing answered HTTP 404 Not Found: "
        r"'not here'",
    ):
        call(server.url("/missing")).get()
    assert len(server.requests) == 1


def test_a_refused_connection_is_retried_then_fails() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once closed
    with pytest.raises(RequestError, match="cannot reach"):
        call(f"http://127.0.0.1:{port}/", max_retries=1).get()


def test_a_reply_over_the_payload_limit_is_refused(server: Server, settings: Any) -> None:
    settings.DJTASKS_MAX_PAYLOAD_BYTES = 1000
    with pytest.raises(InvalidResponseError, match="larger than 1,000 bytes"):
        call(server.url("/huge")).get()


def test_extra_headers_are_sent(server: Server) -> None:
    call(server.url("/multiply"), params={"x": 1, "y": 1}, headers={"X-Token": "t0k"}).get()
    assert server.requests[0]["headers"]["X-Token"] == "t0k"


# -- URL -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "file:///etc/passwd",
        "javascript:1",
        "//example.com/x",
        "example.com/x",
        "http:///nohost",
    ],
)
def test_only_http_urls(url: str) -> None:
    with pytest.raises(ValueError, match=r"only http and https|has no host"):
        URL(url)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": 0}, "timeout must be"),
        ({"max_redirects": -1}, "max_redirects must be"),
        ({"max_retries": 1.5}, "max_retries must be"),
    ],
)
def test_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        URL("https://example.com", **options)


def test_get_async_and_post_async_enqueue_the_built_in_task(settings: Any, server: Server) -> None:
    settings.DJTASKS_ALWAYS_EAGER = True
    assert URL(server.url("/multiply")).get_async(x=10, y=10).get() == 100
    assert URL(server.url("/echo")).post_async(a=[1, {"b": 2}]).get() == {"a": [1, {"b": 2}]}


def test_parameters_that_cannot_be_sent_fail_at_the_call() -> None:
    with pytest.raises(TypeError, match=r"parameters for https://example\.com/x cannot be sent"):
        URL("https://example.com/x").post_async(x=object())


def test_built_in_task_is_registered() -> None:
    from djtasks.registry import tasks

    assert tasks.get("djtasks.http.dispatch") is dispatch


# -- the endpoint side ---------------------------------------------------------------


@task_webhook
def multiply(request: Any) -> int:
    params = request_params(request)
    return int(params["x"]) * int(params["y"])


@task_webhook
def broken(request: Any) -> None:
    raise ValueError("no such account")


urlpatterns = [path("multiply", multiply), path("broken", broken)]


def test_task_webhook_replies_in_the_expected_format(caplog: pytest.LogCaptureFixture) -> None:
    rf = RequestFactory()
    ok = multiply(rf.get("/multiply", {"x": 3, "y": 4}))
    assert json.loads(ok.content) == {"status": "success", "retval": 12}
    ok = multiply(rf.post("/multiply", {"x": 3, "y": 5}, content_type="application/json"))
    assert json.loads(ok.content) == {"status": "success", "retval": 15}
    ok = multiply(rf.post("/multiply", {"x": 3, "y": 6}))  # form-encoded
    assert json.loads(ok.content) == {"status": "success", "retval": 18}
    bad = broken(rf.get("/broken"))
    assert json.loads(bad.content) == {"status": "failure", "reason": "ValueError: no such account"}
    assert "webhook /broken failed" in caplog.text


def test_task_webhook_is_csrf_exempt() -> None:
    assert multiply.csrf_exempt is True  # type: ignore[attr-defined]


@pytest.fixture
def django_server() -> Iterator[Callable[[str], str]]:
    """This test module's urlpatterns, served by Django on 127.0.0.1."""
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from django.core.handlers.wsgi import WSGIHandler

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    with override_settings(ROOT_URLCONF=__name__, ALLOWED_HOSTS=["127.0.0.1"]):
        httpd = make_server("127.0.0.1", 0, WSGIHandler(), WSGIServer, Quiet)
        thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
        thread.start()
        try:
            yield lambda route: f"http://127.0.0.1:{httpd.server_address[1]}/{route}"
        finally:
            httpd.shutdown()
            httpd.server_close()
            thread.join(5)


def test_url_calls_a_task_webhook_end_to_end(django_server: Callable[[str], str]) -> None:
    assert call(django_server("multiply"), params={"x": 6, "y": 7}).get() == 42
    assert call(django_server("multiply"), "POST", {"x": 6, "y": 8}).get() == 48
    with pytest.raises(RemoteExecuteError, match="ValueError: no such account"):
        call(django_server("broken")).get()
