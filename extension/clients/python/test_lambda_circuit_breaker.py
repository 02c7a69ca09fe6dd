"""Tests of lambda_circuit_breaker against the real extension.

Run through the Go test that starts the extension, dynalite and the fake
Extensions API (go test -run TestPythonClientSuite ./extension/clients/); it
sets CIRCUIT_BREAKER_PORT, AWS_SESSION_TOKEN, CIRCUIT_BREAKER_MISS_TIMEOUT,
PYTHONPATH (the layer's python/ directory) and CB_TEST_CONTROL_URL, a control
API that writes circuits into the table and reads what the extension wrote.
"""

import asyncio
import http.server
import json
import logging
import os
import socket
import threading
import time
import typing
import unittest
import urllib.request
import uuid

import lambda_circuit_breaker as cb

CONTROL = os.environ.get("CB_TEST_CONTROL_URL", "")
PORT = int(os.environ.get("CIRCUIT_BREAKER_PORT", "0"))
TOKEN = os.environ.get("AWS_SESSION_TOKEN", "")
PROXY_PORT = int(os.environ.get("CB_TEST_PROXY_PORT", "0"))


def control(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(CONTROL + path, data=data, method=method)
    with urllib.request.urlopen(req, timeout=30) as resp:
        raw = resp.read()
        return json.loads(raw) if raw else None


def new_id(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:12])


