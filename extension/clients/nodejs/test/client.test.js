"use strict";
// Tests of lambda-circuit-breaker against the real extension.
//
// Run through the Go test that starts the extension, dynalite and the fake
// Extensions API (go test -run TestNodeClientSuite ./extension/clients/); it
// sets CIRCUIT_BREAKER_PORT, AWS_SESSION_TOKEN, CIRCUIT_BREAKER_MISS_TIMEOUT,
// NODE_PATH (the layer's nodejs/node_modules directory) and
// CB_TEST_CONTROL_URL, a control API that writes circuits into the table and
// reads what the extension wrote.

const { test, describe, before } = require("node:test");
const assert = require("node:assert/strict");
const http = require("node:http");
const net = require("node:net");
const crypto = require("node:crypto");
const { spawnSync } = require("node:child_process");

const cb = require("lambda-circuit-breaker");

const CONTROL = process.env.CB_TEST_CONTROL_URL ?? "";
const PORT = Number(process.env.CIRCUIT_BREAKER_PORT ?? 0);
const TOKEN = process.env.AWS_SESSION_TOKEN ?? "";
const PROXY_PORT = Number(process.env.CB_TEST_PROXY_PORT ?? 0);

before(() => {
  if (!CONTROL || !PORT) throw new Error("run through go test ./extension/clients/ (CB_TEST_CONTROL_URL and CIRCUIT_BREAKER_PORT unset)");
});

