"""Client for the circuit-breaker Lambda extension (standard library only).

The extension's layer puts this package in /opt/python, which Lambda adds to
sys.path, so a Python function imports it as is. Guard the downstream call,
not the whole handler, so that only the service's failures count:

    from lambda_circuit_breaker import circuit_breaker

    @circuit_breaker("payments", fallback=lambda err, order: {"status": "queued"},
                     ignore=PaymentDeclined)
    def charge(order):
        return payments.charge(order)

The client asks the extension over loopback whether a service may be called,
reports the outcome of each call it makes (success and latency), and takes
part in the fleet's HALF_OPEN probing, with the semantics of the Go client in
extension/client:

- the extension's port comes from CIRCUIT_BREAKER_PORT (default 4243), the
  token from AWS_SESSION_TOKEN, or AWS_CONTAINER_AUTHORIZATION_TOKEN when
  that is unset (as the extension does), the failure policy from
  CIRCUIT_BREAKER_FAIL_MODE ("allow", the default, or "deny"; any other value
  denies); CIRCUIT_BREAKER_DISABLED=true turns the client off (every call
  allowed without asking, nothing reported);
- each request has a timeout of 250 ms, raised to twice
  CIRCUIT_BREAKER_MISS_TIMEOUT plus 50 ms when that is larger; a probe
  outcome's report waits up to 1.5 s;
- one keep-alive connection is kept and reused across invocations; one the
  extension closed is replaced by a new one, never by another idle one;
- when the extension is missing, slow or dead, nothing is raised into the
  handler: the failure policy decides; a refused token or an absent
  extension is logged as a warning, at most once a minute.

The decorator and the context manager work on coroutines too (``async def``,
``async with``): the outcome is reported after the await. The lookup and the
report are loopback requests of a fraction of a millisecond, made in the
calling thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import http.client
import inspect
import json
import logging
import os
import re
import select
import socket
import threading
import time
import urllib.parse
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple, Type, TypeVar, Union

__all__ = [
    "CallTimeoutError",
    "Client",
    "CircuitOpenError",
    "ExtensionError",
    "allowed",
    "circuit_breaker",
    "default_client",
    "report",
    "state",
    "states",
    "token_from_env",
]

log = logging.getLogger("lambda_circuit_breaker")
"""The client's logger: warnings for a misconfiguration, debug lines for each decision."""

F = TypeVar("F", bound=Callable[..., Any])
Circuit = Dict[str, Any]
"""The extension's answer for one circuit: "state", "allowed", "reason", ..."""
ExceptionClasses = Union[Type[BaseException], Tuple[Type[BaseException], ...]]

HEADER_TOKEN = "X-Circuit-Breaker-Token"
DEFAULT_PORT = 4243
DEFAULT_TIMEOUT = 0.25
"""Seconds one request may take (the Go client's DefaultTimeout)."""
PROBE_REPORT_TIMEOUT = 1.5
"""Seconds the report of a probe outcome may take (ProbeReportTimeout)."""
MAX_ANSWER_BYTES = 1 << 20

_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def parse_duration(value: Optional[str]) -> Optional[float]:
    """Parse a Go duration such as "100ms" or "1m30s" into seconds; None if invalid."""
    s = (value or "").strip()
    if s in ("0", "+0", "-0"):
        return 0.0
    sign = 1.0
    if s and s[0] in "+-":
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if not s:
        return None
    total, pos = 0.0, 0
    while pos < len(s):
        m = _PART.match(s, pos)
        if not m or m.group(1) in ("", "."):
            return None
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return sign * total


def default_timeout(environ: Optional[Dict[str, str]] = None) -> float:
    """The Go client's timeout rule: 250 ms, or 2 x the miss timeout + 50 ms when larger."""
    env = os.environ if environ is None else environ
    timeout = DEFAULT_TIMEOUT
    miss = parse_duration(env.get("CIRCUIT_BREAKER_MISS_TIMEOUT", ""))
    if miss is not None and 2 * miss + 0.05 > timeout:
        timeout = 2 * miss + 0.05
    return timeout


def token_from_env(environ: Optional[Dict[str, str]] = None) -> str:
    """The extension's rule for the token: AWS_SESSION_TOKEN when set, otherwise
    AWS_CONTAINER_AUTHORIZATION_TOKEN (SnapStart, Managed Instances)."""
    env = os.environ if environ is None else environ
    return env.get("AWS_SESSION_TOKEN") or env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN") or ""


