// Type declarations for the circuit-breaker extension's Middy middleware.
import type { Client } from "./index.js";

/** The part of a Middy request the middleware uses. */
export interface MiddyRequest<TEvent = any, TResult = any> {
  event: TEvent;
  context: unknown;
  response: TResult | undefined;
  error: unknown;
}

/** Options of the middleware: those of wrap(), without timeoutMs (Middy's own timeoutEarlyInMillis applies). */
export interface MiddlewareOptions<TEvent = any, TResult = any> {
  /** The answer when the circuit denies the call or the handler fails. */
  fallback?: (err: unknown, request: MiddyRequest<TEvent, TResult>) => TResult | Promise<TResult>;
  /** Does the error count as a failure (default: every error)? If not, it is left to Middy and nothing is reported. */
  isFailure?: (err: unknown) => boolean;
  onStateChange?: (id: string, from: string, to: string) => void;
  onFallback?: (id: string, err: unknown) => void;
  /** Default: the shared client, configured from the environment. */
  client?: Client;
}

/** A Middy middleware object. */
export interface CircuitBreakerMiddleware<TEvent = any, TResult = any> {
  before: (request: MiddyRequest<TEvent, TResult>) => Promise<TResult | undefined>;
  after: (request: MiddyRequest<TEvent, TResult>) => Promise<void>;
  onError: (request: MiddyRequest<TEvent, TResult>) => Promise<void>;
}

/** A middleware that guards the handler's calls to the service id. */
export function circuitBreaker<TEvent = any, TResult = any>(id: string, options?: MiddlewareOptions<TEvent, TResult>): CircuitBreakerMiddleware<TEvent, TResult>;
export default circuitBreaker;