def client(**kw):
    kw.setdefault("base_url", "http://127.0.0.1:%d" % PORT)
    kw.setdefault("token", TOKEN)
    return cb.Client(**kw)


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class HangingServer:
    """Accepts connections and never answers: an extension that hangs."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._stop:
            try:
                c, _ = self.sock.accept()
                self.conns.append(c)
            except OSError:
                return

    def close(self):
        self._stop = True
        self.sock.close()
        for c in self.conns:
            c.close()


class Harness(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not CONTROL or not PORT:
            raise RuntimeError("run through go test ./extension/clients/ (CB_TEST_CONTROL_URL and CIRCUIT_BREAKER_PORT unset)")


class TestEnvironment(Harness):
    def test_defaults_come_from_the_environment(self):
        c = cb.Client()
        self.assertEqual((c._host, c._port), ("127.0.0.1", PORT))
        self.assertEqual(c.token, TOKEN)
        self.assertTrue(c.fail_allow)
        # CIRCUIT_BREAKER_MISS_TIMEOUT=1s: 2 x 1 s + 50 ms, as the Go client.
        self.assertAlmostEqual(c.timeout, 2.05)
        self.assertTrue(c.health())

    def test_timeout_rule_matches_the_go_client(self):
        cases = {"": 0.25, "100ms": 0.25, "500ms": 1.05, "not-a-duration": 0.25, "1m": 120.05}
        for miss, want in cases.items():
            with self.subTest(miss=miss):
                self.assertAlmostEqual(cb.default_timeout({"CIRCUIT_BREAKER_MISS_TIMEOUT": miss}), want)

    def test_token_rule_matches_the_extension(self):
        cases = [
            ({"AWS_SESSION_TOKEN": "s", "AWS_CONTAINER_AUTHORIZATION_TOKEN": "c"}, "s"),
            ({"AWS_CONTAINER_AUTHORIZATION_TOKEN": "c"}, "c"),
            ({"AWS_SESSION_TOKEN": "", "AWS_CONTAINER_AUTHORIZATION_TOKEN": "c"}, "c"),
            ({}, ""),
        ]
        for env, want in cases:
            with self.subTest(env=env):
                self.assertEqual(cb.token_from_env(env), want)

    def test_snapstart_environment_sends_the_container_token(self):
        # A SnapStart restore has no AWS_SESSION_TOKEN; the extension then takes
        # AWS_CONTAINER_AUTHORIZATION_TOKEN, and so does the client, unasked.
        saved = dict(os.environ)
        try:
            del os.environ["AWS_SESSION_TOKEN"]
            os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = TOKEN
            c = cb.Client()
            self.assertEqual(c.token, TOKEN)
            st = c.state(new_id("snapstart"))
            self.assertNotIn("failMode", st, st.get("reason"))
            c.close()
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def test_fail_mode_values(self):
        for mode, allows in {"": True, "allow": True, "ALLOW": True, "deny": False, "sometimes": False}.items():
            with self.subTest(mode=mode):
                self.assertEqual(cb.Client(fail_mode=mode).fail_allow, allows)


class TestAgainstTheExtension(Harness):
    def test_allowed_for_a_closed_circuit(self):
        sid = new_id("closed")
        control("PUT", "/circuits/" + sid, {"state": "CLOSED", "version": 2})
        self.assertTrue(cb.allowed(sid))
        st = cb.state(sid)
        self.assertEqual((st["state"], st["allowed"], st["version"]), ("CLOSED", True, 2))
        self.assertNotIn("failMode", st)

    def test_refused_with_fallback(self):
        sid = new_id("open")
        control("PUT", "/circuits/" + sid, {"state": "OPEN", "version": 5, "openCount": 1, "retryInMs": 600000})
        self.assertFalse(cb.allowed(sid))
        calls = []

        @cb.circuit_breaker(sid, fallback=lambda err, event, context: ("fallback", type(err).__name__, err.circuit["state"], event))
        def handler(event, context):
            calls.append(event)
            return "called"

        self.assertEqual(handler({"n": 1}, None), ("fallback", "CircuitOpenError", "OPEN", {"n": 1}))
        self.assertEqual(calls, [])
        with self.assertRaises(cb.CircuitOpenError) as ctx:
            client().call(sid, lambda: "called")
        self.assertEqual(ctx.exception.circuit["version"], 5)

    def test_success_and_failure_reported_reach_the_table(self):
        sid = new_id("outcomes")
        control("PUT", "/circuits/" + sid, {"state": "CLOSED", "version": 1})

        @cb.circuit_breaker(sid, fallback=lambda err, x: "fallback: %s" % err)
        def work(x):
            if x == "bad":
                raise ValueError("downstream said 503")
            return "ok " + x

        self.assertEqual(work("good"), "ok good")
        self.assertEqual(work("bad"), "fallback: downstream said 503")
        with cb.circuit_breaker(sid) as guard:
            self.assertTrue(guard.allowed)
            guard.failed()  # a 5xx answer that did not raise
        self.assertEqual(guard.result, {"accepted": 1})
        self.assertEqual(cb.report(sid, False, 42), {"accepted": 1})
        counts = control("GET", "/buckets/%s?failures=3" % sid)
        # Every failure reaches the table; successes may be left out while healthy.
        self.assertEqual(counts["failures"], 3)
        self.assertIn(counts["calls"], (3, 4))

    def test_probe_taken_and_reported_closes_a_half_open_circuit(self):
        sid = new_id("probe")
        # One success already counted; the default successThreshold is 2.
        control("PUT", "/circuits/" + sid, {"state": "HALF_OPEN", "version": 3, "successes": 1})
        seen = []

        @cb.circuit_breaker(sid)
        def trial():
            seen.append(True)
            return "trial ok"

        self.assertEqual(trial(), "trial ok")
        self.assertEqual(seen, [True])
        got = control("GET", "/circuits/" + sid)
        self.assertEqual((got["state"], got["version"]), ("CLOSED", 4))
        self.assertTrue(cb.allowed(sid))

    def test_probe_through_state_and_report(self):
        sid = new_id("probe-low")
        control("PUT", "/circuits/" + sid, {"state": "HALF_OPEN", "version": 7, "successes": 1})
        # allowed() uses the batch lookup and never takes the probe.
        self.assertFalse(cb.allowed(sid))
        st = cb.state(sid)
        self.assertTrue(st.get("probe"), st)
        self.assertTrue(st.get("probeToken"))
        self.assertTrue(st["allowed"])
        # A second caller finds the only lease held.
        self.assertFalse(client().state(sid)["allowed"])
        answer = cb.report(sid, True, 12, st["probeToken"])
        self.assertEqual(answer, {"accepted": 1, "state": "CLOSED"})
        self.assertEqual(control("GET", "/circuits/" + sid)["state"], "CLOSED")

    def test_failed_probe_reopens(self):
        sid = new_id("probe-fail")
        control("PUT", "/circuits/" + sid, {"state": "HALF_OPEN", "version": 2, "openCount": 1})

        def trial():
            raise TimeoutError("still down")

        out = client().call(sid, trial, lambda err: "fallback after %s" % type(err).__name__)
        self.assertEqual(out, "fallback after TimeoutError")
        got = control("GET", "/circuits/" + sid)
        self.assertEqual((got["state"], got["version"]), ("OPEN", 3))

    def test_the_token_is_sent(self):
        # The extension refuses a wrong token with 401 ...
        with self.assertRaises(cb.ExtensionError) as ctx:
            client(token="wrong").state_or_raise(new_id("tok"))
        self.assertEqual(ctx.exception.status, 401)
        # ... and the client applies the fail mode instead of raising.
        self.assertFalse(client(token="wrong", fail_mode="deny").allowed("x"))
        # A token no header can carry is the extension being unusable, not an exception.
        self.assertTrue(client(token="bad\ntoken").state("x")["failMode"])
        # The header carries the token from the environment, as a recording server sees it.
        seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                seen.append((self.path, self.headers.get("X-Circuit-Breaker-Token")))
                body = b'{"circuits":[{"id":"a","state":"CLOSED","allowed":true,"version":0,"updatedAt":null,"stale":false,"ageMs":-1}]}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        try:
            c = cb.Client(base_url="http://127.0.0.1:%d" % srv.server_address[1])
            self.assertTrue(c.allowed("a"))
            self.assertTrue(c.allowed("a"))
        finally:
            srv.shutdown()
            srv.server_close()
        self.assertEqual(seen, [("/circuits?ids=a", TOKEN)] * 2)

    def test_one_keep_alive_connection_is_reused(self):
        c = client()
        sid = new_id("keepalive")
        for _ in range(20):
            self.assertTrue(c.allowed(sid))
        self.assertEqual(len(c._idle), 1)
        conn = c._idle[0]
        local = conn.sock.getsockname()
        for _ in range(5):
            c.state(sid)
        self.assertIs(c._idle[0], conn)
        self.assertEqual(c._idle[0].sock.getsockname(), local)

    def test_a_connection_closed_while_idle_is_replaced(self):
        c = client()
        self.assertTrue(c.allowed("idle-close"))
        # As if the extension had closed the idle connection during a freeze.
        c._idle[0].sock.shutdown(socket.SHUT_RDWR)
        st = c.state("idle-close")
        self.assertNotIn("failMode", st)
        self.assertTrue(st["allowed"])


def pool_of(c, n, sid):
    """Has c keep n connections idle, through n lookups of new circuits that
    overlap (each first lookup waits for a table read)."""
    for _ in range(20):
        barrier = threading.Barrier(n)

        def ask(i):
            barrier.wait()
            c.state("%s-%d-%s" % (sid, i, uuid.uuid4().hex[:6]))

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if len(c._idle) >= n:
            return
    raise AssertionError("could not get %d idle connections: %d" % (n, len(c._idle)))


class TestKeptAliveConnectionsClosedByTheExtension(Harness):
    """The extension's server closes keep-alive connections left idle past its
    idle timeout; a frozen sandbox notices only when it next uses them. The
    suite's proxy in front of the extension closes them on demand."""

    def proxied(self, **kw):
        return client(base_url="http://127.0.0.1:%d" % PROXY_PORT, **kw)

    def test_first_lookup_after_the_idle_timeout_answers_from_the_extension(self):
        sid = new_id("idle-open")
        control("PUT", "/circuits/" + sid, {"state": "OPEN", "version": 4, "openCount": 1, "retryInMs": 600000})
        for usable_check in (True, False):
            with self.subTest(usable_check=usable_check):
                c = self.proxied()
                if not usable_check:
                    # As if the extension closed them between the check and the request.
                    c._usable = lambda conn: True
                pool_of(c, 3, sid)
                self.assertGreaterEqual(control("POST", "/proxy/close")["closed"], 3)
                st = c.state(sid)
                self.assertNotIn("failMode", st, st.get("reason"))
                self.assertEqual((st["state"], st["allowed"]), ("OPEN", False))
                calls = []
                out = c.call(sid, lambda: calls.append(1) or "called", lambda err: "fallback")
                self.assertEqual((out, calls), ("fallback", []))
                c.close()

    def test_a_report_is_not_sent_twice(self):
        sid = new_id("once")
        control("PUT", "/circuits/" + sid, {"state": "CLOSED", "version": 1})
        c = self.proxied()
        self.assertTrue(c.health())  # one kept-alive connection
        control("POST", "/proxy/drop-next-answer")
        # The extension took the outcome, but the answer never came back.
        self.assertIsNone(c.report(sid, False, 5))
        self.assertEqual(c.report(sid, False, 5), {"accepted": 1})
        counts = control("GET", "/buckets/%s?failures=2" % sid)
        self.assertEqual(counts["failures"], 2)
        c.close()


