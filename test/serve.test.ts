/**
 * `vgg serve` against a plain HTTP client: every endpoint of the Open Inference Protocol, JSON and binary tensor
 * data, dynamic batching (answers equal single runs), every refusal status, a loop that keeps answering while a
 * batch runs, and the drain on SIGTERM.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as http from "node:http";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { createSession, type Session } from "../src/runtime/ort.js";
import { saveCheckpoint } from "../src/train/checkpoint.js";
import { initWeights } from "../src/weights/init.js";
import { buildModel } from "../src/zoo/model.js";
import { assertCleanError, relErr, tmp, vggAsync } from "./helpers.js";
import { exportToy, firstOutput, infer, inferBody, type Served, startServe, toyInput } from "./serve-helpers.js";

const dir = tmp("vgg-serve-oip-");
const toy = join(dir, "toy.onnx");
const labels = join(dir, "labels.txt");
const png = join(dir, "a.png");
let direct: Session;
let served: Served;

/** A JSON answer, read loosely (the assertions say what it must hold). */
interface Json {
  name?: string;
  extensions?: string[];
  [key: string]: unknown;
}

/** What ORT gives for `x` run alone. */
async function alone(x: Float32Array, rows: number): Promise<Float32Array> {
  const out = await direct.run({ input: { dtype: "float32", shape: [rows, 3, 32, 32], data: x } });
  return out.logits.data as Float32Array;
}

before(async () => {
  exportToy(toy);
  fs.writeFileSync(labels, `${Array.from({ length: 10 }, (_, i) => `class-${i}`).join("\n")}\n`);
  const sharp = (await import("sharp")).default;
  await sharp(Buffer.from(toyInput(1, 9, 40 * 40 * 3).map((v) => (v + 0.5) * 255)), { raw: { width: 40, height: 40, channels: 3 } })
    .png()
    .toFile(png);
  direct = await createSession(toy);
  served = await startServe([
    "--model",
    toy,
    "--model",
    toy,
    "--name",
    "toy",
    "--name",
    "twin",
    "--labels",
    labels,
    "--threads",
    "1",
    "--host",
    "127.0.0.1",
    "--max-body-mb",
    "1",
  ]);
});

after(async () => {
  await served?.stop();
  await direct?.release();
  fs.rmSync(dir, { recursive: true, force: true });
});

test("health, server and model metadata as the protocol describes them", async () => {
  const get = async (path: string) => {
    const r = await fetch(served.base + path);
    return { status: r.status, json: (await r.json()) as Json };
  };
  assert.deepEqual(await get("/v2/health/live"), { status: 200, json: { live: true } });
  assert.deepEqual(await get("/v2/health/ready"), { status: 200, json: { ready: true } });
  const server = await get("/v2");
  assert.equal(server.json.name, "vgg-onnx");
  assert.ok(server.json.extensions?.includes("binary_tensor_data"));
  const meta = {
    name: "toy",
    versions: ["1"],
    platform: "onnx_onnxv1",
    inputs: [{ name: "input", datatype: "FP32", shape: [-1, 3, 32, 32] }],
    outputs: [{ name: "logits", datatype: "FP32", shape: [-1, 10] }],
  };
  assert.deepEqual(await get("/v2/models/toy"), { status: 200, json: meta });
  assert.deepEqual(await get("/v2/models/toy/versions/1"), { status: 200, json: meta });
  assert.deepEqual((await get("/v2/models/twin")).json.name, "twin");
  assert.deepEqual(await get("/v2/models/twin/ready"), { status: 200, json: { name: "twin", ready: true } });
});

