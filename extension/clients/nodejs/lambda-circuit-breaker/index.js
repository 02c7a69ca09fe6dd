"use strict";
// Client for the circuit-breaker Lambda extension (Node.js built-ins only).
//
// The extension's layer puts this package in /opt/nodejs/node_modules, which
// Lambda's Node.js runtimes search, so a function requires it as is:
//
//   const cb = require("lambda-circuit-breaker");
//   exports.handler = cb.wrap("payments", callPayments, (err, event) => ({ statusCode: 503 }));
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
// replaced by a new connection, never by another idle one. When the extension is missing,
// slow or dead nothing is thrown into the handler: the failure policy decides.

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
    return this.request("GET", `/circuits/${encodeURIComponent(id)}`, undefined, this.timeoutMs, 200);
  }

  /** Asks for several circuits at once (never hands out a probe); rejects with ExtensionError. */
  async states(...ids) {
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
   * did not answer the lookup.
   */
  async call(id, fn, fallback, ...args) {
    let circuit;
    let answered = true;
    try {
      circuit = await this.stateOrThrow(id);
    } catch (err) {
      if (!(err instanceof ExtensionError)) throw err;
      circuit = this.unavailable(id, err, "OPEN");
      answered = false;
    }
    const allowed = answered ? circuit.allowed === true : this.failAllow;
    if (!allowed) {
      const err = new CircuitOpenError(circuit);
      if (!fallback) throw err;
      return fallback(err, ...args);
    }
    const start = performance.now();
    let result;
    try {
      result = await fn(...args);
    } catch (err) {
      if (answered) await this.report(id, false, performance.now() - start, circuit.probeToken);
      if (!fallback) throw err;
      return fallback(err, ...args);
    }
    if (answered) await this.report(id, true, performance.now() - start, circuit.probeToken);
    return result;
  }

  /** Returns an async function that runs fn through call(id, fn, fallback, ...args). */
  wrap(id, fn, fallback) {
    const client = this;
    return async function wrapped(...args) {
      return client.call(id, (...a) => fn.apply(this, a), fallback && ((err, ...a) => fallback.call(this, err, ...a)), ...args);
    };
  }

  /** Closes the kept-alive connections. */
  close() {
    this.agent.destroy();
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

let defaultClient;

/** The module's shared Client, configured from the environment on first use. */
function getDefaultClient() {
  defaultClient ??= new Client();
  return defaultClient;
}

module.exports = {
  Client,
  CircuitOpenError,
  ExtensionError,
  HEADER_TOKEN,
  DEFAULT_TIMEOUT_MS,
  PROBE_REPORT_TIMEOUT_MS,
  parseDuration,
  defaultTimeoutMs,
  tokenFromEnv,
  defaultClient: getDefaultClient,
  state: (id) => getDefaultClient().state(id),
  states: (...ids) => getDefaultClient().states(...ids),
  allowed: (id) => getDefaultClient().allowed(id),
  report: (id, success, latencyMs, probeToken) => getDefaultClient().report(id, success, latencyMs, probeToken),
  call: (id, fn, fallback, ...args) => getDefaultClient().call(id, fn, fallback, ...args),
  wrap: (id, fn, fallback) => {
    return async function wrapped(...args) {
      return getDefaultClient().wrap(id, fn, fallback).apply(this, args);
    };
  },
};