class Rejected(ValueError):
    """Bad input, found before the service is called."""


class TestWhichErrorsCount(Harness):
    def test_ignored_errors_propagate_and_report_nothing(self):
        sid = new_id("ignore")
        control("PUT", "/circuits/" + sid, {"state": "CLOSED", "version": 1})
        cases = [
            ("ignore", dict(ignore=Rejected)),
            ("failure_on classes", dict(failure_on=(ConnectionError, TimeoutError))),
            ("failure_on predicate", dict(failure_on=lambda e: not isinstance(e, Rejected))),
        ]
        for name, opts in cases:
            with self.subTest(name):
                fallbacks = []

                @cb.circuit_breaker(sid, fallback=lambda err, x: fallbacks.append(err) or "fallback", **opts)
                def work(x):
                    if x == "bad":
                        raise Rejected("amount must be positive")
                    raise ConnectionError("downstream reset")

                for _ in range(12):  # past the fast trip's run of failures
                    with self.assertRaises(Rejected):
                        work("bad")
                self.assertEqual(fallbacks, [])
                # The service's own failure: not refused, so nothing tripped.
                self.assertEqual(work("down"), "fallback")
                self.assertIsInstance(fallbacks[-1], ConnectionError)
        # The context manager: an ignored error reports nothing either.
        with self.assertRaises(Rejected):
            with cb.circuit_breaker(sid, ignore=Rejected) as guard:
                self.assertTrue(guard.allowed)
                raise Rejected("bad input")
        self.assertIsNone(guard.result)
        # Only the three ConnectionErrors reached the table; the circuit never opened.
        counts = control("GET", "/buckets/%s?failures=3" % sid)
        self.assertEqual(counts["failures"], 3)
        self.assertEqual(control("GET", "/circuits/" + sid)["state"], "CLOSED")

    def test_options_are_checked(self):
        for opts in (dict(failure_on="ValueError"), dict(ignore=(ValueError, 3)), dict(timeout=0), dict(on_fallback=1)):
            with self.subTest(opts=opts):
                with self.assertRaises((TypeError, ValueError)):
                    cb.circuit_breaker("x", **opts)


