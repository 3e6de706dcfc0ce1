"""HTTP callback tasks: call a URL from a worker, and turn a view into such a URL.

::

    from djtasks.http import URL

    result = URL("https://example.com/multiply").get_async(x=10, y=10)
    result.get(timeout=30)          # 100, the endpoint's "retval"

``get_async(**params)`` sends the parameters as a query string,
``post_async(**params)`` as a JSON body. Either enqueues the built-in task
``djtasks.http.dispatch``, which a worker runs: it calls the URL with a
timeout, follows a few redirects (http and https only, never from https
down to http), and expects a JSON object back:

- ``{"status": "success", "retval": <any JSON>}``: the task succeeds with ``retval``;
- ``{"status": "failure", "reason": "..."}``: the task fails with
  :class:`RemoteExecuteError` carrying the reason;
- anything else (not JSON, not an object, an unknown status) fails with
  :class:`InvalidResponseError`, showing what came back.

Connection errors, timeouts, and replies 408, 429 and 5xx are retried with
exponential backoff (``Retry-After`` is honoured); other 4xx replies are not.

:func:`task_webhook` makes a Django view answer in that format.
"""

from __future__ import annotations

import functools
import json
import logging
import time
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from .conf import settings
from .exceptions import DjtasksError
from .task import backoff_countdown, task

if TYPE_CHECKING:
    from .result import AsyncResult

logger = logging.getLogger("djtasks.http")

SCHEMES = ("http", "https")
#: Replies that mean "try again later".
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_USER_AGENT = "djtasks-http/1"
_CHUNK = 65536


class HttpDispatchError(DjtasksError):
    """Base class of the errors an HTTP callback task fails with."""


class RequestError(HttpDispatchError):
    """No usable reply: connection refused, timeout, or a redirect not followed."""


class HTTPStatusError(HttpDispatchError):
    """The endpoint replied with an HTTP error status."""


class InvalidResponseError(HttpDispatchError):
    """The reply is not the expected JSON object (``status`` success or failure)."""


class RemoteExecuteError(HttpDispatchError):
    """The endpoint replied ``{"status": "failure", "reason": ...}``; the message is the reason."""


