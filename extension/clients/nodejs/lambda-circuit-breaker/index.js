"use strict";
// Client for the circuit-breaker Lambda extension (Node.js built-ins only).
//
// The extension's layer puts this package in /opt/nodejs/node_modules, which
// Lambda's Node.js runtimes search, so a function requires or imports it as
// is. Guard the downstream call, not the whole handler, so that only the
// service's failures count:
//
//   const { wrap } = require("lambda-circuit-breaker"); // or: import { wrap } from "lambda-circuit-breaker";
//   const charge = wrap("payments", callPayments, { fallback: (err, order) => ({ queued: true }), isFailure: (err) => err.status !== 402 });
//
// It asks the extension over loopback whether a service may be called,
// reports the outcome of each call it makes (success and latency) and takes
// part in the fleet's HALF_OPEN probing, with the semantics of the Go client
// in extension/client: port from CIRCUIT_BREAKER_PORT (default 4243), token
// from AWS_SESSION_TOKEN (else AWS_CONTAINER_AUTHORIZATION_TOKEN, as the
// extension), failure policy from CIRCUIT_BREAKER_FAIL_MODE
// ("allow", the default, or "deny"; any other value denies); 250 ms per
// request, raised to twice CIRCUIT_BREAKER_MISS_TIMEOUT plus 50 ms when that
// is larger; a probe outcome's report waits up to 1.5 s. One keep-alive
// connection is reused across invocations; one the extension closed is
// replaced by a new connection, never by another idle one. When the extension
// is missing, slow or dead nothing is thrown into the handler: the failure
// policy decides, and a refused token or an absent extension is logged as a
// warning, at most once a minute. CIRCUIT_BREAKER_DISABLED=true turns the
// client off: every call allowed without asking, nothing reported.

const http = require("node:http");

const HEADER_TOKEN = "X-Circuit-Breaker-Token";
const DEFAULT_PORT = 4243;
/** Milliseconds one request may take (the Go client's DefaultTimeout). */
const DEFAULT_TIMEOUT_MS = 250;
/** Milliseconds the report of a probe outcome may take (ProbeReportTimeout). */
const PROBE_REPORT_TIMEOUT_MS = 1500;
const MAX_ANSWER_BYTES = 1 << 20;

const UNITS = { ns: 1e-6, us: 1e-3, "\u00b5s": 1e-3, "\u03bcs": 1e-3, ms: 1, s: 1000, m: 60000, h: 3600000 };
const PART = /([0-9]*(?:\.[0-9]*)?)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)/y;

/** Parses a Go duration such as "100ms" or "1m30s" into milliseconds; undefined if invalid. */
function parseDuration(value) {
  let s = String(value ?? "").trim();
  if (s === "0" || s === "+0" || s === "-0") return 0;
  let sign = 1;
  if (s[0] === "+" || s[0] === "-") {
    sign = s[0] === "-" ? -1 : 1;
    s = s.slice(1);
  }
  if (!s) return undefined;
  let total = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < s.length) {
    const m = PART.exec(s);
    if (!m || m[1] === "" || m[1] === ".") return undefined;
    total += Number(m[1]) * UNITS[m[2]];
  }
  return sign * total;
}

/** The Go client's timeout rule: 250 ms, or 2 × the miss timeout + 50 ms when larger. */
function defaultTimeoutMs(env = process.env) {
  const miss = parseDuration(env.CIRCUIT_BREAKER_MISS_TIMEOUT ?? "");
  return miss !== undefined && 2 * miss + 50 > DEFAULT_TIMEOUT_MS ? 2 * miss + 50 : DEFAULT_TIMEOUT_MS;
}

/**
 * The extension's rule for the token: AWS_SESSION_TOKEN when set, otherwise
 * AWS_CONTAINER_AUTHORIZATION_TOKEN (SnapStart, Managed Instances).
 */
function tokenFromEnv(env = process.env) {
  return env.AWS_SESSION_TOKEN || env.AWS_CONTAINER_AUTHORIZATION_TOKEN || "";
}

function failAllows(mode) {
  const m = String(mode ?? "").trim().toLowerCase();
  return m === "" || m === "allow";
}

/** The extension could not be reached in time or refused the request. */
class ExtensionError extends Error {
  constructor(message, status) {
    super(message);
    this.name = "ExtensionError";
    /** The HTTP status of an error answer; undefined when there was none. */
    this.status = status;
  }
}