class TestFallbackCheckedWhenDecorated(Harness):
    def test_a_fallback_that_cannot_take_the_arguments_is_refused(self):
        with self.assertRaises(TypeError) as ctx:

            @cb.circuit_breaker("payments", fallback=lambda err: {"statusCode": 503})
            def handler(event, context):
                return "called"

        self.assertIn("(err, event, context)", str(ctx.exception))

        async def afb(err, event, context):
            return {}

        with self.assertRaises(TypeError):

            @cb.circuit_breaker("payments", fallback=afb)
            def sync_handler(event, context):
                return "called"

        with self.assertRaises(TypeError):

            @cb.circuit_breaker("payments", fallback="not callable")
            def other(event, context):
                return "called"

    def test_fallbacks_that_fit_are_accepted(self):
        for fb in (lambda err, event, context: 1, lambda err, *a: 1, lambda err, event, context=None, extra=None: 1, print):

            @cb.circuit_breaker("payments", fallback=fb)
            def handler(event, context):
                return "called"

            self.assertTrue(callable(handler))


class TestAsync(Harness):
    def test_decorated_coroutine_reports_after_the_await(self):
        sid = new_id("async")
        control("PUT", "/circuits/" + sid, {"state": "CLOSED", "version": 1})

        async def fallback(err, x):
            await asyncio.sleep(0)
            return {"fallback": type(err).__name__}

        @cb.circuit_breaker(sid, fallback=fallback)
        async def work(x):
            await asyncio.sleep(0.001)
            if x == "bad":
                raise ConnectionError("downstream reset")
            return {"ok": x}

        async def main():
            self.assertEqual(await work("good"), {"ok": "good"})
            return [(await work("bad"))["fallback"] for _ in range(12)]

        got = asyncio.run(main())
        # The failures, reported after the await, trip the circuit (the fast
        # trip's run of consecutive failures); later calls are refused.
        self.assertEqual(got[0], "ConnectionError")
        self.assertEqual(got[-1], "CircuitOpenError")
        n = got.count("ConnectionError")
        self.assertEqual(control("GET", "/buckets/%s?failures=%d" % (sid, n))["failures"], n)

    def test_open_circuit_awaits_the_async_fallback(self):
        sid = new_id("async-open")
        control("PUT", "/circuits/" + sid, {"state": "OPEN", "version": 2, "openCount": 1, "retryInMs": 600000})
        calls = []

        async def fallback(err, event, context):
            return {"statusCode": 503, "state": err.circuit["state"]}

        @cb.circuit_breaker(sid, fallback=fallback)
        async def handler(event, context):
            calls.append(event)
            return {"statusCode": 200}

        self.assertEqual(asyncio.run(handler({}, None)), {"statusCode": 503, "state": "OPEN"})
        self.assertEqual(calls, [])

    def test_async_with(self):
        sid = new_id("async-with")
        control("PUT", "/circuits/" + sid, {"state": "CLOSED", "version": 1})

        async def one(fail):
            async with cb.circuit_breaker(sid) as guard:
                self.assertTrue(guard.allowed)
                await asyncio.sleep(0.01)
                if fail:
                    guard.failed()
            return guard.result

        async def main():
            # Two blocks interleaved in one thread: each reports its own outcome.
            return await asyncio.gather(one(True), one(False), one(True))

        self.assertEqual(asyncio.run(main()), [{"accepted": 1}] * 3)
        self.assertEqual(control("GET", "/buckets/%s?failures=2" % sid)["failures"], 2)

    def test_timeout_is_a_failure_with_the_fallback(self):
        sid = new_id("timeout")
        control("PUT", "/circuits/" + sid, {"state": "CLOSED", "version": 1})
        cancelled = []

        @cb.circuit_breaker(sid, fallback=lambda err, x: ("fallback", type(err).__name__, err.timeout), timeout=0.2)
        async def hang(x):
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.append(x)
                raise

        start = time.monotonic()
        self.assertEqual(asyncio.run(hang(1)), ("fallback", "CallTimeoutError", 0.2))
        took = time.monotonic() - start
        self.assertGreaterEqual(took, 0.19)
        self.assertLess(took, 5)
        self.assertEqual(cancelled, [1])
        # A timeout counts even when failure_on would not take the error.
        @cb.circuit_breaker(sid, timeout=0.1, failure_on=ConnectionError)
        async def strict():
            await asyncio.sleep(30)

        with self.assertRaises(cb.CallTimeoutError):
            asyncio.run(strict())
        self.assertEqual(control("GET", "/buckets/%s?failures=2" % sid)["failures"], 2)
        with self.assertRaises(TypeError):  # sync code: documented, not enforced

            @cb.circuit_breaker(sid, timeout=1)
            def sync_call():
                pass

    def test_cancelled_call_is_not_a_failure(self):
        sid = new_id("cancel")
        control("PUT", "/circuits/" + sid, {"state": "CLOSED", "version": 1})

        @cb.circuit_breaker(sid)
        async def slow():
            await asyncio.sleep(30)

        async def main():
            task = asyncio.ensure_future(slow())
            await asyncio.sleep(0.05)
            task.cancel()
            with self.assertRaises(asyncio.CancelledError):
                await task
            # A failure reported afterwards is the only one counted.
            cb.report(sid, False, 1)

        asyncio.run(main())
        counts = control("GET", "/buckets/%s?failures=1" % sid)
        self.assertEqual((counts["calls"], counts["failures"]), (1, 1))


