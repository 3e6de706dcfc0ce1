"""Who may call the API, what each route needs, and how errors look.

Two ways in:

- a **Django session** of an active staff user (the admin's login). Unsafe
  methods then need Django's CSRF token (the ``X-CSRFToken`` header), as a
  form of the admin would;
- a **token** for machines: ``Authorization: Bearer <token>``, where
  ``DJTASKS_API_TOKENS`` maps each token to the username it acts as. No
  cookie is involved, so no CSRF token is needed (a page on another site
  cannot set that header without the browser asking first).

Either way the user then needs the model permission of the route, on
:class:`~djtasks.models.TaskRecord`, as in the admin: ``view`` to read,
``add`` to apply or retry a task, ``change`` to revoke tasks and to control
queues and workers. Superusers have them all.

Every error is ``{"error": "<message>", "status": <code>}``.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from django.contrib.auth import get_user_model
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.cache import add_never_cache_headers
from django.views.decorators.csrf import csrf_exempt

from ..conf import settings

logger = logging.getLogger("djtasks.api")

#: The permission each kind of route needs.
PERMISSIONS = {
    "view": "djtasks.view_taskrecord",
    "add": "djtasks.add_taskrecord",
    "change": "djtasks.change_taskrecord",
}
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
REALM = 'Bearer realm="djtasks"'


class ApiError(Exception):
    """Answer the request with a JSON error: ``{"error": message, "status": status}``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    def response(self) -> JsonResponse:
        response = error_response(self.status, self.message)
        for key, value in self.headers.items():
            response[key] = value
        return response


def error_response(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message, "status": status}, status=status)


# -- authentication -------------------------------------------------------------------


def authenticate(request: HttpRequest) -> tuple[Any, str]:
    """The user making the request and how (``"token"`` or ``"session"``).

    :raises ApiError: 401 without credentials or with a bad token, 403 for a
        session user who is not active staff.
    """
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header:
        # A token, when given, decides alone: a bad one is not rescued by a cookie.
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(
                401,
                "the Authorization header must be 'Bearer <token>'",
                {"WWW-Authenticate": REALM},
            )
        user = _token_user(token)
        if user is None:
            raise ApiError(401, "invalid token", {"WWW-Authenticate": REALM})
        return user, "token"
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        raise ApiError(
            401,
            "authentication required: log in as a staff user, or send "
            "'Authorization: Bearer <token>' (DJTASKS_API_TOKENS)",
            {"WWW-Authenticate": REALM},
        )
    if not (user.is_active and user.is_staff):
        raise ApiError(403, "only staff users may use the API")
    return user, "session"


def _token_user(token: str) -> Any:
    tokens = settings.API_TOKENS or {}
    given = token.encode()
    username = None
    # Compare with every token, in constant time each, so the time taken
    # tells nothing about how much of a token was right.
    for known, name in tokens.items():
        if hmac.compare_digest(str(known).encode(), given):
            username = name
    if username is None:
        return None
    model = get_user_model()
    try:
        user = model._default_manager.get_by_natural_key(username)
    except model.DoesNotExist:
        logger.warning("DJTASKS_API_TOKENS names user %r, who does not exist", username)
        return None
    return user if user.is_active else None


class _CsrfCheck(CsrfViewMiddleware):
    def _reject(self, request: HttpRequest, reason: str) -> Any:
        return reason  # the reason, not Django's HTML page


def check_csrf(request: HttpRequest) -> None:
    """Django's CSRF check, as its middleware would make it on a view not exempt."""
    check = _CsrfCheck(lambda r: HttpResponse())
    check.process_request(request)
    reason = check.process_view(request, None, (), {})  # type: ignore[arg-type]
    if reason:
        raise ApiError(
            403,
            f"CSRF check failed ({reason}): send the csrftoken cookie's "
            "value in the X-CSRFToken header, or use a token",
        )


def can_see_results(user: Any) -> bool:
    """Results, errors and tracebacks are shown to staff, as by the status views."""
    return bool(user.is_active and (user.is_staff or user.is_superuser))


# -- the decorator ----------------------------------------------------------------------


def endpoint(methods: Sequence[str], permission: str | None) -> Callable[..., Any]:
    """Make a function an API view: method check, authentication, CSRF for
    sessions, ``permission`` (a key of :data:`PERMISSIONS`, or ``None`` for a
    public route), JSON errors, no caching.

    The view receives the request with ``request.api_user`` set.
    """
    allowed = tuple(methods) + (("HEAD",) if "GET" in methods else ())

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                if request.method not in allowed:
                    raise ApiError(
                        405,
                        f"{request.method} is not allowed here; use {' or '.join(methods)}",
                        {"Allow": ", ".join(allowed)},
                    )
                if permission is not None:
                    user, via = authenticate(request)
                    if via == "session" and request.method not in SAFE_METHODS:
                        check_csrf(request)
                    needed = PERMISSIONS[permission]
                    if not user.has_perm(needed):
                        raise ApiError(403, f"this needs the {needed} permission")
                    request.api_user = user  # type: ignore[attr-defined]
                response = view(request, *args, **kwargs)
            except ApiError as exc:
                response = exc.response()
            except Http404 as exc:
                response = error_response(404, str(exc) or "not found")
            add_never_cache_headers(response)
            return response

        wrapper.api_methods = tuple(methods)  # type: ignore[attr-defined]
        wrapper.api_permission = permission  # type: ignore[attr-defined]
        # CSRF is checked above, for sessions only: a token request has no cookie to forge.
        return csrf_exempt(wrapper)

    return decorate


# -- input ------------------------------------------------------------------------------


def json_body(request: HttpRequest) -> dict[str, Any]:
    """The request's JSON object body (``{}`` when empty).

    :raises ApiError: 400 if it is not JSON, or not an object.
    """
    raw = request.body
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return value


def unknown_keys(given: Any, allowed: Sequence[str], what: str) -> None:
    """:raises ApiError: 400 naming the keys of ``given`` not in ``allowed``."""
    extra = sorted(set(given) - set(allowed))
    if extra:
        raise ApiError(
            400,
            f"unknown {what} {', '.join(map(repr, extra))}; allowed: "
            f"{', '.join(allowed) or 'none'}",
        )