test("infer: flat and nested JSON data, batch > 1, the answer ORT gives for the same input", async () => {
  const x = toyInput(2, 1);
  const want = await alone(x, 2);
  const flat = await infer(served.base, "toy", inferBody(x, [2, 3, 32, 32]));
  assert.equal(flat.status, 200);
  assert.equal(flat.json.model_name, "toy");
  const out = firstOutput(flat.json);
  assert.deepEqual(out.shape, [2, 10]);
  assert.ok(relErr(out.data, want) < 1e-5);
  // Nested row-major arrays, an id echoed, one output asked for by name.
  const nested: number[][][][] = [];
  for (let n = 0; n < 2; n++) {
    nested.push([]);
    for (let c = 0; c < 3; c++) {
      nested[n].push([]);
      for (let h = 0; h < 32; h++) nested[n][c].push(Array.from(x.subarray(((n * 3 + c) * 32 + h) * 32, ((n * 3 + c) * 32 + h + 1) * 32)));
    }
  }
  const body = JSON.stringify({
    id: "req-7",
    inputs: [{ name: "input", shape: [2, 3, 32, 32], datatype: "FP32", data: nested }],
    outputs: [{ name: "logits" }],
  });
  const r = await infer(served.base, "twin", body);
  assert.equal(r.status, 200);
  assert.equal(r.json.id, "req-7");
  assert.ok(relErr(firstOutput(r.json).data, want) < 1e-5);
});

test("infer with Triton's binary tensor data: binary in, binary out", async () => {
  const x = toyInput(3, 2);
  const want = await alone(x, 3);
  const header = Buffer.from(
    JSON.stringify({
      inputs: [{ name: "input", shape: [3, 3, 32, 32], datatype: "FP32", parameters: { binary_data_size: x.byteLength } }],
      outputs: [{ name: "logits", parameters: { binary_data: true } }],
    }),
  );
  const r = await fetch(`${served.base}/v2/models/toy/infer`, {
    method: "POST",
    body: Buffer.concat([header, Buffer.from(x.buffer)]),
    headers: { "Content-Type": "application/octet-stream", "Inference-Header-Content-Length": String(header.length) },
  });
  assert.equal(r.status, 200);
  const body = Buffer.from(await r.arrayBuffer());
  const n = Number(r.headers.get("inference-header-content-length"));
  const head = JSON.parse(body.subarray(0, n).toString()) as {
    outputs: { name: string; shape: number[]; parameters: { binary_data_size: number } }[];
  };
  assert.deepEqual(head.outputs[0].shape, [3, 10]);
  assert.equal(head.outputs[0].parameters.binary_data_size, 3 * 10 * 4);
  const got = new Float32Array(body.buffer.slice(body.byteOffset + n, body.byteOffset + body.length));
  assert.ok(relErr(got, want) < 1e-5);
  // binary_data_output at the request level, for a JSON request.
  const all = await fetch(`${served.base}/v2/models/toy/infer`, {
    method: "POST",
    body: inferBody(x.subarray(0, 3072), [1, 3, 32, 32], "input", { parameters: { binary_data_output: true } }),
  });
  assert.equal(all.headers.get("content-type"), "application/octet-stream");
  assert.ok(Number(all.headers.get("inference-header-content-length")) > 0);
});

test("classify: an image in, the top classes with the --labels names out", async () => {
  const r = await fetch(`${served.base}/v2/models/toy/classify?top=3`, { method: "POST", body: fs.readFileSync(png) });
  assert.equal(r.status, 200);
  const j = (await r.json()) as { model_name: string; top: { index: number; label: string; probability: number }[] };
  assert.equal(j.top.length, 3);
  assert.equal(j.top[0].label, `class-${j.top[0].index}`);
  assert.ok(j.top[0].probability >= j.top[1].probability);
  const bad = await fetch(`${served.base}/v2/models/toy/classify`, { method: "POST", body: "not an image" });
  assert.equal(bad.status, 415);
  assert.match(((await bad.json()) as { error: string }).error, /not an image/);
});