/** Passed to the fallback (or thrown without one) when the circuit denies the call. */
class CircuitOpenError extends Error {
  constructor(circuit) {
    super("circuit breaker: circuit is open");
    this.name = "CircuitOpenError";
    /** The extension's answer; circuit.failMode is true when the failure policy denied. */
    this.circuit = circuit;
  }
}

class Client {
  /**
   * Every option defaults to the environment, like the Go client's New.
   * @param {{baseUrl?: string, token?: string, timeoutMs?: number, failMode?: string}} [opts]
   */
  constructor(opts = {}) {
    const env = process.env;
    let base = opts.baseUrl;
    if (base === undefined) {
      let port = DEFAULT_PORT;
      const p = Number.parseInt(env.CIRCUIT_BREAKER_PORT ?? "", 10);
      if (String(p) === String(env.CIRCUIT_BREAKER_PORT ?? "").trim() && p > 0 && p < 65536) port = p;
      base = `http://127.0.0.1:${port}`;
    }
    const u = new URL(base);
    if (u.protocol !== "http:") throw new TypeError(`baseUrl must be http://host:port, got ${base}`);
    this.host = u.hostname;
    this.port = Number(u.port || 80);
    this.prefix = u.pathname.replace(/\/+$/, "");
    this.token = opts.token ?? tokenFromEnv(env);
    this.timeoutMs = opts.timeoutMs ?? defaultTimeoutMs(env);
    this.failAllow = failAllows(opts.failMode ?? env.CIRCUIT_BREAKER_FAIL_MODE);
    /** True when the kill switch is on: every call allowed without asking, nothing reported. */
    this.disabled = opts.disabled ?? isDisabled(env);
    if (this.disabled) logDisabled();
    // One keep-alive connection, kept across invocations; idle sockets do
    // not hold the event loop open.
    this.agent = new http.Agent({ keepAlive: true, keepAliveMsecs: 60000, maxFreeSockets: 4 });
  }

  /**
   * Asks for one circuit (GET /circuits/{id}). A HALF_OPEN answer may make the
   * caller one of the fleet's probes (probe: true): make the call, then report
   * its outcome with the answer's probeToken. When the extension cannot
   * answer, the failure policy decides (failMode: true). Never rejects for the
   * extension.
   */
  async state(id) {
    try {
      return await this.stateOrThrow(id);
    } catch (err) {
      if (!(err instanceof ExtensionError)) throw err;
      return this.unavailable(id, err);
    }
  }

  /** Like state(), but rejects with ExtensionError instead of applying the failure policy. */
  stateOrThrow(id) {
    if (this.disabled) return Promise.resolve(disabledCircuit(id));
    return this.request("GET", `/circuits/${encodeURIComponent(id)}`, undefined, this.timeoutMs, 200);
  }

  /** Asks for several circuits at once (never hands out a probe); rejects with ExtensionError. */
  async states(...ids) {
    if (this.disabled) return ids.map(disabledCircuit);
    const out = await this.request("GET", `/circuits?ids=${encodeURIComponent(ids.join(","))}`, undefined, this.timeoutMs, 200);
    return out.circuits ?? [];
  }

  /**
   * May the function call the service now? Never rejects: the failure policy
   * decides when the extension cannot answer. Uses the batch lookup, so it
   * never takes a HALF_OPEN probe call: a HALF_OPEN circuit answers false.
   */
  async allowed(id) {
    try {
      const circuits = await this.states(id);
      return circuits.length === 1 ? circuits[0].allowed === true : this.failAllow;
    } catch (err) {
      if (!(err instanceof ExtensionError)) throw err;
      return this.failAllow;
    }
  }

  /**
   * Reports one call's outcome: success, latency in ms and, for a probe call,
   * the answer's probeToken. Resolves to {accepted, state?}, or null when it
   * could not be delivered. A probe's report waits until the extension applied
   * it to the table (at most 1.5 s).
   */
  async report(id, success, latencyMs, probeToken) {
    try {
      return await this.reportOrThrow(id, success, latencyMs, probeToken);
    } catch (err) {
      if (!(err instanceof ExtensionError)) throw err;
      return null;
    }
  }