async function control(method, path, body) {
  const res = await fetch(CONTROL + path, { method, body: body === undefined ? undefined : JSON.stringify(body) });
  assert.ok(res.ok, `control ${method} ${path}: ${res.status} ${await res.clone().text()}`);
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

const newId = (prefix) => `${prefix}-${crypto.randomBytes(6).toString("hex")}`;
const client = (opts = {}) => new cb.Client({ baseUrl: `http://127.0.0.1:${PORT}`, token: TOKEN, ...opts });

function closedPort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Accepts connections and never answers: an extension that hangs. */
function hangingServer() {
  const sockets = [];
  const srv = net.createServer((s) => sockets.push(s));
  return new Promise((resolve) =>
    srv.listen(0, "127.0.0.1", () =>
      resolve({
        port: srv.address().port,
        close: () => {
          sockets.forEach((s) => s.destroy());
          srv.close();
        },
      }),
    ),
  );
}

describe("environment", () => {
  test("defaults come from the environment", async () => {
    const c = new cb.Client();
    assert.equal(c.host, "127.0.0.1");
    assert.equal(c.port, PORT);
    assert.equal(c.token, TOKEN);
    assert.equal(c.failAllow, true);
    // CIRCUIT_BREAKER_MISS_TIMEOUT=1s: 2 × 1 s + 50 ms, as the Go client.
    assert.equal(c.timeoutMs, 2050);
    assert.equal(await c.health(), true);
    c.close();
  });

  test("timeout rule matches the Go client", () => {
    const cases = { "": 250, "100ms": 250, "500ms": 1050, "not-a-duration": 250, "1m": 120050 };
    for (const [miss, want] of Object.entries(cases)) {
      assert.equal(cb.defaultTimeoutMs({ CIRCUIT_BREAKER_MISS_TIMEOUT: miss }), want, miss);
    }
  });

  test("token rule matches the extension", () => {
    const cases = [
      [{ AWS_SESSION_TOKEN: "s", AWS_CONTAINER_AUTHORIZATION_TOKEN: "c" }, "s"],
      [{ AWS_CONTAINER_AUTHORIZATION_TOKEN: "c" }, "c"],
      [{ AWS_SESSION_TOKEN: "", AWS_CONTAINER_AUTHORIZATION_TOKEN: "c" }, "c"],
      [{}, ""],
    ];
    for (const [env, want] of cases) assert.equal(cb.tokenFromEnv(env), want, JSON.stringify(env));
  });

  test("a SnapStart environment sends the container token", async () => {
    // A SnapStart restore has no AWS_SESSION_TOKEN; the extension then takes
    // AWS_CONTAINER_AUTHORIZATION_TOKEN, and so does the client, unasked.
    const saved = { ...process.env };
    try {
      delete process.env.AWS_SESSION_TOKEN;
      process.env.AWS_CONTAINER_AUTHORIZATION_TOKEN = TOKEN;
      const c = new cb.Client();
      assert.equal(c.token, TOKEN);
      const st = await c.state(newId("snapstart"));
      assert.equal(st.failMode, undefined, st.reason);
      c.close();
    } finally {
      process.env = saved;
    }
  });

  test("fail mode values", () => {
    for (const [mode, allows] of [["", true], ["allow", true], ["ALLOW", true], ["deny", false], ["sometimes", false]]) {
      assert.equal(new cb.Client({ failMode: mode }).failAllow, allows, mode);
    }
  });
});

describe("against the extension", () => {
  test("allowed for a closed circuit", async () => {
    const id = newId("closed");
    await control("PUT", `/circuits/${id}`, { state: "CLOSED", version: 2 });
    assert.equal(await cb.allowed(id), true);
    const st = await cb.state(id);
    assert.deepEqual([st.state, st.allowed, st.version, st.failMode], ["CLOSED", true, 2, undefined]);
  });

  test("refused with fallback", async () => {
    const id = newId("open");
    await control("PUT", `/circuits/${id}`, { state: "OPEN", version: 5, openCount: 1, retryInMs: 600000 });
    assert.equal(await cb.allowed(id), false);
    const calls = [];
    const handler = cb.wrap(
      id,
      async (event) => {
        calls.push(event);
        return "called";
      },
      (err, event) => ["fallback", err.name, err.circuit.state, event],
    );
    assert.deepEqual(await handler({ n: 1 }, {}), ["fallback", "CircuitOpenError", "OPEN", { n: 1 }]);
    assert.deepEqual(calls, []);
    await assert.rejects(client().call(id, async () => "called"), (err) => err instanceof cb.CircuitOpenError && err.circuit.version === 5);
  });

  test("success and failure reported reach the table", async () => {
    const id = newId("outcomes");
    await control("PUT", `/circuits/${id}`, { state: "CLOSED", version: 1 });
    const work = cb.wrap(
      id,
      async (x) => {
        if (x === "bad") throw new Error("downstream said 503");
        return `ok ${x}`;
      },
      (err) => `fallback: ${err.message}`,
    );
    assert.equal(await work("good"), "ok good");
    assert.equal(await work("bad"), "fallback: downstream said 503");
    assert.deepEqual(await cb.report(id, false, 42), { accepted: 1 });
    const counts = await control("GET", `/buckets/${id}?failures=2`);
    // Every failure reaches the table; successes may be left out while healthy.
    assert.equal(counts.failures, 2);
    assert.ok(counts.calls === 2 || counts.calls === 3, `calls ${counts.calls}`);
  });

  test("a probe taken and reported closes a HALF_OPEN circuit", async () => {
    const id = newId("probe");
    // One success already counted; the default successThreshold is 2.
    await control("PUT", `/circuits/${id}`, { state: "HALF_OPEN", version: 3, successes: 1 });
    let ran = 0;
    const trial = cb.wrap(id, async () => {
      ran++;
      return "trial ok";
    });
    assert.equal(await trial(), "trial ok");
    assert.equal(ran, 1);
    const got = await control("GET", `/circuits/${id}`);
    assert.deepEqual([got.state, got.version], ["CLOSED", 4]);
    assert.equal(await cb.allowed(id), true);
  });

  test("a probe through state and report", async () => {
    const id = newId("probe-low");
    await control("PUT", `/circuits/${id}`, { state: "HALF_OPEN", version: 7, successes: 1 });
    // allowed() uses the batch lookup and never takes the probe.
    assert.equal(await cb.allowed(id), false);
    const st = await cb.state(id);
    assert.equal(st.probe, true);
    assert.ok(st.probeToken);
    assert.equal(st.allowed, true);
    // A second caller finds the only lease held.
    assert.equal((await client().state(id)).allowed, false);
    assert.deepEqual(await cb.report(id, true, 12, st.probeToken), { accepted: 1, state: "CLOSED" });
    assert.equal((await control("GET", `/circuits/${id}`)).state, "CLOSED");
  });

  test("a failed probe reopens the circuit", async () => {
    const id = newId("probe-fail");
    await control("PUT", `/circuits/${id}`, { state: "HALF_OPEN", version: 2, openCount: 1 });
    const out = await client().call(
      id,
      async () => {
        throw new Error("still down");
      },
      (err) => `fallback after ${err.message}`,
    );
    assert.equal(out, "fallback after still down");
    const got = await control("GET", `/circuits/${id}`);
    assert.deepEqual([got.state, got.version], ["OPEN", 3]);
  });

  test("the token is sent", async () => {
    // The extension refuses a wrong token with 401 ...
    await assert.rejects(client({ token: "wrong" }).stateOrThrow(newId("tok")), (err) => err instanceof cb.ExtensionError && err.status === 401);
    // ... and the client applies the fail mode instead of throwing.
    assert.equal(await client({ token: "wrong", failMode: "deny" }).allowed("x"), false);
    // A token no header can carry is the extension being unusable, not an exception.
    assert.equal((await client({ token: "bad\ntoken" }).state("x")).failMode, true);
    // The header carries the token from the environment, as a recording server sees it.
    const seen = [];
    const srv = http.createServer((req, res) => {
      seen.push([req.url, req.headers["x-circuit-breaker-token"]]);
      res.setHeader("Content-Type", "application/json");
      res.end('{"circuits":[{"id":"a","state":"CLOSED","allowed":true,"version":0,"updatedAt":null,"stale":false,"ageMs":-1}]}');
    });
    await new Promise((r) => srv.listen(0, "127.0.0.1", r));
    const c = new cb.Client({ baseUrl: `http://127.0.0.1:${srv.address().port}` });
    assert.equal(await c.allowed("a"), true);
    assert.equal(await c.allowed("a"), true);
    c.close();
    await new Promise((r) => srv.close(r));
    assert.deepEqual(seen, [
      ["/circuits?ids=a", TOKEN],
      ["/circuits?ids=a", TOKEN],
    ]);
  });

  test("one keep-alive connection is reused", async () => {
    const c = client();
    const id = newId("keepalive");
    const ports = new Set();
    for (let i = 0; i < 20; i++) {
      assert.equal(await c.allowed(id), true);
      const free = Object.values(c.agent.freeSockets).flat();
      assert.equal(free.length, 1);
      ports.add(free[0].localPort);
    }
    assert.equal(ports.size, 1);
    c.close();
  });
});

/** Free (idle, kept-alive) sockets of a client's agent. */
const freeSockets = (c) => Object.values(c.agent.freeSockets).flat();

/**
 * Has the proxy close every connection while this process's event loop is
 * blocked, as the extension closes them while the sandbox is frozen: the
 * client learns of it only when it next uses them.
 */
function closeWhileFrozen() {
  const script = `fetch(${JSON.stringify(CONTROL + "/proxy/close")}, { method: "POST" }).then(async (r) => process.stdout.write(await r.text()))`;
  const out = spawnSync(process.execPath, ["-e", script], { encoding: "utf8", timeout: 30000 });
  assert.equal(out.status, 0, out.stderr);
  return JSON.parse(out.stdout).closed;
}

describe("kept-alive connections closed by the extension", () => {
  const proxied = (opts = {}) => client({ baseUrl: `http://127.0.0.1:${PROXY_PORT}`, ...opts });

  test("the first lookup after the idle timeout answers from the extension", async () => {
    const id = newId("idle-open");
    await control("PUT", `/circuits/${id}`, { state: "OPEN", version: 4, openCount: 1, retryInMs: 600000 });
    const c = proxied();
    // Overlapping first lookups (each waits for a table read) leave several idle sockets.
    for (let i = 0; i < 20 && freeSockets(c).length < 3; i++) {
      await Promise.all([0, 1, 2, 3].map((n) => c.state(`${id}-${n}-${i}`)));
    }
    assert.ok(freeSockets(c).length >= 3, `${freeSockets(c).length} idle sockets`);
    assert.ok(closeWhileFrozen() >= 3);
    const st = await c.state(id);
    assert.equal(st.failMode, undefined, st.reason);
    assert.deepEqual([st.state, st.allowed], ["OPEN", false]);
    c.close();
  });

  test("a report whose answer was lost is not sent again", async () => {
    const id = newId("once");
    await control("PUT", `/circuits/${id}`, { state: "CLOSED", version: 1 });
    const c = proxied();
    assert.equal(await c.health(), true); // one kept-alive socket
    await control("POST", "/proxy/drop-next-answer");
    // The extension took the outcome, but the answer never came back.
    assert.equal(await c.report(id, false, 5), null);
    assert.deepEqual(await c.report(id, false, 5), { accepted: 1 });
    const counts = await control("GET", `/buckets/${id}?failures=2`);
    assert.equal(counts.failures, 2);
    c.close();
  });
});

class Rejected extends Error {}

describe("which errors count", () => {
  test("ignored errors propagate unchanged and report nothing", async () => {
    const id = newId("ignore");
    await control("PUT", `/circuits/${id}`, { state: "CLOSED", version: 1 });
    const fallbacks = [];
    const work = cb.wrap(
      id,
      async (x) => {
        if (x === "bad") throw new Rejected("amount must be positive");
        throw new Error("downstream reset");
      },
      { fallback: (err) => fallbacks.push(err) && "fallback", isFailure: (err) => !(err instanceof Rejected) },
    );
    for (let i = 0; i < 12; i++) await assert.rejects(work("bad"), Rejected); // past the fast trip's run
    assert.deepEqual(fallbacks, []);
    assert.equal(await work("down"), "fallback");
    assert.equal(await work("down"), "fallback");
    // The service's own failures: not refused, so nothing tripped.
    assert.deepEqual(fallbacks.map((e) => e.message), ["downstream reset", "downstream reset"]);
    const counts = await control("GET", `/buckets/${id}?failures=2`);
    assert.equal(counts.failures, 2);
    assert.equal((await control("GET", `/circuits/${id}`)).state, "CLOSED");
  });

  test("options are checked when wrapped", () => {
    for (const opts of [{ fallback: "x" }, { isFailure: 1 }, { timeoutMs: 0 }, { onfallback: () => {} }]) {
      assert.throws(() => cb.wrap("x", async () => 1, opts), TypeError, JSON.stringify(Object.keys(opts)));
    }
    assert.throws(() => cb.wrap("x", async () => 1, "not a fallback"), TypeError);
    assert.throws(() => cb.wrap("x", "not a function"), TypeError);
  });
});

describe("timeouts", () => {
  test("execute: a timed-out call aborts its signal, counts as a failure and returns the fallback", async () => {
    const id = newId("timeout");
    await control("PUT", `/circuits/${id}`, { state: "CLOSED", version: 1 });
    let aborted;
    const start = performance.now();
    const out = await cb.execute(
      id,
      (signal) =>
        new Promise((_, reject) => {
          signal.addEventListener("abort", () => {
            aborted = signal.reason;
            reject(signal.reason);
          });
        }),
      { timeoutMs: 200, fallback: (err) => ["fallback", err.name, err.timeoutMs] },
    );
    const took = performance.now() - start;
    assert.deepEqual(out, ["fallback", "CallTimeoutError", 200]);
    assert.ok(aborted instanceof cb.CallTimeoutError);
    assert.ok(took >= 190 && took < 5000, `took ${took} ms`);
    assert.equal((await control("GET", `/buckets/${id}?failures=1`)).failures, 1);
  });

  test("wrap: a hanging function is given up after timeoutMs", async () => {
    const id = newId("timeout-wrap");
    await control("PUT", `/circuits/${id}`, { state: "CLOSED", version: 1 });
    const hang = cb.wrap(id, () => new Promise(() => {}), { timeoutMs: 100, fallback: (err, x) => `fallback ${x} ${err.name}` });
    assert.equal(await hang(7), "fallback 7 CallTimeoutError");
    // A timeout counts even when isFailure would ignore the error.
    const hang2 = cb.wrap(id, () => new Promise(() => {}), { timeoutMs: 100, isFailure: () => false });
    await assert.rejects(hang2(), cb.CallTimeoutError);
    assert.equal((await control("GET", `/buckets/${id}?failures=2`)).failures, 2);
  });
});

describe("hooks", () => {
  test("state changes, fallbacks and debug lines", async () => {
    const id = newId("hooks");
    await control("PUT", `/circuits/${id}`, { state: "CLOSED", version: 1 });
    const changes = [];
    const fallbacks = [];
    const guarded = cb.wrap(id, async () => "called", {
      fallback: () => "fallback",
      onStateChange: (i, from, to) => changes.push([i, from, to]),
      onFallback: (i, err) => fallbacks.push([i, err.name]),
    });
    assert.equal(await guarded(), "called");
    assert.deepEqual(changes, []); // CLOSED, as a circuit never seen reads
    await control("PUT", `/circuits/${id}`, { state: "OPEN", version: 2, openCount: 1, retryInMs: 600000 });
    const lines = [];
    const saved = [console.debug, process.env.CIRCUIT_BREAKER_LOG_LEVEL];
    console.debug = (line) => lines.push(line);
    process.env.CIRCUIT_BREAKER_LOG_LEVEL = "debug";
    try {
      for (let i = 0; i < 200 && (await guarded()) !== "fallback"; i++) await new Promise((r) => setTimeout(r, 50));
    } finally {
      [console.debug, process.env.CIRCUIT_BREAKER_LOG_LEVEL] = saved;
      if (saved[1] === undefined) delete process.env.CIRCUIT_BREAKER_LOG_LEVEL;
    }
    assert.deepEqual(changes, [[id, "CLOSED", "OPEN"]]);
    assert.deepEqual(fallbacks.at(-1), [id, "CircuitOpenError"]);
    assert.ok(lines.some((l) => l.includes("state=OPEN allowed=false")), lines.join("\n"));
    assert.equal(await guarded(), "fallback");
    assert.equal(changes.length, 1); // the same state again is no change
  });
});

describe("misconfiguration is loud", () => {
  async function warningsOf(fn) {
    const lines = [];
    const saved = console.warn;
    console.warn = (line) => lines.push(line);
    try {
      await fn();
    } finally {
      console.warn = saved;
    }
    return lines;
  }

  test("a wrong token warns once, then at most once a minute", async () => {
    cb.warnings.lastMisconfig = undefined;
    const c = client({ token: "wrong" });
    let lines = await warningsOf(async () => {
      for (let i = 0; i < 5; i++) assert.equal(await c.allowed(newId("tok")), true);
    });
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.match(lines[0], /wrong token/);
    assert.match(lines[0], /failure policy \(allow\)/);
    cb.warnings.lastMisconfig -= cb.WARN_INTERVAL_MS;
    lines = await warningsOf(() => c.allowed("x"));
    assert.equal(lines.length, 1);
    c.close();
  });

  test("an absent extension warns once", async () => {
    cb.warnings.lastMisconfig = undefined;
    const c = new cb.Client({ baseUrl: `http://127.0.0.1:${await closedPort()}`, failMode: "deny" });
    const lines = await warningsOf(async () => {
      for (let i = 0; i < 5; i++) assert.equal(await c.allowed("payments"), false);
    });
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.match(lines[0], /extension absent/);
    assert.match(lines[0], /failure policy \(deny\)/);
  });
});

describe("kill switch", () => {
  test("CIRCUIT_BREAKER_DISABLED=true allows every call and reports nothing", async () => {
    const id = newId("disabled");
    await control("PUT", `/circuits/${id}`, { state: "OPEN", version: 2, openCount: 1, retryInMs: 600000 });
    const saved = { ...process.env };
    const lines = [];
    const warn = console.warn;
    cb.warnings.disabled = false;
    let c;
    try {
      process.env.CIRCUIT_BREAKER_DISABLED = "true";
      console.warn = (line) => lines.push(line);
      c = new cb.Client();
      new cb.Client();
    } finally {
      console.warn = warn;
      process.env = saved;
    }
    assert.equal(lines.length, 1);
    assert.match(lines[0], /disabled/);
    assert.equal(await c.allowed(id), true);
    let calls = 0;
    const work = c.wrap(
      id,
      async () => {
        calls++;
        throw new Error("down");
      },
      () => "fallback",
    );
    await assert.rejects(work(), /down/); // the call's own error, no fallback
    assert.equal(calls, 1);
    assert.equal(await c.report(id, false, 1), null);
    assert.equal((await control("GET", `/buckets/${id}?failures=0`)).failures, 0);
  });
});

describe("extension missing or hanging", () => {
  test("an absent extension follows the fail mode", async () => {
    const port = await closedPort();
    for (const [mode, allows] of [["allow", true], ["deny", false]]) {
      const c = new cb.Client({ baseUrl: `http://127.0.0.1:${port}`, failMode: mode });
      const start = performance.now();
      assert.equal(await c.allowed("payments"), allows);
      const st = await c.state("payments");
      assert.deepEqual([st.allowed, st.failMode], [allows, true]);
      assert.match(st.reason, /extension unavailable/);
      assert.equal(await c.report("payments", true, 1), null);
      let ran = 0;
      const out = await c.call(
        "payments",
        async () => {
          ran++;
          return "called";
        },
        () => "fallback",
      );
      assert.equal(out, allows ? "called" : "fallback");
      assert.equal(ran, allows ? 1 : 0);
      assert.ok(performance.now() - start < c.timeoutMs * 4);
    }
  });

  test("an absent extension through the environment", async () => {
    const port = await closedPort();
    const saved = { ...process.env };
    try {
      process.env.CIRCUIT_BREAKER_PORT = String(port);
      process.env.CIRCUIT_BREAKER_FAIL_MODE = "deny";
      const c = new cb.Client();
      assert.equal(await c.allowed("payments"), false);
      await assert.rejects(c.call("payments", async () => "called"), (err) => err instanceof cb.CircuitOpenError && err.circuit.failMode === true);
    } finally {
      process.env = saved;
    }
  });

  test("a hanging extension fails within the timeout", async () => {
    const srv = await hangingServer();
    try {
      for (const [mode, allows] of [["allow", true], ["deny", false]]) {
        const c = new cb.Client({ baseUrl: `http://127.0.0.1:${srv.port}`, failMode: mode, timeoutMs: 200 });
        let start = performance.now();
        assert.equal(await c.allowed("payments"), allows);
        const took = performance.now() - start;
        assert.ok(took >= 190, `gave up after ${took} ms, before the timeout`);
        assert.ok(took < 1000, `took ${took} ms`); // the timeout, with room for a loaded machine
        const fallbacks = [];
        const guarded = c.wrap(
          "payments",
          async () => "called",
          (err) => {
            fallbacks.push(err);
            return "fallback";
          },
        );
        start = performance.now();
        assert.equal(await guarded(), allows ? "called" : "fallback");
        // Nothing is reported after an unanswered lookup: one timeout in all.
        assert.ok(performance.now() - start < 1000);
        if (!allows) assert.equal(fallbacks[0].circuit.failMode, true);
        c.close();
      }
      // The default timeout (250 ms) without CIRCUIT_BREAKER_MISS_TIMEOUT.
      const c = new cb.Client({ baseUrl: `http://127.0.0.1:${srv.port}`, timeoutMs: cb.defaultTimeoutMs({}) });
      assert.equal(c.timeoutMs, 250);
      const start = performance.now();
      assert.equal(await c.allowed("payments"), true);
      assert.ok(performance.now() - start < 1000);
      c.close();
    } finally {
      srv.close();
    }
  });
});
