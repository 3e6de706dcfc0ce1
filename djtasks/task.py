"""``@task`` and :class:`Task`: declaring tasks and calling them."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import inspect
import json
import math
import numbers
import random
import re
import uuid
from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeVar, overload

from django.utils import timezone

from . import compression as compressors
from . import redaction, serialization, states
from .conf import settings
from .exceptions import (
    DuplicateTask,
    ImproperlyConfiguredTask,
    MaxRetriesExceededError,
    Retry,
)
from .ids import uuid7
from .registry import tasks as registry
from .request import Request, current_request
from .result import AsyncResult, EagerResult
from .routing import resolve

P = ParamSpec("P")
R = TypeVar("R")

PRIORITY_MIN, PRIORITY_MAX = -100, 100
_RATE_RE = re.compile(r"^\d+(\.\d+)?/[smh]$")
_UNSET: Any = object()


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_priority(priority: Any, where: str = "priority") -> int:
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise TypeError(
            f"{where} must be an int from {PRIORITY_MIN} to {PRIORITY_MAX}, "
            f"not {type(priority).__name__}"
        )
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise ValueError(
            f"{where} must be from {PRIORITY_MIN} to {PRIORITY_MAX} "
            f"(higher runs first), not {priority}"
        )
    return priority


def check_queue(queue: Any, where: str = "queue") -> str:
    if not isinstance(queue, str) or not queue or len(queue) > 100:
        raise ValueError(
            f"{where} must be a non-empty string of at most 100 characters, not {queue!r}"
        )
    return queue


#: The longest countdown, expiry or time limit (about 317 years): beyond it,
#: or at infinity or NaN, date arithmetic overflows and JSON cannot hold it.
MAX_SECONDS = 10**10


def _check_seconds(value: Any, where: str, allow_none: bool = True) -> float | None:
    if value is None and allow_none:
        return None
    if not _is_number(value) or value < 0:
        raise ValueError(f"{where} must be a number of seconds >= 0, not {value!r}")
    if not math.isfinite(value) or value > MAX_SECONDS:
        raise ValueError(
            f"{where} must be a finite number of seconds up to {MAX_SECONDS:,}, not {value!r}"
        )
    return float(value)


def _check_headers(headers: dict[str, Any]) -> None:
    # The row's JSON column takes strict JSON only: a value json cannot encode,
    # or NaN, would fail the INSERT itself (and, on PostgreSQL, abort the
    # caller's transaction). Links carry their signatures' arguments here too.
    try:
        json.dumps(headers, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"headers (with link/link_error signatures) must be JSON: {exc}") from None


def _aware(value: Any, where: str) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise TypeError(f"{where} must be a datetime, not {type(value).__name__}")
    if timezone.is_naive(value):
        raise ValueError(
            f"{where} must be timezone-aware (got naive {value!r}); use for example "
            "django.utils.timezone.now() + timedelta(...)"
        )
    return value


def _expiry(expires: Any, now: dt.datetime) -> dt.datetime | None:
    if expires is None:
        return None
    if isinstance(expires, dt.timedelta):
        return now + expires
    if isinstance(expires, dt.datetime):
        return _aware(expires, "expires")
    seconds = _check_seconds(expires, "expires")
    return now + dt.timedelta(seconds=seconds or 0)


def backoff_countdown(retries: int, factor: float, maximum: float, jitter: bool) -> float:
    """Exponential backoff: ``factor * 2**retries`` capped at ``maximum``,
    drawn uniformly from ``[0, that]`` when ``jitter`` is set."""
    countdown = min(maximum, factor * (2**retries))
    if jitter:
        countdown = random.uniform(0, countdown)  # noqa: S311 - not for security
    return max(0.0, countdown)


class Task(Generic[P, R]):
    """A registered task: a function plus how to call it.

    Made by :func:`task`; call ``.delay()`` / ``.apply_async()`` to enqueue,
    ``.apply()`` to run in this process, or call it to run the function now.
    """

    def __init__(
        self,
        run: Callable[..., R],
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        max_retries: int | None = 3,
        default_retry_delay: float = 180,
        autoretry_for: tuple[type[BaseException], ...] = (),
        retry_kwargs: dict[str, Any] | None = None,
        retry_backoff: bool | float = False,
        retry_backoff_max: float = 600,
        retry_jitter: bool = True,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        rate_limit: str | None = None,
        expires: float | dt.timedelta | None = None,
        acks_late: bool | None = None,
        ignore_result: bool = False,
        serializer: str | None = None,
        compression: str | None = None,
        bind: bool = False,
        public_result: bool = False,
        unique_key: Callable[..., str] | bool | None = None,
        unique_for: float | None = None,
        on_duplicate: str = "return",
        concurrency_limit: int | None = None,
        concurrency_key: str | None = None,
        sensitive: tuple[str, ...] | list[str] = (),
    ) -> None:
        if not callable(run):
            raise ImproperlyConfiguredTask(f"@task needs a function, not {run!r}")
        if inspect.iscoroutinefunction(run):
            raise ImproperlyConfiguredTask(
                f"@task takes plain functions, and {run.__qualname__} is 'async def': wrap "
                "it with asgiref.sync.async_to_sync, or declare it with django.tasks' "
                "@task and djtasks.backends.DatabaseBackend, which runs coroutines"
            )
        self.run = run
        self.name = name or f"{run.__module__}.{run.__qualname__}"
        if not isinstance(self.name, str) or not self.name:
            raise ImproperlyConfiguredTask(f"task name must be a non-empty string, not {name!r}")
        where = f"@task option for {self.name}:"
        self.queue = None if queue is None else check_queue(queue, f"{where} queue")
        self.priority = None if priority is None else check_priority(priority, f"{where} priority")
        if max_retries is not None and (
            not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0
        ):
            raise ImproperlyConfiguredTask(f"{where} max_retries must be an int >= 0 or None")
        self.max_retries = max_retries
        self.default_retry_delay = _check_seconds(
            default_retry_delay, f"{where} default_retry_delay", False
        )
        if isinstance(autoretry_for, type):
            autoretry_for = (autoretry_for,)
        if not all(isinstance(e, type) and issubclass(e, BaseException) for e in autoretry_for):
            raise ImproperlyConfiguredTask(f"{where} autoretry_for must be exception classes")
        self.autoretry_for = tuple(autoretry_for)
        self.retry_kwargs = dict(retry_kwargs or {})
        self.retry_backoff = retry_backoff
        self.retry_backoff_max = _check_seconds(
            retry_backoff_max, f"{where} retry_backoff_max", False
        )
        self.retry_jitter = bool(retry_jitter)
        self.time_limit = _check_seconds(time_limit, f"{where} time_limit")
        self.soft_time_limit = _check_seconds(soft_time_limit, f"{where} soft_time_limit")
        if rate_limit is not None and not (
            isinstance(rate_limit, str) and _RATE_RE.match(rate_limit)
        ):
            raise ImproperlyConfiguredTask(
                f"{where} rate_limit must look like '10/s', '100/m' or '1000/h', not {rate_limit!r}"
            )
        self.rate_limit = rate_limit
        if expires is not None and not isinstance(expires, dt.timedelta):
            _check_seconds(expires, f"{where} expires")
        self.expires = expires
        self._acks_late = acks_late
        self.ignore_result = bool(ignore_result)
        if serializer is not None:
            try:
                serialization.get(serializer)
            except ValueError as exc:
                raise ImproperlyConfiguredTask(f"{where} {exc}") from None
        self.serializer = serializer
        if compression is not None:
            try:
                compressors.get(compression)
            except ValueError as exc:
                raise ImproperlyConfiguredTask(f"{where} {exc}") from None
        self.compression = compression
        self.bind = bool(bind)
        self.public_result = bool(public_result)
        if unique_key is not None and not (unique_key is True or callable(unique_key)):
            raise ImproperlyConfiguredTask(
                f"{where} unique_key must be True (key = name + arguments) or a callable "
                "taking the call's arguments and returning a string"
            )
        self.unique_key = unique_key
        self.unique_for = _check_seconds(unique_for, f"{where} unique_for")
        if on_duplicate not in ("return", "raise"):
            raise ImproperlyConfiguredTask(f"{where} on_duplicate must be 'return' or 'raise'")
        self.on_duplicate = on_duplicate
        if concurrency_limit is not None and (
            not isinstance(concurrency_limit, int)
            or isinstance(concurrency_limit, bool)
            or concurrency_limit < 1
        ):
            raise ImproperlyConfiguredTask(f"{where} concurrency_limit must be an int >= 1")
        self.concurrency_limit = concurrency_limit
        if concurrency_key is not None:
            if concurrency_limit is None:
                raise ImproperlyConfiguredTask(f"{where} concurrency_key needs concurrency_limit")
            params = self._signature.parameters if self._signature else {}
            if concurrency_key not in params:
                raise ImproperlyConfiguredTask(
                    f"{where} concurrency_key {concurrency_key!r} is not an argument of {self.name}"
                )
        self.concurrency_key = concurrency_key
        if isinstance(sensitive, str) or not all(isinstance(s, str) for s in sensitive):
            raise ImproperlyConfiguredTask(f"{where} sensitive must be a list of argument names")
        params = self._signature.parameters if self._signature else {}
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        unknown = [s for s in sensitive if s not in params and not takes_any]
        if unknown:
            raise ImproperlyConfiguredTask(
                f"{where} sensitive names {', '.join(map(repr, unknown))}, not an argument "
                f"of {self.name}"
            )
        self.sensitive = frozenset(sensitive)
        self.__doc__ = run.__doc__
        self.__name__ = getattr(run, "__name__", self.name)
        self.__module__ = run.__module__
        self.__wrapped__ = run

    def __repr__(self) -> str:
        return f"<@task: {self.name}>"

    @property
    def acks_late(self) -> bool:
        return settings.TASK_ACKS_LATE if self._acks_late is None else self._acks_late

    # -- running -------------------------------------------------------------

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function now, in this process (no queue, no retries)."""
        if self.bind:
            return self.run(self, *args, **kwargs)
        return self.run(*args, **kwargs)

    @property
    def request(self) -> Request:
        """The current call's :class:`~djtasks.request.Request` (inside the task)."""
        req = current_request.get()
        if req is None or req.task != self.name:
            return Request(task=self.name, called_directly=True)
        return req

    # -- calling -------------------------------------------------------------

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult:
        """Enqueue with the task's defaults: ``apply_async(args, kwargs)``."""
        return self.apply_async(args, kwargs)

    def bulk_delay(self, calls: Any, **options: Any) -> list[AsyncResult]:
        """Enqueue many calls of this task at once; return their results in order.

        ``calls`` holds argument tuples (``[(1, 2), (3, 4)]``) or ``(args,
        kwargs)`` pairs. Options are those of :meth:`apply_async` and apply to
        every call; each call is validated like ``delay()``. All rows go in one
        transaction with one wake-up (COPY on PostgreSQL), many times faster
        than a loop of ``delay()``.
        """
        from . import queue as task_queue

        if options.get("unique_key") is not None or options.get("task_id") is not None:
            raise TypeError("bulk_delay() does not take unique_key or task_id")
        pairs = []
        for call in calls:
            if (
                isinstance(call, tuple)
                and len(call) == 2
                and isinstance(call[0], list | tuple)
                and isinstance(call[1], dict)
            ):
                pairs.append((call[0], call[1]))
            else:
                pairs.append((call, {}))
        if settings.ALWAYS_EAGER:
            return [self.apply_async(args, kwargs, **options) for args, kwargs in pairs]
        messages = []
        template = None
        serializer = options.get("serializer") or self.serializer or settings.TASK_SERIALIZER
        compression = options.get("compression") or self.compression
        for args, kwargs in pairs:
            if template is None or self.concurrency_key is not None or self.sensitive:
                template = self.build_message(args, kwargs, **options)
                messages.append(template)
                continue
            # Same task, same options: only the id and the arguments differ, so
            # skip re-validating the options and re-routing for every call.
            args, kwargs = self._check_arguments(args, kwargs)
            extra = {"compression": compression} if compression else {}
            content_type, payload = serialization.encode_arguments(
                self.name, args, kwargs, serializer, **extra
            )
            # A shallow copy: the same options (headers included) by reference,
            # a new id and arguments. dataclasses.replace() would re-run
            # __init__ and cost more than the rest of the loop.
            message = object.__new__(task_queue.Message)
            message.__dict__.update(template.__dict__)
            message.id = uuid7()
            message.payload = payload
            message.content_type = content_type
            messages.append(message)
        task_queue.enqueue_bulk(messages)
        return [AsyncResult(m.id, task_name=self.name) for m in messages]

    def apply_async(
        self,
        args: tuple[Any, ...] | list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: dt.datetime | None = None,
        expires: float | dt.timedelta | dt.datetime | None = _UNSET,
        queue: str | None = None,
        priority: int | None = None,
        task_id: str | uuid.UUID | None = None,
        serializer: str | None = None,
        compression: str | None = None,
        headers: dict[str, Any] | None = None,
        ignore_result: bool | None = None,
        acks_late: bool | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        unique_key: str | None = None,
        unique_for: float | None = None,
        link: Any = None,
        link_error: Any = None,
        argsrepr: str | None = None,
        kwargsrepr: str | None = None,
    ) -> AsyncResult:
        """Enqueue a call with options; return its :class:`AsyncResult`.

        :param args: positional arguments (list or tuple).
        :param kwargs: keyword arguments (dict).
        :param countdown: run no sooner than this many seconds from now.
        :param eta: run no sooner than this timezone-aware datetime.
        :param expires: seconds, timedelta or aware datetime after which the
            task is revoked instead of run if it has not started.
        :param queue: queue name (beats ``DJTASKS_TASK_ROUTES`` and the task's own).
        :param priority: -100..100, higher runs first.
        :param task_id: the id to use (a UUID or its string).
        :param serializer: serializer name for the arguments.
        :param compression: ``"zlib"`` or ``"bzip2"`` to compress the arguments
            (default: the task's, else ``DJTASKS_COMPRESSION``).
        :param headers: a JSON-serializable dict stored with the task.
        :param ignore_result: do not store the return value.
        :param acks_late: re-run the task if its worker dies while running it.
        :param time_limit: hard limit in seconds for this call (the process is killed).
        :param soft_time_limit: seconds after which ``SoftTimeLimitExceeded`` is raised
            inside the task.
        :param unique_key: while a task with this key is unfinished, another call
            with the key returns that task's result (or raises
            :class:`~djtasks.exceptions.DuplicateTask` with ``on_duplicate="raise"``).
        :param unique_for: the key stops holding after this many seconds.
        :param link: a signature (or list) to call with the result on success.
        :param link_error: a signature (or list) to call with the task id on failure.
        :param argsrepr: text shown instead of the positional arguments (admin,
            HTTP API); the task still gets the real ones. See ``@task(sensitive=...)``.
        :param kwargsrepr: the same for the keyword arguments.
        :raises TypeError, ValueError: for arguments or options that cannot work,
            naming the culprit; nothing is written then.
        :raises djtasks.exceptions.EncodeError: an argument cannot be serialized.
        :raises djtasks.serialization.PayloadTooLarge: the serialized arguments
            exceed ``DJTASKS_MAX_PAYLOAD_BYTES``.
        """
        from . import queue as task_queue

        message = self.build_message(
            args,
            kwargs,
            countdown=countdown,
            eta=eta,
            expires=expires,
            queue=queue,
            priority=priority,
            task_id=task_id,
            serializer=serializer,
            compression=compression,
            headers=headers,
            ignore_result=ignore_result,
            acks_late=acks_late,
            time_limit=time_limit,
            soft_time_limit=soft_time_limit,
            unique_key=unique_key,
            unique_for=unique_for,
            link=link,
            link_error=link_error,
            argsrepr=argsrepr,
            kwargsrepr=kwargsrepr,
        )
        if settings.ALWAYS_EAGER:
            # Validated and encoded like a real call, then run here.
            result = self.apply(
                args, kwargs, task_id=message.id, _propagate=settings.EAGER_PROPAGATES
            )
            _run_links_eagerly(result, link, link_error)
            return result
        existing = task_queue.enqueue([message])
        if existing:
            if self.on_duplicate == "raise":
                raise DuplicateTask(
                    f"a task with unique_key {message.unique_key!r} is "
                    f"already waiting or running: {existing[0]}"
                )
            return AsyncResult(existing[0], task_name=self.name)
        return AsyncResult(message.id, task_name=self.name)

    def build_message(
        self,
        args: Any = None,
        kwargs: Any = None,
        *,
        countdown: float | None = None,
        eta: dt.datetime | None = None,
        expires: Any = _UNSET,
        queue: str | None = None,
        priority: int | None = None,
        task_id: Any = None,
        serializer: str | None = None,
        compression: str | None = None,
        headers: dict[str, Any] | None = None,
        ignore_result: bool | None = None,
        acks_late: bool | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        unique_key: str | None = None,
        unique_for: float | None = None,
        link: Any = None,
        link_error: Any = None,
        parent_id: Any = None,
        root_id: Any = None,
        group_id: Any = None,
        argsrepr: str | None = None,
        kwargsrepr: str | None = None,
    ) -> Any:
        """Validate a call and return the row to insert (a ``queue.Message``), writing nothing.

        ``apply_async`` and the canvas use it; it raises the same errors.
        """
        from . import queue as task_queue

        args, kwargs = self._check_arguments(args, kwargs)
        now = timezone.now()
        if countdown is not None and eta is not None:
            raise ValueError("give countdown or eta, not both")
        if countdown is not None:
            run_at = now + dt.timedelta(seconds=_check_seconds(countdown, "countdown") or 0)
        elif eta is not None:
            run_at = _aware(eta, "eta")
        else:
            run_at = now
        expires_at = _expiry(self.expires if expires is _UNSET else expires, now)
        if queue is not None:
            check_queue(queue)
        if priority is not None:
            check_priority(priority)
        queue_name, prio = resolve(self.name, queue, priority, self.queue, self.priority)
        allowed = settings.QUEUES
        if allowed is not None and queue_name not in allowed:
            raise ValueError(
                f"queue {queue_name!r} of task {self.name!r} is not one of "
                f"DJTASKS_QUEUES ({', '.join(map(repr, allowed))})"
            )
        check_priority(prio, f"routed priority of {self.name}")
        if headers is not None and not isinstance(headers, dict):
            raise TypeError(f"headers must be a dict, not {type(headers).__name__}")
        tid = _task_id(task_id)
        headers = dict(headers or {})
        if time_limit is not None or soft_time_limit is not None:
            headers["timelimit"] = [
                _check_seconds(soft_time_limit, "soft_time_limit"),
                _check_seconds(time_limit, "time_limit"),
            ]
        for key, callbacks in (("link", link), ("link_error", link_error)):
            if callbacks is not None:
                from .canvas import callbacks_to_dicts

                headers[key] = headers.get(key, []) + callbacks_to_dicts(callbacks, key)
        headers.update(self._shown_arguments(args, kwargs, argsrepr, kwargsrepr))
        _check_headers(headers)
        ukey, uuntil = self._unique(args, kwargs, unique_key, unique_for, now)
        content_type, payload = serialization.encode_arguments(
            self.name,
            args,
            kwargs,
            serializer or self.serializer or settings.TASK_SERIALIZER,
            compression or self.compression,
        )
        parent = current_request.get()
        if parent_id is None and parent is not None and not parent.is_eager:
            parent_id, root_id = parent.id, root_id or parent.root_id or parent.id
        return task_queue.Message(
            id=tid,
            name=self.name,
            queue=queue_name,
            priority=prio,
            content_type=content_type,
            payload=payload,
            eta=run_at,
            created_at=now,
            headers=headers,
            expires=expires_at,
            acks_late=self.acks_late if acks_late is None else bool(acks_late),
            ignore_result=self.ignore_result if ignore_result is None else bool(ignore_result),
            parent_id=_maybe_uuid(parent_id),
            root_id=_maybe_uuid(root_id or parent_id),
            group_id=_maybe_uuid(group_id),
            unique_key=ukey,
            unique_until=uuntil,
            concurrency_key=self._limit_key(args, kwargs),
        )

    def _unique(
        self,
        args: list[Any],
        kwargs: dict[str, Any],
        key: str | None,
        unique_for: float | None,
        now: dt.datetime,
    ) -> tuple[str | None, Any]:
        if key is None and self.unique_key is not None:
            if self.unique_key is True:
                # The plain JSON of the call: no signature or compression in
                # it, so the key survives a key rotation or a settings change.
                digest = hashlib.sha256(
                    serialization.JSON.dumps([list(args), kwargs]).encode()
                ).hexdigest()[:32]
                key = f"{self.name}:{digest}"
            else:
                key = self.unique_key(*args, **kwargs)
        if key is None:
            return None, None
        if not isinstance(key, str) or not key or len(key) > 255:
            raise ValueError(
                f"unique_key must be a non-empty string of at most 255 characters, not {key!r}"
            )
        seconds = (
            _check_seconds(unique_for, "unique_for") if unique_for is not None else self.unique_for
        )
        return key, (now + dt.timedelta(seconds=seconds) if seconds else None)

    def _limit_key(self, args: list[Any], kwargs: dict[str, Any]) -> str | None:
        """The key shared by rows under one rate limit or concurrency cap."""
        if self.concurrency_key is not None and self._signature is not None:
            bound = self._signature.bind(*((None,) if self.bind else ()), *args, **kwargs)
            bound.apply_defaults()
            return f"{self.name}:{bound.arguments.get(self.concurrency_key)}"[:255]
        if self.concurrency_limit is not None or self.rate_limit is not None:
            return self.name
        return None

    def _shown_arguments(
        self, args: list[Any], kwargs: dict[str, Any], argsrepr: Any, kwargsrepr: Any
    ) -> dict[str, str]:
        """The ``argsrepr``/``kwargsrepr`` headers: what the admin and the API show
        instead of the arguments (none when everything may be shown)."""
        for name, value in (("argsrepr", argsrepr), ("kwargsrepr", kwargsrepr)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a string, not {type(value).__name__}")
        if argsrepr is None and kwargsrepr is None and not self.sensitive:
            return {}
        params = list(self._signature.parameters.values()) if self._signature else []
        positional = [
            p.name
            for p in params[1 if self.bind else 0 :]
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        shown_args, shown_kwargs = redaction.masked(args, kwargs, positional, self.sensitive)
        return {
            redaction.ARGSREPR: shown_args if argsrepr is None else redaction.text_of(argsrepr),
            redaction.KWARGSREPR: shown_kwargs
            if kwargsrepr is None
            else redaction.text_of(kwargsrepr),
        }

    def _check_arguments(self, args: Any, kwargs: Any) -> tuple[list[Any], dict[str, Any]]:
        if args is None:
            args = ()
        if kwargs is None:
            kwargs = {}
        if not isinstance(args, list | tuple):
            raise TypeError(
                f"args of task {self.name!r} must be a list or tuple, not {type(args).__name__}"
            )
        if not isinstance(kwargs, dict):
            raise TypeError(
                f"kwargs of task {self.name!r} must be a dict, not {type(kwargs).__name__}"
            )
        self._check_signature(args, kwargs)
        return list(args), kwargs

    @functools.cached_property
    def _signature(self) -> inspect.Signature | None:
        try:
            return inspect.signature(self.run)
        except (TypeError, ValueError):
            return None

    @functools.cached_property
    def _arity(self) -> tuple[int, int, frozenset[str]] | None:
        """(required positionals, max positionals, keyword names) when the
        function takes only plain parameters, for a quick call check."""
        sig = self._signature
        if sig is None:
            return None
        params = list(sig.parameters.values())[1 if self.bind else 0 :]
        if any(p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in params):
            return None
        positional = [p for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
        required = sum(1 for p in positional if p.default is p.empty)
        if any(p.default is p.empty for p in params if p.kind is p.KEYWORD_ONLY):
            return None
        return required, len(positional), frozenset(p.name for p in params)

    def _check_signature(self, args: Any, kwargs: dict[str, Any]) -> None:
        arity = self._arity
        if arity is not None and not kwargs and arity[0] <= len(args) <= arity[1]:
            return  # surely bindable: skip the slow Signature.bind

        # A call the function could never accept is an error here, not in the worker.
        sig = self._signature
        if sig is None:
            return
        try:
            if self.bind:
                sig.bind(None, *args, **kwargs)
            else:
                sig.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"bad arguments for task {self.name!r}: {exc}") from None

    def apply(
        self,
        args: tuple[Any, ...] | list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        task_id: Any = None,
        _propagate: bool = False,
        **options: Any,
    ) -> EagerResult:
        """Run the task now, in this process, retries included; return an :class:`EagerResult`.

        Exceptions are kept in the result (``.get()`` re-raises them).
        """
        from .worker.executor import run_eagerly

        args, kwargs = self._check_arguments(args, kwargs)
        serialization.encode_arguments(
            self.name, args, kwargs, self.serializer or settings.TASK_SERIALIZER
        )
        result = run_eagerly(self, str(_task_id(task_id)), args, kwargs)
        if _propagate and result.state == states.FAILURE:
            raise result.result
        return result

    # -- canvas ----------------------------------------------------------------

    def s(self, *args: Any, **kwargs: Any) -> Any:
        """A signature of this task with these arguments (more can be prepended later)."""
        from .canvas import Signature

        return Signature(self.name, args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Any:
        """An immutable signature: a chain's previous result is not passed to it."""
        from .canvas import Signature

        return Signature(self.name, args, kwargs, immutable=True)

    def signature(
        self, args: Any = (), kwargs: dict[str, Any] | None = None, **options: Any
    ) -> Any:
        """A signature with call options: ``task.signature((2, 2), countdown=10)``."""
        from .canvas import Signature

        return Signature(self.name, args or (), kwargs, options)

    subtask = signature

    def map(self, iterable: Any) -> Any:
        """One task running this one on each item: ``xmap``."""
        from .canvas import xmap

        return xmap(self, iterable)

    def starmap(self, iterable: Any) -> Any:
        from .canvas import xstarmap

        return xstarmap(self, iterable)

    def chunks(self, iterable: Any, n: int) -> Any:
        from .canvas import chunks

        return chunks(self, iterable, n)

    # -- inside a bound task -------------------------------------------------

    def retry(
        self,
        args: Any = None,
        kwargs: Any = None,
        exc: BaseException | None = None,
        throw: bool = True,
        eta: dt.datetime | None = None,
        countdown: float | None = None,
        max_retries: int | None = _UNSET,
        **options: Any,
    ) -> Retry:
        """End this run and schedule another (same id, ``retries + 1``).

        :param exc: the exception that caused the retry (raised instead if
            retries are exhausted).
        :param countdown: seconds before the next run (default
            ``default_retry_delay``); or ``eta``, an aware datetime.
        :param max_retries: overrides the task's ``max_retries`` (``None`` = no limit).
        :raises Retry: always (unless ``throw=False``); let it propagate.
        :raises MaxRetriesExceededError: when no retries are left and no ``exc``.
        """
        req = self.request
        if req.called_directly:
            if exc is not None:
                raise exc
            raise RuntimeError(f"{self.name}.retry() called outside a worker run")
        limit = self.max_retries if max_retries is _UNSET else max_retries
        if limit is not None and req.retries >= limit:
            if exc is not None:
                raise exc
            raise MaxRetriesExceededError(
                f"can't retry {self.name}[{req.id}]: max_retries={limit} reached"
            )
        if eta is not None:
            when: Any = _aware(eta, "eta")
        else:
            when = (
                self.default_retry_delay
                if countdown is None
                else _check_seconds(countdown, "countdown", False)
            )
        retry = Retry(exc=exc, when=when)
        retry.args_override = args  # type: ignore[attr-defined]
        retry.kwargs_override = kwargs  # type: ignore[attr-defined]
        if throw:
            raise retry
        return retry

    def update_state(
        self, task_id: str | None = None, state: str = states.PROGRESS, meta: Any = None
    ) -> None:
        """Report progress of the running task: a custom ``state`` and its ``meta``.

        ``AsyncResult.state`` shows ``state`` and ``.info`` the meta until the
        task finishes.
        """
        from . import queue as task_queue

        if state in states.ALL_STATES and state != states.STARTED:
            raise ValueError(
                f"update_state() takes a custom state such as 'PROGRESS', "
                f"not the built-in {state!r}"
            )
        req = self.request
        tid = task_id or req.id
        if tid is None:
            raise RuntimeError("update_state() needs a task_id outside a running task")
        content_type, text = serialization.encode(meta, settings.RESULT_SERIALIZER)
        if req.is_eager and tid == req.id:
            return
        task_queue.set_progress(
            str(tid), "" if state == states.STARTED else state, content_type, text
        )

    def countdown_for_retry(self, retries: int) -> float:
        """The delay before autoretry number ``retries + 1``."""
        if self.retry_backoff:
            factor = 1.0 if self.retry_backoff is True else float(self.retry_backoff)
            return backoff_countdown(
                retries, factor, self.retry_backoff_max or 600, self.retry_jitter
            )
        return float(self.retry_kwargs.get("countdown", self.default_retry_delay))


def _run_links_eagerly(result: EagerResult, link: Any, link_error: Any) -> None:
    from .canvas import callbacks_to_signatures, run_errback_eagerly

    if result.state == states.SUCCESS and link is not None:
        for sig in callbacks_to_signatures(link):
            sig.apply_async((result.result,))
    elif result.state == states.FAILURE and link_error is not None:
        for sig in callbacks_to_signatures(link_error):
            run_errback_eagerly(sig, result)


def _task_id(task_id: Any) -> uuid.UUID:
    if task_id is None:
        return uuid7()
    if isinstance(task_id, uuid.UUID):
        return task_id
    try:
        return uuid.UUID(str(task_id))
    except ValueError:
        raise ValueError(f"task_id must be a UUID, not {task_id!r}") from None


def _maybe_uuid(value: Any) -> uuid.UUID | None:
    return None if value is None else uuid.UUID(str(value))


_OPTIONS = frozenset(inspect.signature(Task.__init__).parameters) - {"self", "run"}


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...
@overload
def task(**options: Any) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Declare a task: ``@task`` or ``@task(queue="hipri", max_retries=5, ...)``.

    The name defaults to ``module.function``; two different functions with
    one name are an error when the second is imported.
    """
    unknown = set(options) - _OPTIONS
    if unknown:
        raise ImproperlyConfiguredTask(
            f"unknown @task option(s): {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(_OPTIONS))})"
        )

    def decorate(func: Callable[..., Any]) -> Task[Any, Any]:
        if isinstance(func, Task):
            raise ImproperlyConfiguredTask(f"{func.name} is already a task")
        new = Task(func, **options)
        registry.register(new)
        return new

    if fn is not None:
        return decorate(fn)
    return decorate


#: Celery's name for the same decorator (djtasks has no app object to bind to).
shared_task = task