class TestHooks(Harness):
    def test_state_changes_fallbacks_and_debug_lines(self):
        sid = new_id("hooks")
        control("PUT", "/circuits/" + sid, {"state": "CLOSED", "version": 1})
        changes, fallbacks = [], []
        breaker = cb.circuit_breaker(sid, fallback=lambda err: "fallback",
                                     on_state_change=lambda i, old, new: changes.append((i, old, new)),
                                     on_fallback=lambda i, err: fallbacks.append((i, type(err).__name__)))
        guarded = breaker(lambda: "called")
        self.assertEqual(guarded(), "called")
        self.assertEqual(changes, [])  # CLOSED, as a circuit never seen reads
        control("PUT", "/circuits/" + sid, {"state": "OPEN", "version": 2, "openCount": 1, "retryInMs": 600000})
        with self.assertLogs("lambda_circuit_breaker", logging.DEBUG) as logs:
            for _ in range(200):  # the extension's cache refreshes within its max age (2 s)
                if guarded() == "fallback":
                    break
                time.sleep(0.05)
        self.assertEqual(changes, [(sid, "CLOSED", "OPEN")])
        self.assertEqual(fallbacks[-1], (sid, "CircuitOpenError"))
        self.assertTrue(any("state=OPEN allowed=False" in line for line in logs.output), logs.output)
        self.assertEqual(guarded(), "fallback")
        self.assertEqual(len(changes), 1)  # the same state again is no change

    def test_a_raising_hook_never_reaches_the_handler(self):
        sid = new_id("hook-raise")

        def boom(*a):
            raise RuntimeError("hook bug")

        guarded = cb.circuit_breaker(sid, fallback=lambda err: "fallback", on_fallback=boom)(lambda: 1 / 0)
        with self.assertLogs("lambda_circuit_breaker", logging.ERROR):
            self.assertEqual(guarded(), "fallback")


