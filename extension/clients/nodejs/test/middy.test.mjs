// The Middy middleware against the real extension, with @middy/core as a
// function's package.json pins it (the repository's dev dependency).
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import crypto from "node:crypto";
import middy from "@middy/core";

const require = createRequire(import.meta.url);
const { circuitBreaker } = require("lambda-circuit-breaker/middy");

const CONTROL = process.env.CB_TEST_CONTROL_URL ?? "";
const newId = (prefix) => `${prefix}-${crypto.randomBytes(6).toString("hex")}`;

async function control(method, path, body) {
  const res = await fetch(CONTROL + path, { method, body: body === undefined ? undefined : JSON.stringify(body) });
  assert.ok(res.ok, `control ${method} ${path}: ${res.status}`);
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

class Rejected extends Error {}

describe("Middy middleware", () => {
  test("calls, reports, falls back and ignores what isFailure rejects", async () => {
    const id = newId("middy");
    await control("PUT", `/circuits/${id}`, { state: "CLOSED", version: 1 });
    let ran = 0;
    const handler = middy(async (event) => {
      ran++;
      if (event.bad) throw new Rejected("bad input");
      if (event.fail) throw new Error("downstream answered 503");
      return { statusCode: 200 };
    }).use(
      circuitBreaker(id, {
        fallback: (err, request) => ({ statusCode: 503, body: err.message, path: request.event.path }),
        isFailure: (err) => !(err instanceof Rejected),
      }),
    );
    assert.deepEqual(await handler({}, {}), { statusCode: 200 });
    assert.deepEqual(await handler({ fail: true, path: "/p" }, {}), { statusCode: 503, body: "downstream answered 503", path: "/p" });
    await assert.rejects(handler({ bad: true }, {}), Rejected);
    assert.equal(ran, 3);
    const counts = await control("GET", `/buckets/${id}?failures=1`);
    assert.equal(counts.failures, 1);
  });

  test("an open circuit answers with the fallback and never runs the handler", async () => {
    const id = newId("middy-open");
    await control("PUT", `/circuits/${id}`, { state: "OPEN", version: 3, openCount: 1, retryInMs: 600000 });
    let ran = 0;
    const changes = [];
    const handler = middy(async () => {
      ran++;
      return { statusCode: 200 };
    }).use(
      circuitBreaker(id, {
        fallback: (err) => ({ statusCode: 503, state: err.circuit.state }),
        onStateChange: (i, from, to) => changes.push([from, to]),
      }),
    );
    assert.deepEqual(await handler({}, {}), { statusCode: 503, state: "OPEN" });
    assert.equal(ran, 0);
    assert.deepEqual(changes, [["CLOSED", "OPEN"]]);
    // Without a fallback the CircuitOpenError is thrown.
    const bare = middy(async () => ({ statusCode: 200 })).use(circuitBreaker(id));
    await assert.rejects(bare({}, {}), { name: "CircuitOpenError" });
  });

  test("a probe through Middy closes a HALF_OPEN circuit", async () => {
    const id = newId("middy-probe");
    await control("PUT", `/circuits/${id}`, { state: "HALF_OPEN", version: 3, successes: 1 });
    const handler = middy(async () => ({ statusCode: 200 })).use(circuitBreaker(id));
    assert.deepEqual(await handler({}, {}), { statusCode: 200 });
    const got = await control("GET", `/circuits/${id}`);
    assert.deepEqual([got.state, got.version], ["CLOSED", 4]);
  });

  test("options are checked when the middleware is made", () => {
    assert.throws(() => circuitBreaker("x", { timeoutMs: 100 }), TypeError);
    assert.throws(() => circuitBreaker("x", { fallback: {} }), TypeError);
  });
});
