"use strict";
// The business function of the emulator test.
const cb = require("lambda-circuit-breaker");

exports.handler = cb.wrap(
  "payments",
  async (event) => {
    if (event.fail) throw new Error("downstream answered 503");
    return { result: "called", module: require.resolve("lambda-circuit-breaker") };
  },
  (err) => ({ result: "fallback", state: err.circuit ? err.circuit.state : null, error: err.message }),
);