class TestLoudOnMisconfiguration(Harness):
    def setUp(self):
        cb._last_misconfig_warning = None

    def test_wrong_token_warns_once(self):
        c = client(token="wrong")
        with self.assertLogs("lambda_circuit_breaker", logging.WARNING) as logs:
            for _ in range(5):
                self.assertTrue(c.allowed(new_id("tok")))  # the failure policy: allow
        self.assertEqual(len(logs.output), 1, logs.output)
        self.assertIn("wrong token", logs.output[0])
        self.assertIn("failure policy (allow)", logs.output[0])
        cb._last_misconfig_warning -= cb.WARN_INTERVAL
        with self.assertLogs("lambda_circuit_breaker", logging.WARNING) as logs:
            c.allowed("x")
        self.assertEqual(len(logs.output), 1)

    def test_absent_extension_warns_once(self):
        c = cb.Client(base_url="http://127.0.0.1:%d" % closed_port(), fail_mode="deny")
        with self.assertLogs("lambda_circuit_breaker", logging.WARNING) as logs:
            for _ in range(5):
                self.assertFalse(c.allowed("payments"))
        self.assertEqual(len(logs.output), 1, logs.output)
        self.assertIn("extension absent", logs.output[0])
        self.assertIn("failure policy (deny)", logs.output[0])


class TestKillSwitch(Harness):
    def test_disabled_allows_every_call_and_reports_nothing(self):
        sid = new_id("disabled")
        control("PUT", "/circuits/" + sid, {"state": "OPEN", "version": 2, "openCount": 1, "retryInMs": 600000})
        saved = dict(os.environ)
        cb._warned_disabled = False
        try:
            os.environ["CIRCUIT_BREAKER_DISABLED"] = "true"
            with self.assertLogs("lambda_circuit_breaker", logging.WARNING) as logs:
                c = cb.Client()
                cb.Client()
            self.assertEqual(len(logs.output), 1)
            self.assertIn("disabled", logs.output[0])
        finally:
            os.environ.clear()
            os.environ.update(saved)
        self.assertTrue(c.allowed(sid))
        calls = []

        @c.circuit_breaker(sid, fallback=lambda err: "fallback")
        def work():
            calls.append(1)
            raise ConnectionError("down")

        with self.assertRaises(ConnectionError):  # the call's own error, no fallback
            work()
        self.assertEqual(calls, [1])
        self.assertIsNone(c.report(sid, False, 1))
        # The extension was never told: its counts stay empty.
        self.assertEqual(control("GET", "/buckets/%s?failures=0" % sid)["failures"], 0)


