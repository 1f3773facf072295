#!/usr/bin/env node
/**
 * The direction of imports in src/ (ARCHITECTURE.md): every module belongs to a layer, and imports go down the
 * layers or sideways, never up. Sideways imports (between folders of one layer) must not form a cycle.
 * `node scripts/check-imports.mjs` prints each import against the direction and exits 1 if there is any;
 * test/imports.test.ts runs the same check.
 */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

/** Layer of each folder (or top-level file) of src/, lowest first. */
export const LAYERS = [
  ["errors.ts", "tensor.ts", "random.ts"],
  ["io", "onnx", "runtime"],
  ["ops", "zoo"],
  ["graph", "data", "weights"],
  ["train", "eval", "predict", "serve", "reproduce", "features"],
  ["api"],
  ["cli", "index.ts"],
];

const RANK = new Map(LAYERS.flatMap((names, rank) => names.map((n) => [n, rank])));

/** The unit a src/ file belongs to: its top folder, or the file itself at the top. */
export function unitOf(file) {
  return file.split("/")[0];
}

const SPEC = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)["'](\.{1,2}\/[^"']+)["']/gm;

/** The relative imports of a source text (static, dynamic and `import("...")` types), as written. */
export function importsOf(text) {
  return [...text.matchAll(SPEC)].map((m) => m[1]);
}

/** Every `src/` .ts file under `root`, as paths relative to src/ with forward slashes. */
export function sourceFiles(root) {
  const src = join(root, "src");
  const out = [];
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith(".ts") && !e.name.endsWith(".d.ts")) out.push(relative(src, p).split(sep).join("/"));
    }
  };
  walk(src);
  return out.sort();
}

/** The import edges between units: { from, to, fromUnit, toUnit } for files relative to src/. */
export function edgesOf(files, read) {
  const edges = [];
  for (const file of files) {
    for (const spec of importsOf(read(file))) {
      const target = normalize(join(dirname(file), spec))
        .split(sep)
        .join("/")
        .replace(/\.js$/, ".ts");
      if (target.startsWith("..")) continue; // outside src/ (package.json and the like)
      const fromUnit = unitOf(file);
      const toUnit = unitOf(target);
      if (fromUnit !== toUnit) edges.push({ from: file, to: target, fromUnit, toUnit });
    }
  }
  return edges;
}

/** The problems: units with no layer, imports up the layers, and cycles between units of one layer. */
export function violations(edges, units) {
  const out = [];
  for (const u of units) if (!RANK.has(u)) out.push(`src/${u} has no layer in scripts/check-imports.mjs (LAYERS): place it`);
  for (const e of edges) {
    const a = RANK.get(e.fromUnit);
    const b = RANK.get(e.toUnit);
    if (a === undefined || b === undefined) continue;
    if (b > a) out.push(`src/${e.from} imports src/${e.to}: ${e.fromUnit} (layer ${a}) may not import ${e.toUnit} (layer ${b})`);
  }
  const side = new Map();
  for (const e of edges) {
    if (RANK.get(e.fromUnit) !== RANK.get(e.toUnit)) continue;
    if (!side.has(e.fromUnit)) side.set(e.fromUnit, new Map());
    side.get(e.fromUnit).set(e.toUnit, e);
  }
  for (const cycle of cycles(side)) {
    const shown = cycle.map((e) => `src/${e.from} -> src/${e.to}`).join(", ");
    out.push(`a cycle between ${[...new Set(cycle.map((e) => e.fromUnit))].join(", ")}: ${shown}`);
  }
  return out;
}

/** One cycle (as its edges) per strongly connected group of the sideways graph found by depth-first search. */
function cycles(side) {
  const found = [];
  const state = new Map();
  const stack = [];
  const visit = (u) => {
    state.set(u, "open");
    for (const [v, e] of side.get(u) ?? []) {
      stack.push(e);
      if (state.get(v) === "open") found.push(stack.slice(stack.findIndex((x) => x.fromUnit === v)));
      else if (!state.has(v)) visit(v);
      stack.pop();
    }
    state.set(u, "done");
  };
  for (const u of side.keys()) if (!state.has(u)) visit(u);
  return found;
}

/** The check over a checkout at `root`. */
export function checkImports(root) {
  const files = sourceFiles(root);
  const edges = edgesOf(files, (f) => readFileSync(join(root, "src", f), "utf8"));
  return violations(edges, new Set(files.map(unitOf)));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const root = join(dirname(fileURLToPath(import.meta.url)), "..");
  const problems = checkImports(root);
  for (const p of problems) console.error(p);
  if (problems.length > 0) process.exit(1);
  console.log(`imports: ${sourceFiles(root).length} files, every import follows the layers`);
}
