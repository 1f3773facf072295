#!/usr/bin/env node
/**
 * Writes src/zoo/imagenet-classes.json: the 1000 ImageNet-1k class names in torchvision's class-index order
 * (index = the row of classifier.6 in torchvision's VGG weights), each the WordNet synonyms of its synset as
 * in the classic `synset_words.txt` without the wnid (e.g. "tabby, tabby cat"); the one duplicate, "crane" at 134
 * (the bird) and 517 (the machine), is told apart as torchvision does: 134 becomes "crane bird".
 *
 * Source: the npm package @tensorflow-models/mobilenet (Apache-2.0), whose dist/imagenet_classes.js holds the same
 * list in the same order. The package is fetched with `npm pack` into a temporary folder (the npm registry is
 * the only network this needs) and is not a dependency of this project.
 *
 *   node scripts/make_imagenet_labels.mjs [--check-torchvision]
 *
 * --check-torchvision also compares with torchvision's own short names (torchvision.models._meta
 * ._IMAGENET_CATEGORIES, via /usr/bin/python3): each of its names must be one of our synonyms, index by index.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { runInNewContext } from "node:vm";

const PACKAGE = "@tensorflow-models/mobilenet@2.1.1";
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const OUT = join(ROOT, "src", "zoo", "imagenet-classes.json");

const tmp = mkdtempSync(join(tmpdir(), "imagenet-labels-"));
let labels;
try {
  const tgz = execFileSync("npm", ["pack", PACKAGE, "--pack-destination", tmp, "--silent"], { cwd: tmp, encoding: "utf8" })
    .trim()
    .split("\n")
    .pop();
  execFileSync("tar", ["xzf", join(tmp, tgz), "-C", tmp, "package/dist/imagenet_classes.js"]);
  const src = readFileSync(join(tmp, "package", "dist", "imagenet_classes.js"), "utf8");
  // A CommonJS file that only assigns an object literal: evaluate it in an empty context.
  const exports = {};
  runInNewContext(src, { exports, module: { exports } });
  const table = exports.IMAGENET_CLASSES;
  labels = Array.from({ length: 1000 }, (_, i) => table[i]);
  if (Object.keys(table).length !== 1000 || labels.some((l) => typeof l !== "string" || l.trim() === "")) {
    throw new Error(`${PACKAGE}: expected 1000 class names indexed 0..999`);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

// The list names two classes just "crane": 134 the bird, 517 the machine. Name the bird as torchvision does.
if (labels[134] !== "crane" || labels[517] !== "crane")
  throw new Error(`expected 'crane' at 134 and 517, got '${labels[134]}', '${labels[517]}'`);
labels[134] = "crane bird";
if (new Set(labels).size !== 1000) throw new Error("class names are not unique");

const KNOWN = { 0: "tench", 1: "goldfish", 281: "tabby cat", 999: "toilet tissue" };
for (const [i, name] of Object.entries(KNOWN)) {
  if (!labels[i].split(", ").includes(name)) throw new Error(`class ${i} is '${labels[i]}', expected '${name}' among its names`);
}

if (process.argv.includes("--check-torchvision")) {
  const py = "import json, torchvision.models._meta as m; print(json.dumps(m._IMAGENET_CATEGORIES))";
  const tv = JSON.parse(execFileSync("/usr/bin/python3", ["-c", py], { encoding: "utf8" }));
  if (tv.length !== 1000) throw new Error(`torchvision has ${tv.length} categories`);
  // torchvision disambiguates a few duplicates ("crane bird" at 134, "maillot tank suit" at 639) and spells
  // "jellyfish" as one word: compare letters only, and accept a synonym that starts its name.
  const norm = (s) => s.toLowerCase().replace(/[^a-z0-9]/g, "");
  const agrees = (t, l) => norm(t) === norm(l) || l.split(", ").some((s) => norm(t).startsWith(norm(s)));
  const bad = tv.map((t, i) => [i, t]).filter(([i, t]) => !agrees(t, labels[i]));
  for (const [i, t] of bad) console.log(`  ${i}: torchvision '${t}', ours '${labels[i]}'`);
  console.log(`torchvision agreement: ${1000 - bad.length}/1000 indices name the same class`);
  if (bad.length > 0) process.exit(1);
}

writeFileSync(OUT, `${JSON.stringify(labels, null, 0).replace(/","/g, '",\n"').replace(/^\[/, "[\n").replace(/\]$/, "\n]")}\n`);
console.log(`wrote ${OUT}: ${labels.length} classes (0 '${labels[0]}', 281 '${labels[281]}', 999 '${labels[999]}')`);