test("every refusal: 400 naming the problem, 404, 405, 413; then the server still answers", async () => {
  const x = Array.from(toyInput(1, 3));
  const req = (inputs: unknown, extra = {}) => JSON.stringify({ inputs, ...extra });
  const one = { name: "input", shape: [1, 3, 32, 32], datatype: "FP32", data: x };
  const cases: [string, RegExp][] = [
    ["{not json", /not valid JSON/],
    ["[1, 2]", /JSON object with 'inputs'/],
    [req([]), /no 'inputs'/],
    [req([{ ...one, name: "image" }]), /no input 'image'.*inputs: input/],
    [req([{ ...one, datatype: "FP64" }]), /input 'input' is FP32, the request sends FP64/],
    [req([{ ...one, datatype: "STRING" }]), /datatype 'STRING' is not a datatype/],
    [req([{ ...one, shape: [1, 3, 32, 31], data: x.slice(0, 3 * 32 * 31) }]), /shape \[1, 3, 32, 31\], the model takes \[-1, 3, 32, 32\]/],
    [req([{ ...one, shape: [0, 3, 32, 32], data: [] }]), /the model takes/],
    [req([{ ...one, shape: [1, 3, 32, -32] }]), /not a non-negative integer/],
    [req([{ ...one, data: x.slice(1) }]), /holds 3071 elements, its shape says 3072/],
    [req([{ ...one, data: [...x, 1] }]), /more than the 3072 elements/],
    [req([{ ...one, data: ["a", ...x.slice(1)] }]), /not a number/],
    [req([one, one]), /given twice/],
    [req([one], { outputs: [{ name: "fc6" }] }), /no output 'fc6'/],
  ];
  for (const [body, error] of cases) {
    const r = await infer(served.base, "toy", body);
    assert.equal(r.status, 400, body.slice(0, 80));
    assert.match(r.json.error as string, error);
  }
  assert.equal((await infer(served.base, "nope", req([one]))).status, 404);
  assert.equal((await fetch(`${served.base}/v2/models/toy/versions/2`)).status, 404);
  assert.equal((await fetch(`${served.base}/v2/nothing`)).status, 404);
  const get = await fetch(`${served.base}/v2/models/toy/infer`);
  assert.equal(get.status, 405);
  assert.equal(get.headers.get("allow"), "POST");
  // --max-body-mb 1: a body over a MiB is refused by its Content-Length.
  const big = await fetch(`${served.base}/v2/models/toy/infer`, { method: "POST", body: "x".repeat(2 ** 20 + 1) });
  assert.equal(big.status, 413);
  // A binary body shorter than its header says.
  const header = Buffer.from(req([{ name: "input", shape: [1, 3, 32, 32], datatype: "FP32", parameters: { binary_data_size: 12288 } }]));
  const short = await fetch(`${served.base}/v2/models/toy/infer`, {
    method: "POST",
    body: Buffer.concat([header, Buffer.alloc(100)]),
    headers: { "Inference-Header-Content-Length": String(header.length) },
  });
  assert.equal(short.status, 400);
  assert.match(((await short.json()) as { error: string }).error, /ends 12188 bytes short/);
  const ok = await infer(served.base, "toy", req([one]));
  assert.equal(ok.status, 200);
  const metrics = await (await fetch(`${served.base}/metrics`)).text();
  assert.match(metrics, /vgg_requests_total\{model="toy",endpoint="infer",status="400"\} 1[4-9]/);
  assert.match(metrics, /vgg_requests_total\{model="toy",endpoint="infer",status="413"\} 1/);
  assert.match(metrics, /vgg_batch_size_count\{model="toy"\} \d+/);
  assert.match(metrics, /vgg_queue_depth\{model="toy"\} 0/);
});

