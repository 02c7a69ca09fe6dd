// Type declarations for the circuit-breaker extension's Node.js client.

/** The extension's answer for one circuit (GET /circuits/{id}). */
export interface Circuit {
  /** Service ID. */
  id: string;
  /** Effective state, with an active operator override applied. */
  state: "CLOSED" | "OPEN" | "HALF_OPEN";
  /** May the caller call the service now: the field to act on. */
  allowed: boolean;
  /** Transition counter; 0 for a circuit never written. */
  version: number;
  /** When the circuit last changed state (RFC 3339); null if never. */
  updatedAt: string | null;
  /** True when the cached value could not be refreshed in time. */
  stale: boolean;
  /** Milliseconds since the value was read from the table; -1 if never. */
  ageMs: number;
  /** True when the failure policy decided `allowed`, not the state. */
  failMode?: boolean;
  /** Why the last transition happened, or why the failure policy decided. */
  reason?: string;
  /** Active operator override. */
  override?: "FORCED_OPEN" | "FORCED_CLOSED";
  /** When the active override expires. */
  overrideUntil?: string;
  /** When an OPEN circuit may move to HALF_OPEN. */
  retryAt?: string;
  /** True when this caller holds one of the fleet's HALF_OPEN probe leases. */
  probe?: boolean;
  /** Identifies the probe lease: pass it to report(). */
  probeToken?: string;
}

/** The answer to a report (POST /circuits/{id}/outcomes). */
export interface Accepted {
  /** Number of outcomes taken. */
  accepted: number;
  /** The circuit's state after a probe outcome was applied. */
  state?: "CLOSED" | "OPEN" | "HALF_OPEN";
}

export interface ClientOptions {
  /** The extension's address (default: http://127.0.0.1:$CIRCUIT_BREAKER_PORT, port 4243). */
  baseUrl?: string;
  /** The token (default: tokenFromEnv(): AWS_SESSION_TOKEN, else AWS_CONTAINER_AUTHORIZATION_TOKEN). */
  token?: string;
  /** Per-request timeout (default: 250 ms, or 2 × CIRCUIT_BREAKER_MISS_TIMEOUT + 50 ms when larger). */
  timeoutMs?: number;
  /** "allow" or "deny" (default: CIRCUIT_BREAKER_FAIL_MODE, else allow); any other value denies. */
  failMode?: string;
  /** The kill switch: allow every call without asking, report nothing (default: CIRCUIT_BREAKER_DISABLED=true). */
  disabled?: boolean;
}

/** The extension could not be reached in time or refused the request. */
export class ExtensionError extends Error {
  /** HTTP status of an error answer; undefined when there was none. */
  status?: number;
}

/** Passed to the fallback (or thrown without one) when the circuit denies the call. */
export class CircuitOpenError extends Error {
  constructor(circuit: Circuit);
  /** The extension's answer; `failMode` is true when the failure policy denied. */
  circuit: Circuit;
}

/** The part of an AbortSignal used here, for projects without the DOM or Node.js types. */
export interface AbortSignalLike {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: "abort", listener: () => void): void;
}
/** The global AbortSignal when the project's types declare one (Node.js, DOM), else AbortSignalLike. */
export type Signal = typeof globalThis extends { AbortSignal: { prototype: infer S } } ? S : AbortSignalLike;

/** Passed to the fallback (or thrown without one) when a call ran past its timeoutMs; it counts as a failure. */
export class CallTimeoutError extends Error {
  constructor(serviceId: string, timeoutMs: number);
  readonly serviceId: string;
  readonly timeoutMs: number;
}

/** Called instead of the function: with a CircuitOpenError, a CallTimeoutError, or the function's error. */
export type Fallback<A extends unknown[], R> = (err: unknown, ...args: A) => R | Promise<R>;

/** Options of a guarded call (wrap, execute). */
export interface CallOptions<A extends unknown[], R> {
  /** Runs instead of the function when the circuit denies the call, or when the call fails. */
  fallback?: Fallback<A, R>;
  /**
   * Does the error count as a failure of the service (default: every error)? An error for
   * which it returns false is thrown unchanged: no fallback, nothing reported.
   */
  isFailure?: (err: unknown) => boolean;
  /**
   * Bounds the call: past it the call counts as a failure (latency: timeoutMs), and the
   * fallback gets a CallTimeoutError. execute() passes an AbortSignal that aborts then.
   */
  timeoutMs?: number;
  /** When the state this wrapper sees differs from the one it saw last (first: CLOSED). */
  onStateChange?: (id: string, from: string, to: string) => void;
  /** Before the fallback runs. */
  onFallback?: (id: string, err: unknown) => void;
}