  /** Like report(), but rejects with ExtensionError when the report fails. */
  reportOrThrow(id, success, latencyMs, probeToken) {
    if (this.disabled) return Promise.resolve(null);
    const outcome = { success: Boolean(success), latencyMs: Math.max(0, Math.min(3600000, Math.trunc(Number(latencyMs) || 0))) };
    let timeout = this.timeoutMs;
    if (probeToken) {
      outcome.probeToken = probeToken;
      timeout = Math.max(timeout, PROBE_REPORT_TIMEOUT_MS);
    }
    return this.request("POST", `/circuits/${encodeURIComponent(id)}/outcomes`, JSON.stringify(outcome), timeout, 202);
  }

  /** Resolves true when the extension answers /health. */
  async health() {
    try {
      await this.request("GET", "/health", undefined, this.timeoutMs, 200);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Asks, then runs fn(...args) or falls back, and reports the outcome: the
   * Go client's Do. When the circuit denies the call, fallback(CircuitOpenError,
   * ...args) runs; when fn throws, fallback(error, ...args). Without a fallback
   * the error is thrown. After fn, its outcome (success unless it threw, and its
   * latency) is reported, with the probe token when the call was the fleet's
   * probe; reports are best effort, and nothing is reported when the extension
   * did not answer the lookup. wrap() and execute() take options (which errors
   * count, a timeout, hooks).
   */
  async call(id, fn, fallback, ...args) {
    return new Breaker(() => this, id, fallbackOptions(fallback)).run(undefined, (a) => fn(...a), args);
  }

  /**
   * Returns an async function that runs fn(...args) through the breaker.
   * The third argument is the fallback, or the options ({fallback, isFailure,
   * timeoutMs, onStateChange, onFallback}); options may also come fourth.
   */
  wrap(id, fn, fallbackOrOptions, options) {
    return wrapWith(() => this, id, fn, fallbackOrOptions, options);
  }

  /**
   * Asks, then runs fn(signal) or falls back, and reports the outcome: the Go
   * client's Execute. With timeoutMs, signal aborts when the time is up, and
   * the call counts as a failure; pass signal on to the downstream call
   * (fetch(url, { signal })).
   */
  async execute(id, fn, options) {
    return executeWith(() => this, id, fn, options);
  }

  /** Closes the kept-alive connections. */
  close() {
    this.agent.destroy();
  }

  /** The answer for a guarded call: {circuit, answered, allowed}. */
  async lookup(id) {
    try {
      const circuit = await this.stateOrThrow(id);
      return { circuit, answered: true, allowed: circuit.allowed === true };
    } catch (err) {
      if (!(err instanceof ExtensionError)) throw err;
      return { circuit: this.unavailable(id, err, this.failAllow ? undefined : "OPEN"), answered: false, allowed: this.failAllow };
    }
  }

  unavailable(id, err, deniedState) {
    return {
      id,
      state: deniedState ?? (this.failAllow ? "CLOSED" : "OPEN"),
      allowed: deniedState ? false : this.failAllow,
      version: 0,
      updatedAt: null,
      stale: false,
      ageMs: -1,
      failMode: true,
      reason: `extension unavailable: ${err.message}`,
    };
  }

  async request(method, path, body, timeoutMs, want) {
    const deadline = performance.now() + timeoutMs;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.once(method, path, body, Math.max(1, deadline - performance.now()), want, attempt > 0);
      } catch (err) {
        // A kept-alive connection the extension closed while the sandbox was
        // frozen fails on first use. The other idle ones are as old: close
        // them, and retry once on a new connection, unless the request may
        // have reached the extension (a POST once written), where a retry
        // could count the outcome twice.
        if (err.staleSocket) this.dropIdle();
        if (attempt === 0 && err.staleSocket && (method === "GET" || !err.sent) && performance.now() < deadline) continue;
        if (err instanceof ExtensionError) throw err;
        // Anything else (a token with characters a header cannot carry, say)
        // is still the extension being unusable, never the handler's problem.
        const e = new ExtensionError(`circuit breaker extension: ${err.message}`);
        e.cause = err;
        throw e;
      }
    }
  }

  /** Closes the idle kept-alive sockets. */
  dropIdle() {
    for (const list of Object.values(this.agent.freeSockets)) {
      for (const socket of list ?? []) socket.destroy();
    }
  }

  once(method, path, body, timeoutMs, want, fresh) {
    return new Promise((resolve, reject) => {
      const headers = {};
      if (this.token) headers[HEADER_TOKEN] = this.token;
      if (body !== undefined) {
        headers["Content-Type"] = "application/json";
        headers["Content-Length"] = Buffer.byteLength(body);
      }
      let done = false;
      const finish = (fn, v) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        fn(v);
      };
      // fresh: a connection of its own, never one of the agent's idle sockets.
      const req = http.request({ host: this.host, port: this.port, method, path: this.prefix + path, headers, agent: fresh ? false : this.agent });
      let sent = false;
      req.on("finish", () => {
        sent = true;
      });
      const timer = setTimeout(() => {
        finish(reject, new ExtensionError(`circuit breaker extension: no answer within ${Math.round(timeoutMs)} ms`));
        req.destroy();
      }, timeoutMs);
      req.on("error", (err) => {
        if (err.code === "ECONNREFUSED") {
          warnMisconfigured(
            `extension absent: nothing listens on ${this.host}:${this.port}; is the layer attached, and CIRCUIT_BREAKER_PORT the same for the function and the extension?`,
            this.failAllow,
          );
        }
        const e = new ExtensionError(`circuit breaker extension: ${err.message || err.code}`);
        e.cause = err;
        e.staleSocket = req.reusedSocket && (err.code === "ECONNRESET" || err.code === "EPIPE");
        e.sent = sent;
        finish(reject, e);
      });
      req.on("response", (res) => {
        const chunks = [];
        let size = 0;
        res.on("data", (c) => {
          size += c.length;
          if (size > MAX_ANSWER_BYTES) {
            req.destroy();
            finish(reject, new ExtensionError("circuit breaker extension: answer too large"));
            return;
          }
          chunks.push(c);
        });
        res.on("error", (err) => finish(reject, new ExtensionError(`circuit breaker extension: read answer: ${err.message}`)));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          if (res.statusCode !== want) {
            if (res.statusCode === 401) {
              warnMisconfigured(
                "wrong token: the extension refused the X-Circuit-Breaker-Token header (401); the client sends AWS_SESSION_TOKEN, else AWS_CONTAINER_AUTHORIZATION_TOKEN",
                this.failAllow,
              );
            }
            let message = "";
            try {
              message = JSON.parse(text).message ?? "";
            } catch {}
            finish(reject, new ExtensionError(`circuit breaker extension: ${res.statusCode} ${message}`, res.statusCode));
            return;
          }
          try {
            finish(resolve, JSON.parse(text));
          } catch (err) {
            finish(reject, new ExtensionError(`circuit breaker extension: decode answer: ${err.message}`));
          }
        });
      });
      req.end(body);
    });
  }
}

