// An ES module handler that relies on the layer alone: ES module resolution
// does not read NODE_PATH, where Lambda lists the layer's
// nodejs/node_modules, so it imports the client by path, or loads it with
// createRequire; both give the named exports.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

const layerModules = (process.env.NODE_PATH ?? "").split(path.delimiter)[0];

test("an ES module imports the client from the layer by path, with named exports", async () => {
  const url = pathToFileURL(path.join(layerModules, "lambda-circuit-breaker", "index.js")).href;
  const { wrap, defaultClient } = await import(url);
  const { circuitBreaker } = await import(pathToFileURL(path.join(layerModules, "lambda-circuit-breaker", "middy.js")).href);
  assert.equal(typeof circuitBreaker, "function");
  const handler = wrap("esm-check", async (event) => event.n * 2, () => -1);
  assert.equal(await handler({ n: 21 }), 42);
  assert.equal(await defaultClient().health(), true);
});

test("an ES module loads the client through createRequire", async () => {
  const cb = createRequire(import.meta.url)("lambda-circuit-breaker");
  assert.equal(typeof cb.wrap, "function");
  const handler = cb.wrap("esm-check", async (event) => event.n * 2, () => -1);
  assert.equal(await handler({ n: 21 }), 42);
});