export class Client {
  constructor(opts?: ClientOptions);
  readonly token: string;
  readonly timeoutMs: number;
  readonly failAllow: boolean;
  readonly disabled: boolean;
  /** One circuit; may hand out a probe. Never rejects for the extension: the failure policy decides. */
  state(id: string): Promise<Circuit>;
  /** Like state(), but rejects with ExtensionError instead of applying the failure policy. */
  stateOrThrow(id: string): Promise<Circuit>;
  /** Several circuits, in order; never hands out a probe. Rejects with ExtensionError. */
  states(...ids: string[]): Promise<Circuit[]>;
  /** May the service be called now? Never takes a probe; never rejects for the extension. */
  allowed(id: string): Promise<boolean>;
  /** Reports one call's outcome; null when it could not be delivered. */
  report(id: string, success: boolean, latencyMs: number, probeToken?: string): Promise<Accepted | null>;
  /** Like report(), but rejects with ExtensionError. */
  reportOrThrow(id: string, success: boolean, latencyMs: number, probeToken?: string): Promise<Accepted>;
  /** True when the extension answers /health. */
  health(): Promise<boolean>;
  /** Asks, runs fn or the fallback, reports the outcome (the Go client's Do). */
  call<A extends unknown[], R>(id: string, fn: (...args: A) => R | Promise<R>, fallback?: Fallback<A, R>, ...args: A): Promise<R>;
  /** Returns fn guarded: the third argument is the fallback or the options. */
  wrap<A extends unknown[], R>(id: string, fn: (...args: A) => R | Promise<R>, fallback?: Fallback<A, R> | CallOptions<A, R>, options?: CallOptions<A, R>): (...args: A) => Promise<R>;
  /** Asks, runs fn(signal) or the fallback, reports the outcome (the Go client's Execute). */
  execute<R>(id: string, fn: (signal: Signal) => R | Promise<R>, options?: CallOptions<[], R>): Promise<R>;
  /** Closes the kept-alive connections. */
  close(): void;
}

export const HEADER_TOKEN: "X-Circuit-Breaker-Token";
export const DEFAULT_TIMEOUT_MS: number;
export const PROBE_REPORT_TIMEOUT_MS: number;
/** Parses a Go duration ("100ms", "1m30s") into milliseconds; undefined if invalid. */
export function parseDuration(value: string): number | undefined;
/** The Go client's timeout rule applied to env (default: process.env). */
export function defaultTimeoutMs(env?: Record<string, string | undefined>): number;
/** The extension's token rule: AWS_SESSION_TOKEN when set, else AWS_CONTAINER_AUTHORIZATION_TOKEN. */
export function tokenFromEnv(env?: Record<string, string | undefined>): string;
/** The shared Client, configured from the environment on first use. */
export function defaultClient(): Client;
export function state(id: string): Promise<Circuit>;
export function states(...ids: string[]): Promise<Circuit[]>;
export function allowed(id: string): Promise<boolean>;
export function report(id: string, success: boolean, latencyMs: number, probeToken?: string): Promise<Accepted | null>;
export function call<A extends unknown[], R>(id: string, fn: (...args: A) => R | Promise<R>, fallback?: Fallback<A, R>, ...args: A): Promise<R>;
export function wrap<A extends unknown[], R>(id: string, fn: (...args: A) => R | Promise<R>, fallback?: Fallback<A, R> | CallOptions<A, R>, options?: CallOptions<A, R>): (...args: A) => Promise<R>;
export function execute<R>(id: string, fn: (signal: Signal) => R | Promise<R>, options?: CallOptions<[], R>): Promise<R>;
/** Least milliseconds between two warnings about a refused token or an absent extension. */
export const WARN_INTERVAL_MS: number;

declare const client: {
  Client: typeof Client;
  CircuitOpenError: typeof CircuitOpenError;
  CallTimeoutError: typeof CallTimeoutError;
  ExtensionError: typeof ExtensionError;
  HEADER_TOKEN: typeof HEADER_TOKEN;
  DEFAULT_TIMEOUT_MS: number;
  PROBE_REPORT_TIMEOUT_MS: number;
  WARN_INTERVAL_MS: number;
  parseDuration: typeof parseDuration;
  defaultTimeoutMs: typeof defaultTimeoutMs;
  tokenFromEnv: typeof tokenFromEnv;
  defaultClient: typeof defaultClient;
  state: typeof state;
  states: typeof states;
  allowed: typeof allowed;
  report: typeof report;
  call: typeof call;
  wrap: typeof wrap;
  execute: typeof execute;
};
/** The whole module, for a default import. */
export default client;