/** Passed to the fallback (or thrown without one) when a call ran past its timeoutMs; a failure. */
class CallTimeoutError extends Error {
  constructor(id, timeoutMs) {
    super(`circuit breaker: call to ${id} timed out after ${timeoutMs} ms`);
    this.name = "CallTimeoutError";
    this.serviceId = id;
    this.timeoutMs = timeoutMs;
  }
}

/** The kill switch: CIRCUIT_BREAKER_DISABLED=true. */
function isDisabled(env = process.env) {
  return String(env.CIRCUIT_BREAKER_DISABLED ?? "").trim().toLowerCase() === "true";
}

/** Least milliseconds between two warnings of a process about a misconfiguration. */
const WARN_INTERVAL_MS = 60000;
const warnings = { disabled: false, lastMisconfig: undefined };

function logDisabled() {
  if (warnings.disabled) return;
  warnings.disabled = true;
  console.warn("circuit breaker disabled: CIRCUIT_BREAKER_DISABLED=true; every call is allowed without asking the extension, and no outcome is reported");
}

/** Logs a refused token or an absent extension: the first time, then at most once per WARN_INTERVAL_MS. */
function warnMisconfigured(cause, failAllow) {
  const now = performance.now();
  if (warnings.lastMisconfig !== undefined && now - warnings.lastMisconfig < WARN_INTERVAL_MS) return;
  warnings.lastMisconfig = now;
  const policy = failAllow ? "allow" : "deny";
  console.warn(`circuit breaker misconfigured: ${cause}; the failure policy (${policy}) decides every call instead of the circuit`);
}

