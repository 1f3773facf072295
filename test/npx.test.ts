/** `npx vgg`, as README says to run it after `npm ci`: it works and npm prints no warning beside it. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { ROOT } from "./helpers.js";

test("npx vgg list: the zoo, and no npm warning (no unknown project config)", () => {
  const r = spawnSync("npx", ["--no-install", "vgg", "list"], { cwd: ROOT, encoding: "utf8", timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^vgg16_bn\s+D/m);
  assert.doesNotMatch(r.stderr, /npm warn/i);
  assert.equal(r.stderr, "");
});