test("dynamic batching: requests within --max-delay-ms run as one batch, each gets its own answer", async () => {
  const s = await startServe(["--model", toy, "--max-batch", "8", "--max-delay-ms", "300"]);
  try {
    const inputs = [1, 2, 1, 3, 1].map((rows, i) => ({ rows, x: toyInput(rows, 100 + i) }));
    const answers = await Promise.all(inputs.map(({ rows, x }) => infer(s.base, "toy", inferBody(x, [rows, 3, 32, 32]))));
    for (let i = 0; i < inputs.length; i++) {
      assert.equal(answers[i].status, 200);
      const want = await alone(inputs[i].x, inputs[i].rows);
      assert.ok(relErr(firstOutput(answers[i].json).data, want) < 1e-5, `request ${i}`);
    }
    // 8 rows in all arrived within 300 ms: one batch of 8 (or two, should the first have started alone).
    const metrics = await (await fetch(`${s.base}/metrics`)).text();
    const batches = Number(/vgg_batch_size_count\{model="toy"\} (\d+)/.exec(metrics)?.[1]);
    assert.ok(batches >= 1 && batches <= 2, metrics);
    assert.match(metrics, /vgg_batch_size_bucket\{model="toy",le="8"\} [12]/);
  } finally {
    assert.equal(await s.stop(), 0);
  }
});

test("a full queue answers 429 with Retry-After; SIGTERM answers the queued request, then exits 0", async () => {
  const s = await startServe(["--model", toy, "--max-queue", "1", "--max-batch", "64", "--max-delay-ms", "1500"]);
  const x = toyInput(1, 5);
  const first = infer(s.base, "toy", inferBody(x, [1, 3, 32, 32]));
  await new Promise((r) => setTimeout(r, 200));
  const second = await fetch(`${s.base}/v2/models/toy/infer`, { method: "POST", body: inferBody(x, [1, 3, 32, 32]) });
  assert.equal(second.status, 429);
  assert.equal(second.headers.get("retry-after"), "1");
  assert.match(((await second.json()) as { error: string }).error, /queue is full/);
  const code = s.stop("SIGTERM");
  const r = await first;
  assert.equal(r.status, 200);
  assert.ok(relErr(firstOutput(r.json).data, await alone(x, 1)) < 1e-5);
  assert.equal(await code, 0);
  assert.match(s.output(), /SIGTERM: answering the queued requests[\s\S]*stopped/);
});