def _fail_allows(mode: Optional[str]) -> bool:
    """True for "allow" or unset, False for "deny" and for anything invalid."""
    return (mode or "").strip().lower() in ("", "allow")



ENV_DISABLED = "CIRCUIT_BREAKER_DISABLED"
"""The kill switch: "true" makes every client allow every call without asking."""

WARN_INTERVAL = 60.0
"""Least seconds between two warnings of a process about a misconfiguration."""


def _disabled(environ: Optional[Dict[str, str]] = None) -> bool:
    env = os.environ if environ is None else environ
    return env.get(ENV_DISABLED, "").strip().lower() == "true"


_warn_lock = threading.Lock()
_warned_disabled = False
_last_misconfig_warning: Optional[float] = None


def _log_disabled() -> None:
    global _warned_disabled
    with _warn_lock:
        if _warned_disabled:
            return
        _warned_disabled = True
    log.warning("circuit breaker disabled: %s=true; every call is allowed without asking the extension, "
                "and no outcome is reported", ENV_DISABLED)


def _warn_misconfigured(cause: str, fail_allow: bool) -> None:
    """Logs a refused token or an absent extension: the first time in a process,
    then at most once per WARN_INTERVAL."""
    global _last_misconfig_warning
    now = time.monotonic()
    with _warn_lock:
        if _last_misconfig_warning is not None and now - _last_misconfig_warning < WARN_INTERVAL:
            return
        _last_misconfig_warning = now
    policy = "allow" if fail_allow else "deny"
    log.warning("circuit breaker misconfigured: %s; the failure policy (%s) decides every call instead of the circuit",
                cause, policy)


class ExtensionError(Exception):
    """The extension could not be reached in time or refused the request."""

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.status: Optional[int] = status
        """The HTTP status of an error answer, or None when there was none."""


class CircuitOpenError(Exception):
    """Passed to the fallback (or raised without one) when the circuit denies the call.

    ``circuit`` is the extension's answer (a dict with "state", "reason", ...);
    when the extension did not answer and the failure policy denied,
    ``circuit["failMode"]`` is True.
    """

    def __init__(self, circuit: Circuit) -> None:
        super().__init__("circuit breaker: circuit is open")
        self.circuit: Circuit = circuit


class CallTimeoutError(TimeoutError):
    """Passed to the fallback (or raised without one) when a coroutine ran past
    the ``timeout`` given to circuit_breaker(); it counts as a failure."""

    def __init__(self, service_id: str, timeout: float) -> None:
        super().__init__("circuit breaker: call to %s timed out after %.0f ms" % (service_id, timeout * 1000))
        self.service_id = service_id
        self.timeout = timeout