class _TransientError(Exception):
    """Raised inside :func:`dispatch` for failures worth retrying."""

    def __init__(self, error: HttpDispatchError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


def check_url(url: Any) -> str:
    """Return ``url`` if it is an absolute http(s) URL, else raise ``ValueError``."""
    if not isinstance(url, str):
        raise TypeError(f"the URL must be a string, not {type(url).__name__}")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        raise ValueError(f"only http and https URLs can be called, not {url!r}")
    if not parts.hostname:
        raise ValueError(f"the URL {url!r} has no host")
    return url


class URL:
    """An HTTP endpoint to call from a worker.

    :param url: an absolute ``http://`` or ``https://`` URL.
    :param timeout: seconds to connect and to receive the whole reply.
    :param max_redirects: redirects followed at most (0: none).
    :param max_retries: retries after a connection error, a timeout or a
        408/429/5xx reply (then the task fails with that error).
    :param headers: extra request headers. They are stored in the task row
        like the parameters, so pass secrets that must stay out of the
        database some other way.
    :raises ValueError: the URL is not http(s) or has no host.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        max_redirects: int = 3,
        max_retries: int = 3,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.url = check_url(url)
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
            raise ValueError(f"timeout must be a number of seconds > 0, not {timeout!r}")
        for name, value in (("max_redirects", max_redirects), ("max_retries", max_retries)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, not {value!r}")
        if headers is not None and not (
            isinstance(headers, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
        ):
            raise TypeError("headers must be a dict of strings")
        self.timeout = float(timeout)
        self.max_redirects = max_redirects
        self.max_retries = max_retries
        self.headers = dict(headers or {})

    def __repr__(self) -> str:
        return f"<URL: {self.url}>"

    def get_async(self, **params: Any) -> AsyncResult:
        """Enqueue a GET of this URL with ``params`` in the query string."""
        return self.call_async("GET", params)

    def post_async(self, **params: Any) -> AsyncResult:
        """Enqueue a POST of this URL with ``params`` as a JSON object body."""
        return self.call_async("POST", params)

    def call_async(
        self, method: str, params: dict[str, Any] | None = None, **options: Any
    ) -> AsyncResult:
        """Enqueue a call with ``method`` (``GET`` or ``POST``); ``options`` go to
        :meth:`~djtasks.task.Task.apply_async` (``queue``, ``countdown``, ...).

        :raises TypeError: a parameter cannot be sent as JSON.
        """
        method = method.upper()
        if method not in ("GET", "POST"):
            raise ValueError(f"method must be GET or POST, not {method!r}")
        params = dict(params or {})
        try:
            json.dumps(params, cls=DjangoJSONEncoder)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"parameters for {self.url} cannot be sent: {exc}") from None
        return dispatch.apply_async(
            kwargs={
                "url": self.url,
                "method": method,
                "params": params,
                "timeout": self.timeout,
                "max_redirects": self.max_redirects,
                "max_retries": self.max_retries,
                "headers": self.headers,
            },
            **options,
        )


# -- the built-in task -------------------------------------------------------------


@task(name="djtasks.http.dispatch", bind=True, max_retries=3)
def dispatch(
    self: Any,
    url: str,
    method: str = "GET",
    params: dict[str, Any] | None = None,
    timeout: float = 10.0,
    max_redirects: int = 3,
    max_retries: int = 3,
    headers: dict[str, str] | None = None,
) -> Any:
    """Call ``url`` and return the ``retval`` of its JSON reply (see the module docstring)."""
    try:
        status, content_type, body = _request(
            url, method, params or {}, timeout, max_redirects, headers or {}
        )
    except _TransientError as transient:
        countdown = (
            transient.retry_after
            if transient.retry_after is not None
            else backoff_countdown(self.request.retries, 1.0, 60.0, True)
        )
        raise self.retry(
            exc=transient.error, countdown=countdown, max_retries=max_retries
        ) from None
    return parse_reply(url, status, content_type, body)


def parse_reply(url: str, status: int, content_type: str, body: bytes) -> Any:
    """The ``retval`` of a reply, or the error it stands for."""
    try:
        reply = json.loads(body)
    except ValueError:
        raise InvalidResponseError(
            f"the reply from {url} is not JSON (HTTP {status}, Content-Type "
            f"{content_type or 'missing'}): {_excerpt(body)}"
        ) from None
    if not isinstance(reply, dict) or reply.get("status") not in ("success", "failure"):
        raise InvalidResponseError(
            f'the reply from {url} is not {{"status": "success" | "failure", ...}}: '
            f"{_excerpt(body)}"
        )
    if reply["status"] == "failure":
        raise RemoteExecuteError(str(reply.get("reason") or "the endpoint gave no reason"))
    return reply.get("retval")


def _excerpt(body: bytes, limit: int = 200) -> str:
    text = body[:limit].decode("utf-8", "replace")
    return repr(text + ("…" if len(body) > limit else ""))


def _request(
    url: str,
    method: str,
    params: dict[str, Any],
    timeout: float,
    max_redirects: int,
    headers: dict[str, str],
) -> tuple[int, str, bytes]:
    import urllib.error
    import urllib.request

    check_url(url)
    data = None
    all_headers = {"Accept": "application/json", "User-Agent": _USER_AGENT, **headers}
    if method == "GET":
        if params:
            parts = urllib.parse.urlsplit(url)
            query = "&".join(
                q
                for q in (
                    parts.query,
                    urllib.parse.urlencode(
                        {k: _query_value(v) for k, v in params.items()}, doseq=True
                    ),
                )
                if q
            )
            url = urllib.parse.urlunsplit(parts._replace(query=query))
    else:
        data = json.dumps(params, cls=DjangoJSONEncoder).encode()
        all_headers["Content-Type"] = "application/json"
    # check_url() allowed only http(s); the redirect handler keeps it so.
    request = urllib.request.Request(url, data=data, headers=all_headers, method=method)  # noqa: S310
    opener = urllib.request.build_opener(_redirect_handler(max_redirects))
    deadline = time.monotonic() + timeout
    try:
        with opener.open(request, timeout=timeout) as response:
            status = response.status
            content_type = response.headers.get("Content-Type", "")
            body = _read(response, url, deadline, timeout)
    except urllib.error.HTTPError as exc:
        with exc:
            if 300 <= exc.code < 400:
                raise RequestError(
                    f"{method} {url}: redirect not followed (HTTP {exc.code}; "
                    "a 307/308 redirect of a POST is never followed)"
                ) from None
            error = HTTPStatusError(
                f"{method} {url} answered HTTP {exc.code} {exc.reason}: "
                f"{_excerpt(exc.read(_CHUNK))}"
            )
            if exc.code in RETRY_STATUSES:
                raise _TransientError(error, _retry_after(exc.headers.get("Retry-After"))) from None
            raise error from None
    except RequestError:
        raise
    except TimeoutError as exc:
        raise _TransientError(RequestError(f"no reply from {url} within {timeout:g}s")) from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise _TransientError(RequestError(f"no reply from {url} within {timeout:g}s")) from exc
        raise _TransientError(RequestError(f"cannot reach {url}: {exc.reason}")) from exc
    except (ConnectionError, OSError) as exc:
        raise _TransientError(RequestError(f"cannot reach {url}: {exc}")) from exc
    return status, content_type, body


def _read(response: Any, url: str, deadline: float, timeout: float) -> bytes:
    limit = settings.MAX_PAYLOAD_BYTES
    chunks: list[bytes] = []
    size = 0
    while True:
        # The socket timeout bounds each read; the deadline bounds them all,
        # so a server that trickles bytes cannot hold a worker for ever.
        if time.monotonic() > deadline:
            raise TimeoutError(f"no complete reply from {url} within {timeout:g}s")
        chunk = response.read(_CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if limit is not None and size > limit:
            raise InvalidResponseError(
                f"the reply from {url} is larger than {limit:,} bytes (DJTASKS_MAX_PAYLOAD_BYTES)"
            )
        chunks.append(chunk)


def _query_value(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_query_value(v) for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, str | int | float):
        return value
    return json.dumps(value, cls=DjangoJSONEncoder).strip('"')


def _retry_after(value: str | None) -> float | None:
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to backoff
    return None if seconds is None or seconds < 0 else min(seconds, 600.0)


def _redirect_handler(max_redirects: int) -> Any:
    import urllib.request

    class Redirects(urllib.request.HTTPRedirectHandler):
        # Counted here; urllib's own limit is kept out of the way.
        max_redirections = max_redirects + 1
        followed = 0

        def redirect_request(
            self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
        ) -> Any:
            self.followed += 1
            refused = self.followed > max_redirects
            old = urllib.parse.urlsplit(req.full_url).scheme.lower()
            new = urllib.parse.urlsplit(newurl).scheme.lower()
            if refused or new not in SCHEMES or (old == "https" and new == "http"):
                fp.close()  # urllib would close it only on a followed redirect
            if refused:
                raise RequestError(
                    f"{req.full_url} redirected to {newurl}: more than {max_redirects} redirect(s)"
                    if max_redirects
                    else f"{req.full_url} redirected to {newurl}, and this URL follows no redirects"
                )
            if new not in SCHEMES:
                raise RequestError(
                    f"{req.full_url} redirected to {newurl}: only http and https are followed"
                )
            if old == "https" and new == "http":
                raise RequestError(
                    f"{req.full_url} redirected to {newurl}: a redirect from "
                    "https to http is not followed"
                )
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    return Redirects()


# -- the endpoint side -------------------------------------------------------------


def request_params(request: HttpRequest) -> dict[str, Any]:
    """The parameters a :class:`URL` call sent: the JSON body of a POST, or
    the query string (one value per name, lists for repeated names)."""
    if request.method == "POST":
        if request.content_type == "application/json":
            value = json.loads(request.body or b"{}")
            if not isinstance(value, dict):
                raise ValueError("the JSON body is not an object")
            return value
        source = request.POST
    else:
        source = request.GET
    return {k: (v[0] if len(v) == 1 else v) for k, v in source.lists()}


def task_webhook(view: Callable[..., Any]) -> Callable[..., HttpResponse]:
    """Make ``view`` an endpoint for :class:`URL` calls.

    The view takes the request (read the parameters with
    :func:`request_params`) and returns a JSON-serializable value, sent as
    ``{"status": "success", "retval": value}``; an exception it raises is
    sent as ``{"status": "failure", "reason": "<Type>: <message>"}`` (and
    logged). The view is CSRF-exempt, since workers post without a token:
    authenticate callers yourself, for instance with a header set through
    ``URL(..., headers=...)``.
    """

    @functools.wraps(view)
    def endpoint(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            retval = view(request, *args, **kwargs)
            return JsonResponse({"status": "success", "retval": retval}, encoder=DjangoJSONEncoder)
        except Exception as exc:
            logger.exception("webhook %s failed", request.path)
            return JsonResponse({"status": "failure", "reason": f"{type(exc).__name__}: {exc}"})

    return csrf_exempt(endpoint)