test("SIGTERM while a request's body is still arriving: that request is answered 503, the process exits 0", async () => {
  const s = await startServe(["--model", toy]);
  const body = Buffer.from(inferBody(toyInput(1, 6), [1, 3, 32, 32]));
  const { port } = new URL(s.base);
  const answer = new Promise<{ status: number; body: string }>((done, fail) => {
    const req = http.request(
      { host: "127.0.0.1", port, path: "/v2/models/toy/infer", method: "POST", headers: { "Content-Length": body.length } },
      (res) => {
        let text = "";
        res.setEncoding("utf8").on("data", (c: string) => (text += c));
        res.on("end", () => done({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on("error", fail);
    req.write(body.subarray(0, 1000));
    setTimeout(() => {
      void s.stop("SIGTERM");
      setTimeout(() => req.end(body.subarray(1000)), 300);
    }, 200);
  });
  const r = await answer;
  assert.equal(r.status, 503);
  assert.match(r.body, /shutting down/);
  assert.equal(await s.stop(), 0);
});

test("the server keeps answering while a long batch runs (the session has a thread of its own)", async () => {
  const big = join(dir, "big.onnx");
  exportToy(big, { widthDivisor: 4, inputSize: 96 });
  const s = await startServe(["--model", big, "--max-delay-ms", "0"]);
  try {
    const rows = 32;
    const x = toyInput(rows, 11, 3 * 96 * 96);
    const header = Buffer.from(
      JSON.stringify({
        inputs: [{ name: "input", shape: [rows, 3, 96, 96], datatype: "FP32", parameters: { binary_data_size: x.byteLength } }],
      }),
    );
    const t0 = performance.now();
    let done = 0;
    const running = fetch(`${s.base}/v2/models/big/infer`, {
      method: "POST",
      body: Buffer.concat([header, Buffer.from(x.buffer)]),
      headers: { "Inference-Header-Content-Length": String(header.length) },
    }).then((r) => {
      done = performance.now() - t0;
      return r.status;
    });
    const lives: number[] = [];
    while (!done) {
      const t = performance.now();
      assert.equal((await fetch(`${s.base}/v2/health/live`)).status, 200);
      if (!done) lives.push(performance.now() - t);
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(await running, 200);
    assert.ok(lives.length >= 3, `only ${lives.length} health answers during a ${done.toFixed(0)} ms batch`);
    assert.ok(Math.max(...lives) < Math.max(250, done / 2), `a health answer took ${Math.max(...lives).toFixed(0)} ms`);
  } finally {
    await s.stop();
  }
});

test("--weights: a `vgg train` checkpoint served without an export step; --checkpoint and --preset for /classify", async () => {
  const m = buildModel("vgg11", { widthDivisor: 16, numClasses: 3, inputSize: 32, head: "compact" });
  const names = ["red", "green", "blue"];
  saveCheckpoint(dir, "best", initWeights(m, "torchvision", 4), {
    arch: "vgg11",
    options: m.options,
    labels: names,
    mean: [0.5, 0.5, 0.5],
    std: [0.25, 0.25, 0.25],
    data: { channels: 3, size: [32, 32] },
    preset: { size: 32 },
  });
  const ckpt = join(dir, "best.safetensors");
  const exported = join(dir, "exported.onnx");
  assert.equal((await vggAsync(["export", "--weights", ckpt, "--out", exported])).status, 0);
  const s = await startServe(["--weights", ckpt, "--model", exported, "--checkpoint", ckpt]);
  try {
    const x = toyInput(2, 8);
    const a = await infer(s.base, "vgg11", inferBody(x, [2, 3, 32, 32]));
    const b = await infer(s.base, "exported", inferBody(x, [2, 3, 32, 32]));
    assert.equal(a.status, 200);
    assert.ok(relErr(firstOutput(a.json).data, firstOutput(b.json).data) < 1e-5);
    for (const model of ["vgg11", "exported"]) {
      const r = (await (await fetch(`${s.base}/v2/models/${model}/classify`, { method: "POST", body: fs.readFileSync(png) })).json()) as {
        top: { label: string }[];
      };
      assert.deepEqual(r.top.map((t) => t.label).sort(), [...names].sort(), model);
    }
  } finally {
    await s.stop();
  }
  const caffe = await startServe(["--model", toy, "--preset", "caffe"]);
  try {
    const r = await fetch(`${caffe.base}/v2/models/toy/classify?top=1`, { method: "POST", body: fs.readFileSync(png) });
    assert.equal(r.status, 200);
  } finally {
    await caffe.stop();
  }
});

test("bad flags and bad files: one line naming the problem, exit 1, no stack", async () => {
  const none = await vggAsync(["serve"]);
  assert.equal(none.status, 1);
  assert.match(none.stderr, /no model given/);
  assertCleanError(await vggAsync(["serve", "--model", toy, "--name", "a", "--name", "b"]), /2 --name flags for 1 model/);
  assertCleanError(await vggAsync(["serve", "--model", toy, "--model", toy]), /two models would be named 'toy'/);
  assertCleanError(await vggAsync(["serve", "--model", toy, "--name", "a/b"]), /--name 'a\/b'/);
  assertCleanError(await vggAsync(["serve", "--model", toy, "--arch", "vgg16"]), /--arch names the model of --weights/);
  assertCleanError(await vggAsync(["serve", "--model", join(dir, "missing.onnx")]), /missing\.onnx: no such file/);
  const corrupt = join(dir, "corrupt.onnx");
  fs.writeFileSync(corrupt, Buffer.from("this is not an onnx model at all"));
  assertCleanError(await vggAsync(["serve", "--model", corrupt]), /corrupt\.onnx/);
  assertCleanError(await vggAsync(["serve", "--model", toy, "--max-delay-ms", "-1"]), /--max-delay-ms/);
  assertCleanError(await vggAsync(["serve", "--model", toy, "--max-queue", "0"]), /--max-queue/);
  assertCleanError(await vggAsync(["serve", "--model", toy, "--port", "70000"]), /--port 70000/);
});
