#!/usr/bin/env node
/**
 * Builds the browser demo into dist/web: web/src/main.ts bundled by esbuild (with the src/ modules it shares with
 * the CLI), web/index.html and web/style.css, and ONNX Runtime Web's WASM glue and binary copied to dist/web/ort/
 * so the page fetches nothing from another origin. `npm run build:web` type-checks web/ first.
 *
 * onnxruntime-web is resolved with its `onnxruntime-web-use-extern-wasm` condition (dist/ort.min.mjs): the runtime
 * then imports its glue from `env.wasm.wasmPaths` and starts its worker threads from that file, not from our bundle.
 */
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const out = path.join(root, "dist", "web");
const require = createRequire(import.meta.url);
const ortDist = path.dirname(require.resolve("onnxruntime-web/ort-wasm-simd-threaded.jsep.wasm"));
const ortVersion = JSON.parse(fs.readFileSync(path.join(ortDist, "..", "package.json"), "utf8")).version;
// The files ort.min.mjs loads (the JSEP build: WebGPU and WASM in one binary).
const ORT_FILES = ["ort-wasm-simd-threaded.jsep.mjs", "ort-wasm-simd-threaded.jsep.wasm"];

const t0 = performance.now();
fs.rmSync(out, { recursive: true, force: true });
fs.mkdirSync(path.join(out, "ort"), { recursive: true });

// The demo (app.js), the training page (train.js) and its worker (train-worker.js).
const result = await esbuild.build({
  entryPoints: {
    app: path.join(root, "web", "src", "main.ts"),
    train: path.join(root, "web", "src", "train.ts"),
    "train-worker": path.join(root, "web", "src", "train-worker.ts"),
    "infer-worker": path.join(root, "web", "src", "infer-worker.ts"),
  },
  outdir: out,
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["es2022", "chrome113", "firefox120", "safari17"],
  conditions: ["onnxruntime-web-use-extern-wasm"],
  minify: true,
  sourcemap: "linked",
  metafile: true,
  legalComments: "linked",
  logLevel: "warning",
  define: { "process.env.NODE_ENV": '"production"' },
});
const nodeOnly = Object.keys(result.metafile.inputs).filter((f) => /^node:|sharp|onnxruntime-node/.test(f));
if (nodeOnly.length) throw new Error(`the web bundle pulled in Node-only modules: ${nodeOnly.join(", ")}`);

for (const f of ["index.html", "train.html", "style.css"]) fs.copyFileSync(path.join(root, "web", f), path.join(out, f));
for (const f of ORT_FILES) fs.copyFileSync(path.join(ortDist, f), path.join(out, "ort", f));
fs.writeFileSync(path.join(out, "build.json"), `${JSON.stringify({ onnxruntimeWeb: ortVersion, files: ORT_FILES }, null, 1)}\n`);

const size = (f) => fs.statSync(path.join(out, f)).size;
const kib = (n) => `${(n / 1024).toFixed(0)} KiB`;
console.log(
  `built dist/web in ${(performance.now() - t0).toFixed(0)} ms: app.js ${kib(size("app.js"))}, train.js ${kib(size("train.js"))}, ` +
    `train-worker.js ${kib(size("train-worker.js"))}, ` +
    `ort/ (onnxruntime-web ${ortVersion}) ${kib(ORT_FILES.reduce((s, f) => s + size(`ort/${f}`), 0))}`,
);
