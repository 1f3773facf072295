/** `vgg serve-demo`'s server: model description, headers, MIME types, and no way out of its root. No browser here. */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { encodeInferenceGraph } from "../src/graph/infer.js";
import { readOnnxInfo } from "../src/onnx/decode.js";
import { createDemoServer, describeDemoModel, listen } from "../src/serve/demo.js";
import { saveCheckpoint } from "../src/train/checkpoint.js";
import { initWeights } from "../src/weights/init.js";
import { buildModel } from "../src/zoo/model.js";
import { assertCleanError, BIN, printedUrl, ROOT, tmp, vggAsync } from "./helpers.js";

const dir = tmp("vgg-serve-");
const site = join(dir, "site");
const modelFile = join(dir, "small model.onnx");
let server: http.Server;
let base: URL;

function exportSmall(file: string, taps: string[], opts: { inChannels?: number; numClasses?: number } = {}): void {
  const m = buildModel("vgg11", {
    widthDivisor: 16,
    numClasses: opts.numClasses ?? 4,
    inChannels: opts.inChannels,
    inputSize: 32,
    head: "compact",
  });
  fs.writeFileSync(file, encodeInferenceGraph(m, initWeights(m, "torchvision", 1), { taps }));
}

/** A raw request: the path goes out exactly as written (no URL normalisation, unlike fetch). */
function raw(path: string, method = "GET", host?: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((done, fail) => {
    const req = http.request({ host: base.hostname, port: base.port, path, method, headers: host ? { host } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => done({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on("error", fail);
    req.end();
  });
}

before(async () => {
  fs.mkdirSync(join(site, "ort"), { recursive: true });
  fs.mkdirSync(join(site, "sub"));
  fs.writeFileSync(join(site, "index.html"), "<!doctype html><title>demo</title>");
  fs.writeFileSync(join(site, "app.js"), "export {};");
  fs.writeFileSync(join(site, "ort", "x.mjs"), "export {};");
  fs.writeFileSync(join(site, "ort", "x.wasm"), Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]));
  fs.writeFileSync(join(site, "sub", "a.css"), "body{}");
  fs.writeFileSync(join(site, ".hidden"), "no");
  fs.writeFileSync(join(dir, "secret.txt"), "SECRET");
  fs.symlinkSync(join(dir, "secret.txt"), join(site, "link.txt"));
  exportSmall(modelFile, ["relu1_1", "logits"]);
  server = createDemoServer({ model: modelFile, info: describeDemoModel(modelFile), root: site });
  base = new URL(await listen(server, 0, "127.0.0.1"));
});

after(() => {
  server?.closeAllConnections();
  server?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

test("readOnnxInfo: metadata, inputs and outputs without loading the weights", () => {
  const info = readOnnxInfo(modelFile);
  assert.equal(info.metadata.arch, "vgg11");
  assert.equal(JSON.parse(info.metadata.options).widthDivisor, 16);
  assert.deepEqual(info.inputs, [{ name: "input", elemType: 1, dims: ["N", 3, 32, 32] }]);
  assert.deepEqual(
    info.outputs.map((o) => [o.name, o.dims]),
    [
      ["relu1_1", ["N", 4, 32, 32]],
      ["logits", ["N", 4]],
    ],
  );
  const bad = join(dir, "bad.onnx");
  fs.writeFileSync(bad, "this is not protobuf at all, just text");
  assert.throws(() => readOnnxInfo(bad), /bad\.onnx: not an ONNX model/);
});

test("describeDemoModel: taps, labels, presets, and models the page cannot run", () => {
  const d = describeDemoModel(modelFile);
  assert.equal(d.arch, "vgg11");
  assert.deepEqual(d.input, { name: "input", shape: [3, 32, 32], batchDim: "N" });
  assert.deepEqual(d.logits, { name: "logits", classes: 4 });
  assert.deepEqual(d.taps, [{ name: "relu1_1", shape: [4, 32, 32] }]);
  assert.deepEqual(d.labels, ["0", "1", "2", "3"]);
  assert.equal(d.url, "/model/small%20model.onnx");
  assert.equal(d.preprocessing.name, "torchvision");
  assert.equal(d.preprocessing.resizeShorter, 37);
  assert.equal(describeDemoModel(modelFile, { preset: "caffe" }).preprocessing.bgr, true);

  const labels = join(dir, "labels.txt");
  fs.writeFileSync(labels, "cat\ndog\nbird\nfish\n");
  assert.deepEqual(describeDemoModel(modelFile, { labels }).labels, ["cat", "dog", "bird", "fish"]);
  fs.writeFileSync(labels, "cat\ndog\n");
  assert.throws(() => describeDemoModel(modelFile, { labels }), /has 2 labels, the model has 4 classes/);

  const tapsOnly = join(dir, "taps-only.onnx");
  exportSmall(tapsOnly, ["relu2_1"]);
  assert.throws(() => describeDemoModel(tapsOnly), /has no 'logits' output .*--tap relu2_1,logits/);
  const gray = join(dir, "gray.onnx");
  exportSmall(gray, ["logits"], { inChannels: 1 });
  assert.throws(() => describeDemoModel(gray), /takes 1-channel input.*--checkpoint/);

  // A model exported from a `vgg train` checkpoint: its labels and evaluation transform (Fashion-MNIST-like).
  const m = buildModel("vgg11", { widthDivisor: 16, numClasses: 4, inChannels: 1, inputSize: 32, head: "compact" });
  const names = ["shirt", "bag", "boot", "coat"];
  saveCheckpoint(dir, "best", initWeights(m, "torchvision", 1), {
    arch: "vgg11",
    options: m.options,
    labels: names,
    mean: [0.286],
    std: [0.353],
    data: { channels: 1, size: [28, 28] },
    preset: { size: 32 },
  });
  const ck = describeDemoModel(gray, { checkpoint: join(dir, "best.safetensors") });
  assert.deepEqual(ck.labels, names);
  assert.equal(ck.labelsFrom, "checkpoint");
  assert.equal(ck.preprocessing.name, "checkpoint");
  assert.equal(ck.preprocessing.channels, 1);
  assert.deepEqual(ck.preprocessing.native, [28, 28]);
  assert.deepEqual(ck.preprocessing.transform.mean, [0.286]);
  assert.throws(() => describeDemoModel(gray, { checkpoint: join(dir, "best.safetensors"), preset: "caffe" }), /not both/);
});

test("serves the page, the model and its description, cross-origin isolated, with the right MIME types", async () => {
  const cases: [string, RegExp][] = [
    ["/", /^text\/html/],
    ["/index.html", /^text\/html/],
    ["/app.js", /^text\/javascript/],
    ["/ort/x.mjs", /^text\/javascript/],
    ["/ort/x.wasm", /^application\/wasm$/],
    ["/sub/a.css", /^text\/css/],
    ["/model.json", /^application\/json/],
    ["/model/small%20model.onnx", /^application\/octet-stream$/],
  ];
  for (const [path, type] of cases) {
    const r = await raw(path);
    assert.equal(r.status, 200, path);
    assert.match(String(r.headers["content-type"]), type, path);
    assert.equal(r.headers["cross-origin-opener-policy"], "same-origin", path);
    assert.equal(r.headers["cross-origin-embedder-policy"], "require-corp", path);
    assert.equal(r.headers["cross-origin-resource-policy"], "same-origin", path);
    assert.equal(r.headers["x-content-type-options"], "nosniff", path);
    assert.match(String(r.headers["content-security-policy"]), /default-src 'self'/, path);
    assert.equal(Number(r.headers["content-length"]), r.body.length, path);
  }
  const model = await raw("/model/small%20model.onnx");
  assert.deepEqual(model.body, fs.readFileSync(modelFile));
  const json = JSON.parse((await raw("/model.json")).body.toString());
  assert.equal(json.name, "small model.onnx");
  assert.equal(json.bytes, fs.statSync(modelFile).size);
  const head = await raw("/app.js", "HEAD");
  assert.equal(head.status, 200);
  assert.equal(head.body.length, 0);
  assert.equal((await raw("/app.js", "POST")).status, 405);
});

test("refuses paths outside the root, dotfiles and directory listings", async () => {
  const outside = [
    "/../secret.txt",
    "/%2e%2e/secret.txt",
    "/%2E%2E/secret.txt",
    "/.%2e/secret.txt",
    "/sub/../../secret.txt",
    "/sub/%2e%2e/%2e%2e/secret.txt",
    "/sub/..%2f..%2fsecret.txt",
    "/..%5csecret.txt",
    "/sub%2f..%2f..%2fsecret.txt",
    "/link.txt",
    "/model/..%2f..%2fsecret.txt",
  ];
  for (const p of outside) {
    const r = await raw(p);
    assert.equal(r.status, 403, p);
    assert.doesNotMatch(r.body.toString(), /SECRET/, p);
  }
  for (const p of ["/sub", "/sub/", "/ort/", "/.hidden", "/sub/missing.css", "/model/other.onnx", "/%00"]) {
    const r = await raw(p);
    assert.ok(r.status === 404 || r.status === 403, `${p}: ${r.status}`);
    assert.doesNotMatch(r.body.toString(), /a\.css|x\.wasm|SECRET/, p);
  }
  assert.equal((await raw("/%E0%A4%A")).status, 400);
  // Bound to loopback, it answers loopback host names only (DNS rebinding).
  assert.equal((await raw("/model.json", "GET", "attacker.example:80")).status, 421);
  assert.equal((await raw("/model.json", "GET", `localhost:${base.port}`)).status, 200);
});

test("createDemoServer wants a built page; the CLI says how to make a model", async () => {
  assert.throws(
    () => createDemoServer({ model: modelFile, info: describeDemoModel(modelFile), root: join(dir, "nope") }),
    /npm run build:web/,
  );
  const none = await vggAsync(["serve-demo"]);
  assert.equal(none.status, 1);
  assert.match(none.stderr, /^vgg: no model given/);
  assert.match(none.stderr, /vgg export .*--tap relu1_1,logits --out demo\.onnx/);
  assert.match(none.stderr, /vgg serve-demo --model demo\.onnx/);
  const notOnnx = join(dir, "notes.onnx");
  fs.writeFileSync(notOnnx, "hello");
  assertCleanError(await vggAsync(["serve-demo", "--model", notOnnx, "--port", "0"]), /notes\.onnx: not an ONNX model/);
  assertCleanError(await vggAsync(["serve-demo", "--model", join(dir, "missing.onnx")]), /missing\.onnx: no such file/);
  assertCleanError(await vggAsync(["serve-demo", "--model", modelFile, "--port", "70000"]), /--port 70000/);
});

test("the CLI binds to 127.0.0.1 by default and stops on SIGTERM", async (t) => {
  // `npm test` builds the page first; this guards running the file alone after a plain `npm run build`.
  if (!fs.existsSync(join(ROOT, "dist", "web", "index.html"))) return t.skip("the page is not built (npm run build:web)");
  const p = spawn(process.execPath, [BIN, "serve-demo", "--model", modelFile, "--port", "0"], { cwd: ROOT });
  const { url, output } = await printedUrl(p);
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  assert.match(output(), /serving small model\.onnx \(vgg11, [\d.]+ MiB, 4 classes, taps relu1_1\)/);
  const code = await new Promise<number | null>((done) => {
    p.on("close", done);
    p.kill("SIGTERM");
  });
  assert.equal(code, 0);
});