function debugEnabled() {
  return String(process.env.CIRCUIT_BREAKER_LOG_LEVEL ?? "").trim().toLowerCase() === "debug";
}

function disabledCircuit(id) {
  return { id, state: "CLOSED", allowed: true, version: 0, updatedAt: null, stale: false, ageMs: -1, reason: "circuit breaker disabled (CIRCUIT_BREAKER_DISABLED=true)" };
}

const OPTION_NAMES = new Set(["fallback", "isFailure", "timeoutMs", "onStateChange", "onFallback"]);

/** Checks options when a call is wrapped, so that a mistake shows at once, not during an outage. */
function checkOptions(opts, allowed = OPTION_NAMES) {
  if (opts === null || typeof opts !== "object") throw new TypeError(`circuit breaker: options must be an object, got ${typeof opts}`);
  for (const key of Object.keys(opts)) {
    if (!allowed.has(key)) throw new TypeError(`circuit breaker: unknown option ${key} (known: ${[...allowed].join(", ")})`);
  }
  for (const key of ["fallback", "isFailure", "onStateChange", "onFallback"]) {
    if (opts[key] !== undefined && typeof opts[key] !== "function") {
      throw new TypeError(`circuit breaker: ${key} must be a function, got ${typeof opts[key]}`);
    }
  }
  if (opts.timeoutMs !== undefined && !(Number.isFinite(opts.timeoutMs) && opts.timeoutMs > 0)) {
    throw new TypeError(`circuit breaker: timeoutMs must be a positive number of milliseconds, got ${opts.timeoutMs}`);
  }
  return opts;
}

function fallbackOptions(fallback) {
  if (fallback !== undefined && fallback !== null && typeof fallback !== "function") {
    throw new TypeError(`circuit breaker: fallback must be a function, got ${typeof fallback}`);
  }
  return fallback ? { fallback } : {};
}

function normalize(fallbackOrOptions, options) {
  if (typeof fallbackOrOptions === "function") return checkOptions({ ...(options ?? {}), fallback: fallbackOrOptions });
  if (fallbackOrOptions === undefined || fallbackOrOptions === null) return checkOptions({ ...(options ?? {}) });
  if (typeof fallbackOrOptions === "object") return checkOptions({ ...fallbackOrOptions, ...(options ?? {}) });
  throw new TypeError(`circuit breaker: the third argument must be a fallback function or options, got ${typeof fallbackOrOptions}`);
}

/**
 * One guarded service for one wrapped function (or middleware): its options,
 * and the state it saw last. Internal; shared with the Middy middleware.
 */
class Breaker {
  constructor(getClient, id, opts) {
    this.client = getClient;
    this.id = id;
    this.fallback = opts.fallback;
    this.isFailure = opts.isFailure;
    this.timeoutMs = opts.timeoutMs;
    this.onStateChange = opts.onStateChange;
    this.onFallback = opts.onFallback;
    this.lastState = "CLOSED"; // what a circuit never seen reads as
  }

  /** Does the error count as a failure of the service? A timeout always does. */
  counts(err) {
    if (!this.isFailure || err instanceof CallTimeoutError) return true;
    try {
      return Boolean(this.isFailure(err));
    } catch (e) {
      console.error(`circuit ${this.id}: isFailure threw; the error counts:`, e);
      return true;
    }
  }

  /** Logs the answer at debug level and calls onStateChange when the state changed. */
  seen(circuit, answered) {
    if (debugEnabled()) {
      console.debug(`circuit ${this.id}: state=${circuit.state} allowed=${circuit.allowed} failMode=${Boolean(circuit.failMode)} reason=${circuit.reason ?? ""}`);
    }
    if (!answered || circuit.failMode) return;
    const old = this.lastState;
    this.lastState = circuit.state;
    if (old !== circuit.state && this.onStateChange) {
      try {
        this.onStateChange(this.id, old, circuit.state);
      } catch (e) {
        console.error(`circuit ${this.id}: onStateChange threw:`, e);
      }
    }
  }

  /** Runs the fallback for err (after onFallback). */
  async takeFallback(thisArg, err, args) {
    if (debugEnabled()) console.debug(`circuit ${this.id}: fallback for ${err?.name}: ${err?.message}`);
    if (this.onFallback) {
      try {
        this.onFallback(this.id, err);
      } catch (e) {
        console.error(`circuit ${this.id}: onFallback threw:`, e);
      }
    }
    return this.fallback.call(thisArg, err, ...args);
  }

