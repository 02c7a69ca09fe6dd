"""Client for the circuit-breaker Lambda extension (standard library only).

The extension's layer puts this module in /opt/python, which Lambda adds to
sys.path, so a Python function imports it as is:

    from lambda_circuit_breaker import circuit_breaker

    @circuit_breaker("payments", fallback=lambda err, event, context: {"statusCode": 503})
    def handler(event, context):
        return call_payments(event)

The client asks the extension over loopback whether a service may be called,
reports the outcome of each call it makes (success and latency), and takes
part in the fleet's HALF_OPEN probing, with the semantics of the Go client in
extension/client:

- the extension's port comes from CIRCUIT_BREAKER_PORT (default 4243), the
  token from AWS_SESSION_TOKEN, or AWS_CONTAINER_AUTHORIZATION_TOKEN when
  that is unset (as the extension does), the failure policy from
  CIRCUIT_BREAKER_FAIL_MODE ("allow", the default, or "deny"; any other value
  denies);
- each request has a timeout of 250 ms, raised to twice
  CIRCUIT_BREAKER_MISS_TIMEOUT plus 50 ms when that is larger; a probe
  outcome's report waits up to 1.5 s;
- one keep-alive connection is kept and reused across invocations; one the
  extension closed is replaced by a new one, never by another idle one;
- when the extension is missing, slow or dead, nothing is raised into the
  handler: the failure policy decides.
"""

import functools
import http.client
import json
import os
import re
import select
import socket
import threading
import time
import urllib.parse

