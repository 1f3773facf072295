/** The direction of imports (ARCHITECTURE.md, scripts/check-imports.mjs): down the layers, never up, no sideways cycle. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";
import { pathToFileURL } from "node:url";
import { ROOT } from "./helpers.js";

interface Edge {
  from: string;
  to: string;
  fromUnit: string;
  toUnit: string;
}
interface Checker {
  LAYERS: string[][];
  checkImports(root: string): string[];
  importsOf(text: string): string[];
  sourceFiles(root: string): string[];
  unitOf(file: string): string;
  violations(edges: Edge[], units: Set<string>): string[];
}

const checker = (): Promise<Checker> => import(pathToFileURL(join(ROOT, "scripts", "check-imports.mjs")).href);

test("every import in src/ follows the layers of ARCHITECTURE.md", async () => {
  const c = await checker();
  assert.deepEqual(c.checkImports(ROOT), []);
  // Every folder of src/ is placed in a layer, and the table names no folder that is gone.
  const units = new Set(c.sourceFiles(ROOT).map(c.unitOf));
  assert.deepEqual([...units].sort(), c.LAYERS.flat().sort());
});

test("the import check reports an import up the layers, a sideways cycle and an unplaced folder", async () => {
  const c = await checker();
  const edge = (from: string, to: string): Edge => ({ from, to, fromUnit: c.unitOf(from), toUnit: c.unitOf(to) });
  const up = c.violations([edge("ops/conv.ts", "graph/infer.ts")], new Set(["ops", "graph"]));
  assert.deepEqual(up, ["src/ops/conv.ts imports src/graph/infer.ts: ops (layer 2) may not import graph (layer 3)"]);
  const cycle = c.violations([edge("predict/a.ts", "train/b.ts"), edge("train/c.ts", "predict/d.ts")], new Set(["predict", "train"]));
  assert.equal(cycle.length, 1);
  assert.match(cycle[0], /^a cycle between (predict, train|train, predict): /);
  assert.deepEqual(c.violations([], new Set(["somewhere"])), [
    "src/somewhere has no layer in scripts/check-imports.mjs (LAYERS): place it",
  ]);
  // Down and sideways without a cycle are fine.
  assert.deepEqual(
    c.violations([edge("train/a.ts", "eval/b.ts"), edge("graph/c.ts", "ops/d.ts")], new Set(["train", "eval", "graph", "ops"])),
    [],
  );
});

test("the import check reads static, type-only, re-export, side-effect and dynamic imports", async () => {
  const c = await checker();
  const text = [
    'import { a } from "../x/a.js";',
    'import type { B } from "./b.js";',
    'export { c } from "../y/c.js";',
    'import "../z/side.js";',
    'const d = await import("../w/d.js");',
    'type E = import("../v/e.js").E;',
    'import { readFileSync } from "node:fs";',
  ].join("\n");
  assert.deepEqual(c.importsOf(text), ["../x/a.js", "./b.js", "../y/c.js", "../z/side.js", "../w/d.js", "../v/e.js"]);
});

test("node scripts/check-imports.mjs passes on this checkout", () => {
  const r = spawnSync(process.execPath, [join(ROOT, "scripts", "check-imports.mjs")], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /every import follows the layers/);
});