  /** Asks, runs invoke(args, signal) or the fallback, reports the outcome. */
  async run(thisArg, invoke, args) {
    const client = this.client();
    if (client.disabled) return invoke(args, new AbortController().signal);
    const { circuit, answered, allowed } = await client.lookup(this.id);
    this.seen(circuit, answered);
    if (!allowed) {
      const err = new CircuitOpenError(circuit);
      if (!this.fallback) throw err;
      return this.takeFallback(thisArg, err, args);
    }
    const start = performance.now();
    let result;
    try {
      result = await this.invoke(invoke, args);
    } catch (err) {
      if (!this.counts(err)) throw err;
      const latency = err instanceof CallTimeoutError ? this.timeoutMs : performance.now() - start;
      if (answered) await client.report(this.id, false, latency, circuit.probeToken);
      if (!this.fallback) throw err;
      return this.takeFallback(thisArg, err, args);
    }
    if (answered) await client.report(this.id, true, performance.now() - start, circuit.probeToken);
    return result;
  }

  /** invoke(args, signal), bounded by timeoutMs when set. */
  async invoke(invoke, args) {
    const controller = new AbortController();
    const call = Promise.resolve().then(() => invoke(args, controller.signal));
    if (!this.timeoutMs) return call;
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => {
        const err = new CallTimeoutError(this.id, this.timeoutMs);
        controller.abort(err);
        reject(err);
      }, this.timeoutMs);
    });
    call.catch(() => {}); // an abandoned call's late error is no unhandled rejection
    try {
      return await Promise.race([call, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

function wrapWith(getClient, id, fn, fallbackOrOptions, options) {
  if (typeof fn !== "function") throw new TypeError(`circuit breaker: wrap needs a function, got ${typeof fn}`);
  const breaker = new Breaker(getClient, id, normalize(fallbackOrOptions, options));
  return async function wrapped(...args) {
    return breaker.run(this, (a) => fn.apply(this, a), args);
  };
}

async function executeWith(getClient, id, fn, options) {
  if (typeof fn !== "function") throw new TypeError(`circuit breaker: execute needs a function, got ${typeof fn}`);
  return new Breaker(getClient, id, checkOptions({ ...(options ?? {}) })).run(undefined, (_, signal) => fn(signal), []);
}

let sharedClient;

/** The module's shared Client, configured from the environment on first use. */
function defaultClient() {
  sharedClient ??= new Client();
  return sharedClient;
}

/** defaultClient().state(id). */
function state(id) {
  return defaultClient().state(id);
}

/** defaultClient().states(...ids). */
function states(...ids) {
  return defaultClient().states(...ids);
}

/** defaultClient().allowed(id). */
function allowed(id) {
  return defaultClient().allowed(id);
}

/** defaultClient().report(...). */
function report(id, success, latencyMs, probeToken) {
  return defaultClient().report(id, success, latencyMs, probeToken);
}

/** defaultClient().call(...). */
async function call(id, fn, fallback, ...args) {
  return defaultClient().call(id, fn, fallback, ...args);
}

/** Like Client.wrap, with the shared client, created on the first call. */
function wrap(id, fn, fallbackOrOptions, options) {
  return wrapWith(defaultClient, id, fn, fallbackOrOptions, options);
}

/** Like Client.execute, with the shared client. */
async function execute(id, fn, options) {
  return executeWith(defaultClient, id, fn, options);
}

// Plain names only, so that Node's ES module loader finds every named export
// (import { wrap } from "lambda-circuit-breaker").
module.exports = {
  Client,
  CircuitOpenError,
  CallTimeoutError,
  ExtensionError,
  HEADER_TOKEN,
  DEFAULT_TIMEOUT_MS,
  PROBE_REPORT_TIMEOUT_MS,
  WARN_INTERVAL_MS,
  parseDuration,
  defaultTimeoutMs,
  tokenFromEnv,
  defaultClient,
  state,
  states,
  allowed,
  report,
  call,
  wrap,
  execute,
  Breaker,
  checkOptions,
  warnings,
};
module.exports.default = module.exports;
