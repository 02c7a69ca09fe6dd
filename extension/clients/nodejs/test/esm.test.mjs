// An ES module handler loads the client with createRequire: ES module
// resolution does not read NODE_PATH, where Lambda lists the layer's
// nodejs/node_modules; require does.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";

const cb = createRequire(import.meta.url)("lambda-circuit-breaker");

test("an ES module loads the client through createRequire", async () => {
  assert.equal(typeof cb.wrap, "function");
  const handler = cb.wrap("esm-check", async (event) => event.n * 2, () => -1);
  assert.equal(await handler({ n: 21 }), 42);
  assert.equal(await cb.defaultClient().health(), true);
});
