// Package circuitbreaker provides CircuitBreakedService, an AWS CDK v2
// construct that provisions a circuit breaker for AWS Lambda:
//
//   - a DynamoDB table with one circuit per monitored service;
//   - a Lambda layer holding the circuit-breaker extension, which answers
//     "may I call service X?" on 127.0.0.1 from an in-memory cache, and
//     its Python and Node.js clients (python/, nodejs/node_modules/);
//   - an updater function, run by one EventBridge rule per monitored
//     service, that health-checks the service and moves its circuit;
//   - optionally a mock REST API to monitor while trying the pattern.
//
// Errors: NewCircuitBreakedService and every method panic on invalid
// input, with one message that starts with "circuitbreaker:" and names
// every problem, as CDK constructs do in every language; `cdk synth` then
// stops with that message. No method returns an error.
//
// Off-switches: a zero value always means the default; a feature or limit
// is turned off by a Disable... bool, never by a negative or zero number.
//
// The Go programs are compiled at synth time with the local Go toolchain
// (no Docker), by import path, so the construct works when imported from
// another Go module.
package circuitbreaker
