"use strict";
// Middy middleware for the circuit-breaker Lambda extension: the semantics of
// wrap(), for a handler built with @middy/core (>= 4.0, where a before
// middleware returns early by returning a value).
//
//   import middy from "@middy/core";
//   import { circuitBreaker } from "lambda-circuit-breaker/middy";
//   export const handler = middy(callPayments).use(circuitBreaker("payments", {
//     fallback: (err, request) => ({ statusCode: 503 }),
//     isFailure: (err) => !(err instanceof ValidationError),
//   }));
//
// before asks the extension; a denied call returns the fallback's answer
// without running the handler. after reports a success; onError reports a
// failure and answers with the fallback, unless isFailure says the error does
// not count: it is then left to Middy (thrown) and nothing is reported. Middy
// wraps the whole handler, so validate input in a middleware placed before
// this one, or pass isFailure. A timeout is Middy's own (timeoutEarlyInMillis):
// its TimeoutError counts as a failure like any error.

const { Breaker, CircuitOpenError, checkOptions, defaultClient } = require("./index.js");

const MIDDY_OPTIONS = new Set(["fallback", "isFailure", "onStateChange", "onFallback", "client"]);

/**
 * Returns a Middy middleware guarding the handler's calls to the service id.
 * Options: fallback(err, request), isFailure(err), onStateChange(id, from, to),
 * onFallback(id, err), client (default: the shared client).
 */
function circuitBreaker(id, options = {}) {
  const { client, ...opts } = checkOptions({ ...options }, MIDDY_OPTIONS);
  const breaker = new Breaker(client ? () => client : defaultClient, id, opts);
  const calls = new WeakMap(); // request → {client, circuit, answered, start}

  const before = async (request) => {
    const c = breaker.client();
    if (c.disabled) return undefined;
    const { circuit, answered, allowed } = await c.lookup(id);
    breaker.seen(circuit, answered);
    if (!allowed) {
      const err = new CircuitOpenError(circuit);
      if (!breaker.fallback) throw err;
      request.earlyResponse = await breaker.takeFallback(undefined, err, [request]);
      return request.earlyResponse;
    }
    calls.set(request, { client: c, circuit, answered, start: performance.now() });
    return undefined;
  };

  const after = async (request) => {
    const call = calls.get(request);
    if (!call) return;
    calls.delete(request);
    if (call.answered) await call.client.report(id, true, performance.now() - call.start, call.circuit.probeToken);
  };

  const onError = async (request) => {
    const call = calls.get(request);
    if (!call) return; // refused, disabled, or failed before this middleware
    calls.delete(request);
    const err = request.error;
    if (!breaker.counts(err)) return;
    if (call.answered) await call.client.report(id, false, performance.now() - call.start, call.circuit.probeToken);
    if (!breaker.fallback) return;
    request.response = await breaker.takeFallback(undefined, err, [request]);
  };

  return { before, after, onError };
}

// The function itself, for a default import in ES modules; and by name.
module.exports = circuitBreaker;
module.exports.circuitBreaker = circuitBreaker;
module.exports.default = circuitBreaker;