__all__ = [
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

HEADER_TOKEN = "X-Circuit-Breaker-Token"
DEFAULT_PORT = 4243
DEFAULT_TIMEOUT = 0.25
"""Seconds one request may take (the Go client's DefaultTimeout)."""
PROBE_REPORT_TIMEOUT = 1.5
"""Seconds the report of a probe outcome may take (ProbeReportTimeout)."""
MAX_ANSWER_BYTES = 1 << 20

_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def parse_duration(value):
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


def default_timeout(environ=None):
    """The Go client's timeout rule: 250 ms, or 2 x the miss timeout + 50 ms when larger."""
    env = os.environ if environ is None else environ
    timeout = DEFAULT_TIMEOUT
    miss = parse_duration(env.get("CIRCUIT_BREAKER_MISS_TIMEOUT", ""))
    if miss is not None and 2 * miss + 0.05 > timeout:
        timeout = 2 * miss + 0.05
    return timeout


def token_from_env(environ=None):
    """The extension's rule for the token: AWS_SESSION_TOKEN when set, otherwise
    AWS_CONTAINER_AUTHORIZATION_TOKEN (SnapStart, Managed Instances)."""
    env = os.environ if environ is None else environ
    return env.get("AWS_SESSION_TOKEN") or env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN") or ""


def _fail_allows(mode):
    """True for "allow" or unset, False for "deny" and for anything invalid."""
    return (mode or "").strip().lower() in ("", "allow")


class ExtensionError(Exception):
    """The extension could not be reached in time or refused the request."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status
        """The HTTP status of an error answer, or None when there was none."""


class CircuitOpenError(Exception):
    """Passed to the fallback (or raised without one) when the circuit denies the call.

    ``circuit`` is the extension's answer (a dict with "state", "reason", ...);
    when the extension did not answer and the failure policy denied,
    ``circuit["failMode"]`` is True.
    """

    def __init__(self, circuit):
        super().__init__("circuit breaker: circuit is open")
        self.circuit = circuit


class Client:
    """A client of the extension. Create it once, outside the handler; it is thread-safe.

    Every argument defaults to the environment, like the Go client's New:
    ``base_url`` to http://127.0.0.1:$CIRCUIT_BREAKER_PORT, ``token`` to
    ``token_from_env()``, ``fail_mode`` to CIRCUIT_BREAKER_FAIL_MODE and
    ``timeout`` (seconds) to ``default_timeout()``.
    """

    def __init__(self, base_url=None, token=None, timeout=None, fail_mode=None):
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
        self._idle = []  # keep-alive connections not in use
        self._lock = threading.Lock()

    # Lower-level calls -------------------------------------------------

    def state(self, service_id):
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

    def state_or_raise(self, service_id):
        """Like state(), but raises ExtensionError instead of applying the failure policy."""
        return self._request("GET", "/circuits/" + _quote(service_id), None, self.timeout, 200)

    def states(self, *service_ids):
        """Ask for several circuits at once (never hands out a probe); raises ExtensionError."""
        ids = ",".join(service_ids)
        out = self._request("GET", "/circuits?ids=" + urllib.parse.quote(ids, safe=""), None, self.timeout, 200)
        return out.get("circuits", [])

    def allowed(self, service_id):
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

    def report(self, service_id, success, latency_ms, probe_token=None):
        """Report the outcome of one call: its success, latency in milliseconds and, for a
        probe call, the answer's probeToken. Returns the extension's answer ({"accepted": n},
        with "state" after a probe outcome), or None when it could not be delivered. A probe's
        report waits until the extension applied it to the table (at most 1.5 s)."""
        try:
            return self.report_or_raise(service_id, success, latency_ms, probe_token)
        except ExtensionError:
            return None

    def report_or_raise(self, service_id, success, latency_ms, probe_token=None):
        """Like report(), but raises ExtensionError when the report fails."""
        outcome = {"success": bool(success), "latencyMs": max(0, min(3_600_000, int(latency_ms)))}
        timeout = self.timeout
        if probe_token:
            outcome["probeToken"] = probe_token
            timeout = max(timeout, PROBE_REPORT_TIMEOUT)
        body = json.dumps(outcome).encode()
        return self._request("POST", "/circuits/" + _quote(service_id) + "/outcomes", body, timeout, 202)

    def health(self):
        """True when the extension answers /health."""
        try:
            self._request("GET", "/health", None, self.timeout, 200)
            return True
        except ExtensionError:
            return False

    def close(self):
        """Close the kept-alive connections."""
        self._drop_idle()

    # Do ----------------------------------------------------------------

    def call(self, service_id, fn, fallback=None, *args, **kwargs):
        """Ask, then run fn(*args, **kwargs) or fall back; report the outcome (the Go client's Do).

        When the circuit denies the call, fallback(CircuitOpenError, *args, **kwargs) runs;
        when fn raises, fallback(exception, *args, **kwargs) runs. Without a fallback the
        error is raised. After fn, its outcome (success unless it raised, and its latency)
        is reported, with the probe token when the call was the fleet's probe. Reports are
        best effort; when the extension did not answer the lookup nothing is reported.
        """
        try:
            circuit, answered = self.state_or_raise(service_id), True
            allowed = bool(circuit.get("allowed"))
        except ExtensionError as e:
            circuit, answered, allowed = self._unavailable(service_id, e, "OPEN"), False, self.fail_allow
        if not allowed:
            err = CircuitOpenError(circuit)
            if fallback is None:
                raise err
            return fallback(err, *args, **kwargs)
        start = time.perf_counter()
        try:
            result = fn(*args, **kwargs)
        except Exception as e:
            if answered:
                self.report(service_id, False, _ms_since(start), circuit.get("probeToken"))
            if fallback is None:
                raise
            return fallback(e, *args, **kwargs)
        except BaseException:
            # KeyboardInterrupt, SystemExit: the call did not finish; count it failed.
            if answered:
                self.report(service_id, False, _ms_since(start), circuit.get("probeToken"))
            raise
        if answered:
            self.report(service_id, True, _ms_since(start), circuit.get("probeToken"))
        return result

    def circuit_breaker(self, service_id, fallback=None):
        """A decorator and context manager for the service; see the module's circuit_breaker."""
        return _Breaker(self, service_id, fallback)

    # Transport ---------------------------------------------------------

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
                if isinstance(e, socket.timeout) or "timed out" in str(e):
                    raise ExtensionError("circuit breaker extension: no answer within %.0f ms" % (timeout * 1000)) from e
                raise ExtensionError("circuit breaker extension: %s" % (e or type(e).__name__)) from e
            if status != want:
                message = ""
                try:
                    message = json.loads(data).get("message", "")
                except (ValueError, AttributeError):
                    pass
                raise ExtensionError("circuit breaker extension: %d %s" % (status, message), status)
            try:
                return json.loads(data)
            except ValueError as e:
                raise ExtensionError("circuit breaker extension: decode answer: %s" % e) from e
        raise ExtensionError("circuit breaker extension: unreachable")


class _Breaker:
    """Decorator and context manager returned by circuit_breaker()."""

    def __init__(self, client, service_id, fallback):
        self._client = client  # a Client, or a function returning one
        self.service_id = service_id
        self.fallback = fallback
        self._guards = threading.local()

    def _resolve(self):
        return self._client if isinstance(self._client, Client) else self._client()

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            return self._resolve().call(self.service_id, fn, self.fallback, *args, **kwargs)

        return wrapper

    def __enter__(self):
        guard = _Guard(self._resolve(), self.service_id)
        stack = getattr(self._guards, "stack", None)
        if stack is None:
            stack = self._guards.stack = []
        stack.append(guard)
        return guard

    def __exit__(self, exc_type, exc, tb):
        return self._guards.stack.pop().__exit__(exc_type, exc, tb)


class _Guard:
    """What ``with circuit_breaker(id) as guard`` gives: check guard.allowed, then make the call.

    On leaving the block, when the call was allowed, its outcome is reported: a failure
    when the block raised or guard.failed() was called, a success otherwise, with the
    block's latency and the probe token when the call was the fleet's probe.
    """

    def __init__(self, client, service_id):
        self._client = client
        self.service_id = service_id
        try:
            self.circuit, self._answered = client.state_or_raise(service_id), True
            self.allowed = bool(self.circuit.get("allowed"))
        except ExtensionError as e:
            self.circuit, self._answered = client._unavailable(service_id, e), False
            self.allowed = client.fail_allow
        self._failed = False
        self._start = time.perf_counter()
        self.result = None
        """The extension's answer to the report, set when the block ends."""

    @property
    def error(self):
        """A CircuitOpenError for a denied call, else None."""
        return None if self.allowed else CircuitOpenError(self.circuit)

    def failed(self):
        """Count the call as failed even though the block does not raise (a 5xx answer, say)."""
        self._failed = True

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.allowed and self._answered:
            ok = exc_type is None and not self._failed
            self.result = self._client.report(self.service_id, ok, _ms_since(self._start), self.circuit.get("probeToken"))
        return False


def _quote(service_id):
    return urllib.parse.quote(str(service_id), safe="")


def _ms_since(start):
    return int((time.perf_counter() - start) * 1000)


_default = None
_default_lock = threading.Lock()


def default_client():
    """The module's shared Client, configured from the environment on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Client()
    return _default


def allowed(service_id):
    """default_client().allowed(service_id)."""
    return default_client().allowed(service_id)


def state(service_id):
    """default_client().state(service_id)."""
    return default_client().state(service_id)


def states(*service_ids):
    """default_client().states(*service_ids)."""
    return default_client().states(*service_ids)


def report(service_id, success, latency_ms, probe_token=None):
    """default_client().report(...)."""
    return default_client().report(service_id, success, latency_ms, probe_token)


def circuit_breaker(service_id, fallback=None, client=None):
    """Guard calls to a service, as a decorator or a context manager.

    As a decorator, each call of the function asks the extension first (taking
    part in HALF_OPEN probing), runs the function or the fallback, measures the
    call and reports its outcome; the fallback gets the error (CircuitOpenError
    or the function's exception) followed by the function's arguments:

        @circuit_breaker("payments", fallback=lambda err, event, context: {"statusCode": 503})
        def handler(event, context): ...

    As a context manager it gives a guard; the block checks guard.allowed:

        with circuit_breaker("payments") as guard:
            if guard.allowed:
                resp = call_payments()
                if resp.status >= 500:
                    guard.failed()

    ``client`` defaults to default_client(), created on first use.
    """
    return _Breaker(client if client is not None else default_client, service_id, fallback)