class Client:
    """A client of the extension. Create it once, outside the handler; it is thread-safe.

    Every argument defaults to the environment, like the Go client's New:
    ``base_url`` to http://127.0.0.1:$CIRCUIT_BREAKER_PORT, ``token`` to
    ``token_from_env()``, ``fail_mode`` to CIRCUIT_BREAKER_FAIL_MODE and
    ``timeout`` (seconds, per request to the extension) to ``default_timeout()``,
    ``disabled`` to CIRCUIT_BREAKER_DISABLED=true.
    """

    def __init__(
        self,
        base_url: Optional[str] = None,
        token: Optional[str] = None,
        timeout: Optional[float] = None,
        fail_mode: Optional[str] = None,
        disabled: Optional[bool] = None,
    ) -> None:
        env = os.environ
        if base_url is None:
            port = DEFAULT_PORT
            try:
                p = int(env.get("CIRCUIT_BREAKER_PORT", ""))
                if 0 < p < 65536:
                    port = p
            except ValueError:
                pass
            base_url = "http://127.0.0.1:%d" % port
        u = urllib.parse.urlsplit(base_url)
        if u.scheme != "http" or not u.hostname:
            raise ValueError("base_url must be http://host:port, got %r" % base_url)
        self._host = u.hostname
        self._port = u.port or 80
        self._prefix = u.path.rstrip("/")
        self.token = token_from_env(env) if token is None else token
        self.timeout = default_timeout() if timeout is None else float(timeout)
        self.fail_allow = _fail_allows(env.get("CIRCUIT_BREAKER_FAIL_MODE", "") if fail_mode is None else fail_mode)
        self.disabled = _disabled(env) if disabled is None else bool(disabled)
        self._idle: List[http.client.HTTPConnection] = []  # keep-alive connections not in use
        self._lock = threading.Lock()
        if self.disabled:
            _log_disabled()

    # Lower-level calls -------------------------------------------------

    def state(self, service_id: str) -> Circuit:
        """Ask for one circuit (GET /circuits/{id}); the answer is a dict.

        When the circuit is HALF_OPEN the answer may make the caller one of the
        fleet's probes ("probe": True): make the call, then report its outcome
        with the answer's "probeToken". When the extension cannot answer, the
        failure policy decides: the answer then has "failMode": True, "allowed"
        from the policy and "reason" saying why. Never raises for the extension.
        """
        try:
            return self.state_or_raise(service_id)
        except ExtensionError as e:
            return self._unavailable(service_id, e)

    def state_or_raise(self, service_id: str) -> Circuit:
        """Like state(), but raises ExtensionError instead of applying the failure policy."""
        if self.disabled:
            return _disabled_circuit(service_id)
        return self._request("GET", "/circuits/" + _quote(service_id), None, self.timeout, 200)

    def states(self, *service_ids: str) -> List[Circuit]:
        """Ask for several circuits at once (never hands out a probe); raises ExtensionError."""
        if self.disabled:
            return [_disabled_circuit(i) for i in service_ids]
        ids = ",".join(service_ids)
        out = self._request("GET", "/circuits?ids=" + urllib.parse.quote(ids, safe=""), None, self.timeout, 200)
        return out.get("circuits", [])

    def allowed(self, service_id: str) -> bool:
        """May the function call the service now? Never raises; the failure policy decides when
        the extension cannot answer. Uses the batch lookup, so it never takes one of the
        fleet's HALF_OPEN probe calls: a HALF_OPEN circuit answers False here."""
        try:
            circuits = self.states(service_id)
        except ExtensionError:
            return self.fail_allow
        if len(circuits) != 1:
            return self.fail_allow
        return bool(circuits[0].get("allowed"))

    def report(self, service_id: str, success: bool, latency_ms: float, probe_token: Optional[str] = None) -> Optional[Dict[str, Any]]:
        """Report the outcome of one call: its success, latency in milliseconds and, for a
        probe call, the answer's probeToken. Returns the extension's answer ({"accepted": n},
        with "state" after a probe outcome), or None when it could not be delivered. A probe's
        report waits until the extension applied it to the table (at most 1.5 s)."""
        try:
            return self.report_or_raise(service_id, success, latency_ms, probe_token)
        except ExtensionError:
            return None

    def report_or_raise(self, service_id: str, success: bool, latency_ms: float, probe_token: Optional[str] = None) -> Optional[Dict[str, Any]]:
        """Like report(), but raises ExtensionError when the report fails. Sends
        nothing and returns None while the client is disabled."""
        if self.disabled:
            return None
        outcome = {"success": bool(success), "latencyMs": max(0, min(3_600_000, int(latency_ms)))}
        timeout = self.timeout
        if probe_token:
            outcome["probeToken"] = probe_token
            timeout = max(timeout, PROBE_REPORT_TIMEOUT)
        body = json.dumps(outcome).encode()
        return self._request("POST", "/circuits/" + _quote(service_id) + "/outcomes", body, timeout, 202)

    def health(self) -> bool:
        """True when the extension answers /health."""
        try:
            self._request("GET", "/health", None, self.timeout, 200)
            return True
        except ExtensionError:
            return False

    def close(self) -> None:
        """Close the kept-alive connections."""
        self._drop_idle()

    # Do ----------------------------------------------------------------

    def call(self, service_id: str, fn: Callable[..., Any], fallback: Optional[Callable[..., Any]] = None, *args: Any, **kwargs: Any) -> Any:
        """Ask, then run fn(*args, **kwargs) or fall back; report the outcome (the Go client's Do).

        When the circuit denies the call, fallback(CircuitOpenError, *args, **kwargs) runs;
        when fn raises, fallback(exception, *args, **kwargs) runs. Without a fallback the
        error is raised. After fn, its outcome (success unless it raised, and its latency)
        is reported, with the probe token when the call was the fleet's probe. Reports are
        best effort; when the extension did not answer the lookup nothing is reported.
        For a coroutine function fn, call returns a coroutine. circuit_breaker() takes
        the options (which errors count, a timeout, hooks).
        """
        return _Breaker(self, service_id, fallback, check=False)._run(fn, args, kwargs)

    def circuit_breaker(self, service_id: str, fallback: Optional[Callable[..., Any]] = None, **options: Any) -> "_Breaker":
        """A decorator and context manager for the service; see the module's circuit_breaker."""
        return _Breaker(self, service_id, fallback, **options)

    # Transport ---------------------------------------------------------

    def _lookup(self, service_id: str) -> Tuple[Circuit, bool, bool]:
        """(answer, answered, allowed) for a guarded call."""
        try:
            circuit = self.state_or_raise(service_id)
            return circuit, True, bool(circuit.get("allowed"))
        except ExtensionError as e:
            return self._unavailable(service_id, e, None if self.fail_allow else "OPEN"), False, self.fail_allow

    def _unavailable(self, service_id, err, denied_state=None):
        state = denied_state or ("CLOSED" if self.fail_allow else "OPEN")
        return {
            "id": service_id,
            "state": state,
            "allowed": self.fail_allow if denied_state is None else False,
            "version": 0,
            "updatedAt": None,
            "stale": False,
            "ageMs": -1,
            "failMode": True,
            "reason": "extension unavailable: %s" % err,
        }

    def _conn(self, fresh=False):
        """A kept-alive connection the extension has not closed, else a new one;
        always a new one when fresh."""
        while not fresh:
            with self._lock:
                if not self._idle:
                    break
                conn = self._idle.pop()
            if self._usable(conn):
                return conn, True
            conn.close()
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout), False

    @staticmethod
    def _usable(conn):
        """False when the peer closed an idle connection (it reads as ready:
        end of stream, or bytes nobody asked for)."""
        sock = conn.sock
        if sock is None:
            return False
        try:
            if hasattr(select, "poll"):
                p = select.poll()
                p.register(sock, select.POLLIN)
                return not p.poll(0)
            return not select.select([sock], [], [], 0)[0]
        except (OSError, ValueError):
            return False

    def _drop_idle(self):
        """Closes every idle connection: when one turns out closed by the
        extension, those idle as long are closed too."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _release(self, conn):
        with self._lock:
            if len(self._idle) < 8:
                self._idle.append(conn)
                return
        conn.close()

    def _request(self, method, path, body, timeout, want):
        deadline = time.monotonic() + timeout
        headers = {}
        if self.token:
            headers[HEADER_TOKEN] = self.token
        if body is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (0, 1):
            conn, reused = self._conn(fresh=attempt > 0)
            sent = False
            try:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise socket.timeout("timed out")
                conn.timeout = remaining
                if conn.sock is not None:
                    conn.sock.settimeout(remaining)
                conn.request(method, self._prefix + path, body=body, headers=headers)
                sent = True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise socket.timeout("timed out")
                conn.sock.settimeout(remaining)
                resp = conn.getresponse()
                data = resp.read(MAX_ANSWER_BYTES + 1)
                status = resp.status
                if resp.will_close or len(data) > MAX_ANSWER_BYTES:
                    conn.close()
                else:
                    self._release(conn)
            except (OSError, http.client.HTTPException, ValueError) as e:
                # ValueError: a token with characters a header cannot carry, say.
                conn.close()
                # A kept-alive connection the extension closed while the sandbox was
                # frozen fails on first use: retry once on a new connection (the
                # other idle ones are as old: they are closed), unless the request
                # may have reached the extension (POST), where a retry could count
                # the outcome twice.
                stale = reused and isinstance(e, (ConnectionError, http.client.RemoteDisconnected, BrokenPipeError))
                if stale:
                    self._drop_idle()
                if attempt == 0 and stale and (not sent or method == "GET") and time.monotonic() < deadline:
                    continue
                if isinstance(e, ConnectionRefusedError):
                    _warn_misconfigured("extension absent: nothing listens on %s:%d; is the layer attached, and "
                                        "CIRCUIT_BREAKER_PORT the same for the function and the extension?"
                                        % (self._host, self._port), self.fail_allow)
                if isinstance(e, socket.timeout) or "timed out" in str(e):
                    raise ExtensionError("circuit breaker extension: no answer within %.0f ms" % (timeout * 1000)) from e
                raise ExtensionError("circuit breaker extension: %s" % (e or type(e).__name__)) from e
            if status != want:
                message = ""
                try:
                    message = json.loads(data).get("message", "")
                except (ValueError, AttributeError):
                    pass
                if status == 401:
                    _warn_misconfigured("wrong token: the extension refused the X-Circuit-Breaker-Token header (401); "
                                        "the client sends AWS_SESSION_TOKEN, else AWS_CONTAINER_AUTHORIZATION_TOKEN",
                                        self.fail_allow)
                raise ExtensionError("circuit breaker extension: %d %s" % (status, message), status)
            try:
                return json.loads(data)
            except ValueError as e:
                raise ExtensionError("circuit breaker extension: decode answer: %s" % e) from e
        raise ExtensionError("circuit breaker extension: unreachable")


def _disabled_circuit(service_id: str) -> Circuit:
    return {
        "id": service_id,
        "state": "CLOSED",
        "allowed": True,
        "version": 0,
        "updatedAt": None,
        "stale": False,
        "ageMs": -1,
        "reason": "circuit breaker disabled (%s=true)" % ENV_DISABLED,
    }


def _classes(value: Any, name: str) -> Optional[Tuple[Type[BaseException], ...]]:
    if value is None:
        return None
    if isinstance(value, type) and issubclass(value, BaseException):
        return (value,)
    if isinstance(value, tuple) and value and all(isinstance(c, type) and issubclass(c, BaseException) for c in value):
        return value
    raise TypeError("%s must be an exception class or a tuple of them, got %r" % (name, value))


def _check_callable(value: Any, name: str) -> None:
    if value is not None and not callable(value):
        raise TypeError("%s must be callable, got %r" % (name, value))


def _check_fallback(fallback: Callable[..., Any], fn: Callable[..., Any]) -> None:
    """Refuses, when fn is decorated, a fallback that could not take (err, *fn's arguments)."""
    if inspect.iscoroutinefunction(fallback) and not inspect.iscoroutinefunction(fn):
        raise TypeError("fallback %s is a coroutine function but %s is not: its result would never be awaited"
                        % (getattr(fallback, "__qualname__", fallback), getattr(fn, "__qualname__", fn)))
    try:
        fn_sig = inspect.signature(fn)
        fb_sig = inspect.signature(fallback)
    except (TypeError, ValueError):  # a builtin without a signature: nothing to check
        return
    names, kwargs = [], {}
    for p in fn_sig.parameters.values():
        if p.default is not p.empty:
            continue
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            names.append(p.name)
        elif p.kind == p.KEYWORD_ONLY:
            kwargs[p.name] = None
    try:
        fb_sig.bind(None, *[None] * len(names), **kwargs)
    except TypeError as e:
        args = ", ".join(["err"] + names + ["%s=" % k for k in kwargs])
        raise TypeError("fallback %s%s cannot take the arguments it gets when %s is refused or fails: (%s): %s"
                        % (getattr(fallback, "__qualname__", "fallback"), fb_sig,
                           getattr(fn, "__qualname__", "the function"), args, e)) from None


_background = set()  # timed-out tasks, kept until they end


def _forget(task: "asyncio.Future[Any]") -> None:
    _background.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: no "never retrieved" warning


class _Breaker:
    """Decorator and context manager returned by circuit_breaker()."""

    def __init__(
        self,
        client: Union[Client, Callable[[], Client]],
        service_id: str,
        fallback: Optional[Callable[..., Any]] = None,
        failure_on: Union[None, ExceptionClasses, Callable[[BaseException], bool]] = None,
        ignore: Optional[ExceptionClasses] = None,
        timeout: Optional[float] = None,
        on_state_change: Optional[Callable[[str, str, str], Any]] = None,
        on_fallback: Optional[Callable[[str, BaseException], Any]] = None,
        check: bool = True,
    ) -> None:
        self._client = client  # a Client, or a function returning one
        self.service_id = service_id
        _check_callable(fallback, "fallback")
        self.fallback = fallback
        if failure_on is not None and not isinstance(failure_on, (type, tuple)):
            _check_callable(failure_on, "failure_on")
            self._failure_classes, self._is_failure = None, failure_on
        else:
            self._failure_classes, self._is_failure = _classes(failure_on, "failure_on"), None
        self._ignore = _classes(ignore, "ignore")
        if timeout is not None and not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds, got %r" % (timeout,))
        self.timeout = timeout
        _check_callable(on_state_change, "on_state_change")
        _check_callable(on_fallback, "on_fallback")
        self.on_state_change = on_state_change
        self.on_fallback = on_fallback
        self._check = check
        self._last_state = "CLOSED"  # what a circuit never seen reads as
        self._state_lock = threading.Lock()

    def _resolve(self) -> Client:
        return self._client if isinstance(self._client, Client) else self._client()

    # Which errors count ------------------------------------------------

    def counts(self, exc: BaseException) -> bool:
        """Does the exception count as a failure of the service? A timeout always does."""
        if isinstance(exc, CallTimeoutError):
            return True
        if self._ignore is not None and isinstance(exc, self._ignore):
            return False
        if self._failure_classes is not None:
            return isinstance(exc, self._failure_classes)
        if self._is_failure is not None:
            try:
                return bool(self._is_failure(exc))
            except Exception:  # a broken predicate: count it, as without one
                log.exception("circuit %s: failure_on raised; the error counts", self.service_id)
        return True

    # Hooks -------------------------------------------------------------

    def _seen(self, circuit: Circuit, answered: bool) -> None:
        log.debug("circuit %s: state=%s allowed=%s failMode=%s reason=%s", self.service_id, circuit.get("state"),
                  circuit.get("allowed"), bool(circuit.get("failMode")), circuit.get("reason", ""))
        if not answered or circuit.get("failMode"):
            return
        new = circuit.get("state")
        with self._state_lock:
            old, self._last_state = self._last_state, new
        if old != new and self.on_state_change is not None:
            try:
                self.on_state_change(self.service_id, old, new)
            except Exception:
                log.exception("circuit %s: on_state_change raised", self.service_id)

    def _took_fallback(self, err: BaseException) -> None:
        log.debug("circuit %s: fallback for %s: %s", self.service_id, type(err).__name__, err)
        if self.on_fallback is not None:
            try:
                self.on_fallback(self.service_id, err)
            except Exception:
                log.exception("circuit %s: on_fallback raised", self.service_id)

    # Decorator ---------------------------------------------------------

    def __call__(self, fn: F) -> F:
        if not callable(fn):
            raise TypeError("circuit_breaker decorates a function, got %r" % (fn,))
        if self.fallback is not None and self._check:
            _check_fallback(self.fallback, fn)
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await self._run_async(fn, args, kwargs)

            return async_wrapper  # type: ignore[return-value]
        if self.timeout is not None:
            raise TypeError("timeout= bounds coroutines only; %s is not one: set the timeout on the downstream call "
                            "(requests.get(url, timeout=3), say), whose timeout error counts as a failure"
                            % getattr(fn, "__qualname__", fn))

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return self._run_sync(fn, args, kwargs)

        return wrapper  # type: ignore[return-value]

    def _run(self, fn: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
        if inspect.iscoroutinefunction(fn):
            return self._run_async(fn, args, kwargs)
        return self._run_sync(fn, args, kwargs)

    def _refused(self, circuit: Circuit, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
        err = CircuitOpenError(circuit)
        if self.fallback is None:
            raise err
        self._took_fallback(err)
        return self.fallback(err, *args, **kwargs)

    def _run_sync(self, fn: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
        client = self._resolve()
        if client.disabled:
            return fn(*args, **kwargs)
        circuit, answered, allowed = client._lookup(self.service_id)
        self._seen(circuit, answered)
        if not allowed:
            return self._refused(circuit, args, kwargs)
        start = time.perf_counter()
        try:
            result = fn(*args, **kwargs)
        except Exception as e:
            if not self.counts(e):
                raise
            if answered:
                client.report(self.service_id, False, _ms_since(start), circuit.get("probeToken"))
            if self.fallback is None:
                raise
            self._took_fallback(e)
            return self.fallback(e, *args, **kwargs)
        except BaseException:
            # KeyboardInterrupt, SystemExit: the call did not finish; count it failed.
            if answered:
                client.report(self.service_id, False, _ms_since(start), circuit.get("probeToken"))
            raise
        if answered:
            client.report(self.service_id, True, _ms_since(start), circuit.get("probeToken"))
        return result

    async def _fallback_async(self, err: BaseException, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
        self._took_fallback(err)
        out = self.fallback(err, *args, **kwargs)  # type: ignore[misc]
        if inspect.isawaitable(out):
            out = await out
        return out

    async def _run_async(self, fn: Callable[..., Awaitable[Any]], args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
        client = self._resolve()
        if client.disabled:
            return await fn(*args, **kwargs)
        circuit, answered, allowed = client._lookup(self.service_id)
        self._seen(circuit, answered)
        if not allowed:
            err = CircuitOpenError(circuit)
            if self.fallback is None:
                raise err
            return await self._fallback_async(err, args, kwargs)
        probe_token = circuit.get("probeToken")
        start = time.perf_counter()
        try:
            if self.timeout is None:
                result = await fn(*args, **kwargs)
            else:
                task = asyncio.ensure_future(fn(*args, **kwargs))
                try:
                    done, _ = await asyncio.wait({task}, timeout=self.timeout)
                except asyncio.CancelledError:
                    task.cancel()
                    raise
                if not done:
                    task.cancel()
                    _background.add(task)
                    task.add_done_callback(_forget)
                    raise CallTimeoutError(self.service_id, self.timeout)
                result = task.result()
        except asyncio.CancelledError:
            # The caller gave up (its task was cancelled): not the service's failure.
            raise
        except Exception as e:
            if not self.counts(e):
                raise
            latency = self.timeout * 1000 if isinstance(e, CallTimeoutError) else _ms_since(start)
            if answered:
                client.report(self.service_id, False, latency, probe_token)
            if self.fallback is None:
                raise
            return await self._fallback_async(e, args, kwargs)
        except BaseException:
            if answered:
                client.report(self.service_id, False, _ms_since(start), probe_token)
            raise
        if answered:
            client.report(self.service_id, True, _ms_since(start), probe_token)
        return result

    # Context manager ---------------------------------------------------

    def _push(self) -> "_Guard":
        if self.timeout is not None:
            raise TypeError("timeout= bounds decorated coroutines only; in a with block, bound the call itself "
                            "(asyncio.timeout(), or the downstream library's timeout)")
        guard = _Guard(self._resolve(), self)
        _guards.set(_guards.get() + ((self, guard),))
        return guard

    def _pop(self) -> "_Guard":
        stack = _guards.get()
        for i in range(len(stack) - 1, -1, -1):
            if stack[i][0] is self:
                _guards.set(stack[:i] + stack[i + 1:])
                return stack[i][1]
        raise RuntimeError("circuit_breaker: exit without a matching enter")

    def __enter__(self) -> "_Guard":
        return self._push()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        return self._pop().__exit__(exc_type, exc, tb)

    async def __aenter__(self) -> "_Guard":
        return self._push()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        return self._pop().__exit__(exc_type, exc, tb)


# The guards of the with blocks being run, per thread and per asyncio task
# (each has its own context), innermost last.
_guards: contextvars.ContextVar[Tuple[Tuple[_Breaker, "_Guard"], ...]] = contextvars.ContextVar(
    "lambda_circuit_breaker_guards", default=())


class _Guard:
    """What ``with circuit_breaker(id) as guard`` (or ``async with``) gives: check
    guard.allowed, then make the call.

    On leaving the block, when the call was allowed, its outcome is reported: a failure
    when the block raised an error that counts (see circuit_breaker's failure_on and
    ignore) or guard.failed() was called, a success otherwise, with the block's latency
    and the probe token when the call was the fleet's probe. An error that does not
    count, and a cancelled task, report nothing.
    """

    def __init__(self, client: Client, breaker: _Breaker) -> None:
        self._client = client
        self._breaker = breaker
        self.service_id = breaker.service_id
        self.result: Optional[Dict[str, Any]] = None
        """The extension's answer to the report, set when the block ends."""
        self._failed = False
        if client.disabled:
            self.circuit, self._answered, self.allowed = _disabled_circuit(self.service_id), False, True
        else:
            self.circuit, self._answered, self.allowed = client._lookup(self.service_id)
            breaker._seen(self.circuit, self._answered)
        self._start = time.perf_counter()

    @property
    def error(self) -> Optional[CircuitOpenError]:
        """A CircuitOpenError for a denied call, else None."""
        return None if self.allowed else CircuitOpenError(self.circuit)

    def failed(self) -> None:
        """Count the call as failed even though the block does not raise (a 5xx answer, say)."""
        self._failed = True

    def __enter__(self) -> "_Guard":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if not (self.allowed and self._answered):
            return False
        if exc is not None and (isinstance(exc, asyncio.CancelledError) or not self._breaker.counts(exc)):
            return False
        ok = exc_type is None and not self._failed
        self.result = self._client.report(self.service_id, ok, _ms_since(self._start), self.circuit.get("probeToken"))
        return False


def _quote(service_id: str) -> str:
    return urllib.parse.quote(str(service_id), safe="")


def _ms_since(start: float) -> int:
    return int((time.perf_counter() - start) * 1000)


_default: Optional[Client] = None
_default_lock = threading.Lock()


def default_client() -> Client:
    """The module's shared Client, configured from the environment on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Client()
    return _default


def allowed(service_id: str) -> bool:
    """default_client().allowed(service_id)."""
    return default_client().allowed(service_id)


def state(service_id: str) -> Circuit:
    """default_client().state(service_id)."""
    return default_client().state(service_id)


def states(*service_ids: str) -> List[Circuit]:
    """default_client().states(*service_ids)."""
    return default_client().states(*service_ids)


def report(service_id: str, success: bool, latency_ms: float, probe_token: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """default_client().report(...)."""
    return default_client().report(service_id, success, latency_ms, probe_token)


def circuit_breaker(
    service_id: str,
    fallback: Optional[Callable[..., Any]] = None,
    client: Optional[Client] = None,
    *,
    failure_on: Union[None, ExceptionClasses, Callable[[BaseException], bool]] = None,
    ignore: Optional[ExceptionClasses] = None,
    timeout: Optional[float] = None,
    on_state_change: Optional[Callable[[str, str, str], Any]] = None,
    on_fallback: Optional[Callable[[str, BaseException], Any]] = None,
) -> _Breaker:
    """Guard calls to a service, as a decorator or a context manager, sync or async.

    Guard the downstream call, not the whole handler: an error raised before
    the service is called (bad input, say) is not the service's failure.

    As a decorator, each call of the function asks the extension first (taking
    part in HALF_OPEN probing), runs the function or the fallback, measures the
    call and reports its outcome; the fallback gets the error (CircuitOpenError,
    CallTimeoutError or the function's exception) followed by the function's
    arguments, and is checked against them when the function is decorated:

        @circuit_breaker("payments", fallback=lambda err, order: {"status": "queued"})
        def charge(order): ...

    An ``async def`` function is awaited before its outcome is reported, and an
    async fallback is awaited.

    As a context manager (``with`` or ``async with``) it gives a guard; the
    block checks guard.allowed:

        with circuit_breaker("payments") as guard:
            if guard.allowed:
                resp = call_payments()
                if resp.status >= 500:
                    guard.failed()

    Which errors count: ``failure_on`` (exception classes, or a predicate taking
    the exception; default: every Exception) and ``ignore`` (classes that never
    count). An error that does not count propagates unchanged: no fallback, no
    report.

    ``timeout`` (seconds) bounds a decorated coroutine: past it the call is
    cancelled, counts as a failure with the timeout as its latency, and the
    fallback gets a CallTimeoutError. Sync code cannot be interrupted safely:
    set the timeout on the downstream call instead (its timeout error counts).

    Hooks (their exceptions are logged, never raised): ``on_state_change(id,
    old, new)`` when the state this breaker sees differs from the one it saw
    last (a circuit never seen reads as CLOSED; answers of the failure policy
    are not states); ``on_fallback(id, err)`` before the fallback runs. Each
    decision is logged at debug level on the "lambda_circuit_breaker" logger.

    ``client`` defaults to default_client(), created on first use.
    """
    return _Breaker(
        client if client is not None else default_client,
        service_id,
        fallback,
        failure_on=failure_on,
        ignore=ignore,
        timeout=timeout,
        on_state_change=on_state_change,
        on_fallback=on_fallback,
    )