class TestTypes(Harness):
    def test_public_api_has_type_hints_and_py_typed(self):
        for fn in (cb.circuit_breaker, cb.allowed, cb.state, cb.report, cb.Client.__init__, cb.Client.call):
            with self.subTest(fn=fn.__qualname__):
                hints = typing.get_type_hints(fn)
                self.assertIn("return", hints)
        pkg = os.path.dirname(cb.__file__)
        self.assertTrue(os.path.exists(os.path.join(pkg, "py.typed")))


class TestExtensionMissingOrHanging(Harness):
    def test_absent_extension_follows_the_fail_mode(self):
        port = closed_port()
        for mode, allows in (("allow", True), ("deny", False)):
            with self.subTest(mode=mode):
                c = cb.Client(base_url="http://127.0.0.1:%d" % port, fail_mode=mode)
                start = time.monotonic()
                self.assertEqual(c.allowed("payments"), allows)
                st = c.state("payments")
                self.assertEqual((st["allowed"], st["failMode"]), (allows, True))
                self.assertIn("extension unavailable", st["reason"])
                self.assertIsNone(c.report("payments", True, 1))
                ran = []
                out = c.call("payments", lambda: ran.append(1) or "called", lambda err: "fallback")
                self.assertEqual(out, "called" if allows else "fallback")
                self.assertEqual(ran, [1] if allows else [])
                self.assertLess(time.monotonic() - start, c.timeout * 4)

    def test_absent_extension_through_the_environment(self):
        port = closed_port()
        saved = dict(os.environ)
        try:
            os.environ["CIRCUIT_BREAKER_PORT"] = str(port)
            os.environ["CIRCUIT_BREAKER_FAIL_MODE"] = "deny"
            c = cb.Client()
            self.assertFalse(c.allowed("payments"))
            with self.assertRaises(cb.CircuitOpenError) as ctx:
                c.call("payments", lambda: "called")
            self.assertTrue(ctx.exception.circuit["failMode"])
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def test_hanging_extension_fails_within_the_timeout(self):
        srv = HangingServer()
        try:
            for mode, allows in (("allow", True), ("deny", False)):
                with self.subTest(mode=mode):
                    c = cb.Client(base_url="http://127.0.0.1:%d" % srv.port, fail_mode=mode, timeout=0.2)
                    start = time.monotonic()
                    self.assertEqual(c.allowed("payments"), allows)
                    took = time.monotonic() - start
                    self.assertGreaterEqual(took, 0.19)
                    self.assertLess(took, 1.0)  # the timeout, with room for a loaded machine

                    fallbacks = []

                    @c.circuit_breaker("payments", fallback=lambda err: fallbacks.append(err) or "fallback")
                    def guarded():
                        return "called"

                    start = time.monotonic()
                    self.assertEqual(guarded(), "called" if allows else "fallback")
                    # Nothing is reported after an unanswered lookup: one timeout in all.
                    self.assertLess(time.monotonic() - start, 1.0)
                    if not allows:
                        self.assertTrue(fallbacks[0].circuit["failMode"])
            # The default timeout (250 ms) without CIRCUIT_BREAKER_MISS_TIMEOUT.
            saved = os.environ.pop("CIRCUIT_BREAKER_MISS_TIMEOUT")
            try:
                c = cb.Client(base_url="http://127.0.0.1:%d" % srv.port)
            finally:
                os.environ["CIRCUIT_BREAKER_MISS_TIMEOUT"] = saved
            self.assertEqual(c.timeout, 0.25)
            start = time.monotonic()
            self.assertTrue(c.allowed("payments"))
            self.assertLess(time.monotonic() - start, 1.0)
        finally:
            srv.close()


if __name__ == "__main__":
    unittest.main()
