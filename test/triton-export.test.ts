/**
 * `vgg export --triton-repo`: the repository's layout, config.pbtxt as Triton reads it, the model the same as
 * `vgg export --out`'s, external data for large models, no overwriting, and bad flags.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { buildInferenceGraph } from "../src/graph/infer.js";
import type { ModelSpec } from "../src/onnx/encode.js";
import { encodeModel } from "../src/onnx/encode.js";
import { createSession } from "../src/runtime/ort.js";
import { configPbtxt, pbString, tritonConfig, writeTritonRepo } from "../src/serve/triton.js";
import type { Tensor } from "../src/tensor.js";
import { initWeights } from "../src/weights/init.js";
import { buildModel } from "../src/zoo/model.js";
import { assertCleanError, pool, tmp, vggAsync } from "./helpers.js";

const TOY = ["--arch", "vgg11", "--width-divisor", "16", "--num-classes", "10", "--input-size", "32", "--init", "glorot", "--seed", "3"];

/** Every file and directory under `dir`, relative, sorted (hidden ones included: a left-over temp dir shows). */
function tree(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" }).sort();
}

function batch(n: number, size = 32): Tensor {
  const data = new Float32Array(n * 3 * size * size).map((_, k) => Math.sin(k * 0.37));
  return { dtype: "float32", shape: [n, 3, size, size], data };
}

async function outputs(file: string, x: Tensor): Promise<Record<string, Tensor>> {
  const s = await createSession(file);
  try {
    return await s.run({ input: x });
  } finally {
    await s.release();
  }
}

// A protobuf text-format reader, enough for config.pbtxt: messages as objects, every field's values as an array
// (a repeated field written twice or as a [list] reads the same).
type PbValue = string | number | PbMessage;
interface PbMessage {
  [field: string]: PbValue[];
}

function readPbtxt(text: string): PbMessage {
  const tokens = [...text.matchAll(/"(?:[^"\\]|\\.)*"|[A-Za-z_][\w]*|-?\d+(?:\.\d+)?|[{}[\]:,]|\S/g)].map((m) => m[0]);
  let at = 0;
  const next = () => tokens[at++];
  const value = (): PbValue => {
    const t = next();
    if (t === "{") return message("}");
    if (t.startsWith('"')) return JSON.parse(t) as string;
    if (/^-?\d/.test(t)) return Number(t);
    if (/^[A-Za-z_]/.test(t)) return t; // an enum
    throw new Error(`unexpected '${t}'`);
  };
  const message = (end?: string): PbMessage => {
    const m: PbMessage = {};
    while (at < tokens.length && tokens[at] !== end) {
      const field = next();
      if (tokens[at] === ":") at++;
      const values: PbValue[] = [];
      if (tokens[at] === "[") {
        at++;
        while (tokens[at] !== "]") {
          values.push(value());
          if (tokens[at] === ",") at++;
        }
        at++;
      } else values.push(value());
      m[field] = [...(m[field] ?? []), ...values];
    }
    if (end) assert.equal(next(), end);
    return m;
  };
  return message();
}

test("--triton-repo writes config.pbtxt and 1/model.onnx: the --out model, byte for byte", async () => {
  const d = tmp();
  const repo = join(d, "repo");
  const [single, both] = await pool([
    () => vggAsync(["export", ...TOY, "--out", join(d, "a.onnx")]),
    () => vggAsync(["export", ...TOY, "--triton-repo", repo]),
  ]);
  assert.equal(single.status, 0, single.stderr);
  assert.equal(both.status, 0, both.stderr);
  assert.match(both.stdout, /repo\/vgg11\/config\.pbtxt and .*repo\/vgg11\/1\/model\.onnx \(.* MiB, vgg11, fp32/);
  // Without --out or --name, the model is named after its arch.
  assert.deepEqual(tree(repo), ["vgg11", "vgg11/1", "vgg11/1/model.onnx", "vgg11/config.pbtxt"]);
  assert.equal(
    readFileSync(join(repo, "vgg11", "config.pbtxt"), "utf8"),
    [
      'name: "vgg11"',
      'platform: "onnxruntime_onnx"',
      "max_batch_size: 8",
      "input [",
      "  {",
      '    name: "input"',
      "    data_type: TYPE_FP32",
      "    dims: [ 3, 32, 32 ]",
      "  }",
      "]",
      "output [",
      "  {",
      '    name: "logits"',
      "    data_type: TYPE_FP32",
      "    dims: [ 10 ]",
      "  }",
      "]",
      "dynamic_batching {",
      "  max_queue_delay_microseconds: 5000",
      "}",
      "",
    ].join("\n"),
  );
  const model = join(repo, "vgg11", "1", "model.onnx");
  assert.deepEqual(readFileSync(model), readFileSync(join(d, "a.onnx")));
  // ORT runs it at max_batch_size rows, as Triton's batcher will, with the --out file's logits.
  const x = batch(8);
  const [got, want] = [await outputs(model, x), await outputs(join(d, "a.onnx"), x)];
  assert.deepEqual(got.logits.shape, [8, 10]);
  assert.deepEqual(Array.from(got.logits.data as Float32Array), Array.from(want.logits.data as Float32Array));
});

test("--out and --triton-repo together: the name from --out, taps and batching flags in the config", async () => {
  const d = tmp();
  const repo = join(d, "models");
  const common = [...TOY, "--tap", "relu2_1,logits", "--triton-repo", repo];
  const runs = await pool([
    () => vggAsync(["export", ...common, "--out", join(d, "toy.onnx"), "--max-batch", "4", "--max-delay-ms", "2.5"]),
    () => vggAsync(["export", ...common, "--name", "vgg-small.v2", "--precision", "fp16", "--max-delay-ms", "0"]),
  ]);
  for (const r of runs) assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(tree(repo), [
    "toy",
    "toy/1",
    "toy/1/model.onnx",
    "toy/config.pbtxt",
    "vgg-small.v2",
    "vgg-small.v2/1",
    "vgg-small.v2/1/model.onnx",
    "vgg-small.v2/config.pbtxt",
  ]);
  const toy = readPbtxt(readFileSync(join(repo, "toy", "config.pbtxt"), "utf8"));
  assert.deepEqual(toy, {
    name: ["toy"],
    platform: ["onnxruntime_onnx"],
    max_batch_size: [4],
    input: [{ name: ["input"], data_type: ["TYPE_FP32"], dims: [3, 32, 32] }],
    output: [
      { name: ["relu2_1"], data_type: ["TYPE_FP32"], dims: [8, 16, 16] },
      { name: ["logits"], data_type: ["TYPE_FP32"], dims: [10] },
    ],
    dynamic_batching: [{ max_queue_delay_microseconds: [2500] }],
  });
  assert.deepEqual(readFileSync(join(repo, "toy", "1", "model.onnx")), readFileSync(join(d, "toy.onnx")));
  const small = readPbtxt(readFileSync(join(repo, "vgg-small.v2", "config.pbtxt"), "utf8"));
  assert.deepEqual(small.name, ["vgg-small.v2"]);
  assert.deepEqual(small.max_batch_size, [8]);
  assert.deepEqual(small.dynamic_batching, [{ max_queue_delay_microseconds: [0] }]);
  // fp16 stores the weights as float16; the graph's input and outputs stay float32, and the config says so.
  assert.deepEqual(
    (small.output as PbMessage[]).map((o) => o.data_type[0]),
    ["TYPE_FP32", "TYPE_FP32"],
  );
  // Each output's dims are what ORT returns per image.
  const y = await outputs(join(repo, "vgg-small.v2", "1", "model.onnx"), batch(2));
  for (const o of small.output as PbMessage[]) assert.deepEqual(y[o.name[0] as string].shape, [2, ...o.dims]);
});

test("an existing model version or config is refused, and nothing is overwritten", async () => {
  const d = tmp();
  const repo = join(d, "repo");
  const first = await vggAsync(["export", ...TOY, "--triton-repo", repo]);
  assert.equal(first.status, 0, first.stderr);
  const config = readFileSync(join(repo, "vgg11", "config.pbtxt"));
  const model = readFileSync(join(repo, "vgg11", "1", "model.onnx"));
  // A model directory holding only a config (version 1 removed by hand) is refused too.
  mkdirSync(join(repo, "other"));
  writeFileSync(join(repo, "other", "config.pbtxt"), "# mine\n");
  const [again, other] = await pool([
    () => vggAsync(["export", ...TOY, "--max-batch", "2", "--triton-repo", repo]),
    () => vggAsync(["export", ...TOY, "--triton-repo", repo, "--name", "other"]),
  ]);
  assertCleanError(again, /repo\/vgg11\/1: already exists; remove it or pass another --name/);
  assertCleanError(other, /repo\/other\/config\.pbtxt: already exists/);
  assert.deepEqual(readFileSync(join(repo, "vgg11", "config.pbtxt")), config);
  assert.deepEqual(readFileSync(join(repo, "vgg11", "1", "model.onnx")), model);
  assert.equal(readFileSync(join(repo, "other", "config.pbtxt"), "utf8"), "# mine\n");
  assert.deepEqual(tree(repo), ["other", "other/config.pbtxt", "vgg11", "vgg11/1", "vgg11/1/model.onnx", "vgg11/config.pbtxt"]);
});

test("bad --triton-repo flags: one line, non-zero exit, nothing written", async () => {
  const d = tmp();
  const repo = join(d, "repo");
  const base = ["export", ...TOY, "--triton-repo", repo];
  const cases: [string[], RegExp][] = [
    [[...base, "--max-batch", "0"], /max-batch.*must be at least 1/],
    [[...base, "--max-batch", "2.5"], /max-batch.*not an integer/],
    [[...base, "--max-delay-ms", "-1"], /max-delay-ms.*must be at least 0/],
    [[...base, "--max-delay-ms", "soon"], /max-delay-ms.*not a number/],
    [[...base, "--name", "../up"], /model name '\.\.\/up' \(--name\) is not usable as a Triton model name/],
    [[...base, "--out", join(d, "my model.onnx")], /model name 'my model' \(from --out my model\.onnx\) .*; pass --name$/],
    [["export", ...TOY, "--max-batch", "4", "--out", join(d, "m.onnx")], /^vgg: --max-batch: only with --triton-repo DIR$/],
    [["export", ...TOY, "--name", "x", "--max-delay-ms", "1", "--out", join(d, "m.onnx")], /^vgg: --name, --max-delay-ms: only with/],
    [["export", ...TOY], /^vgg: pass --out FILE\.onnx, --triton-repo DIR, or both$/],
  ];
  const runs = await pool(
    cases.map(
      ([args]) =>
        () =>
          vggAsync(args),
    ),
  );
  for (const [k, r] of runs.entries()) assertCleanError(r, cases[k][1]);
  assert.equal(existsSync(repo), false);
  assert.deepEqual(tree(d), []);
});

/** A toy inference graph built in this process. */
function toySpec(): ModelSpec {
  const m = buildModel("vgg11", { widthDivisor: 16, numClasses: 10, inputSize: 32 });
  return buildInferenceGraph(m, initWeights(m, "glorot", 3));
}

test("a model past the size limit goes to Triton's directory form: model.onnx/ with external data beside", async () => {
  const repo = join(tmp(), "repo");
  const spec = toySpec();
  const config = tritonConfig(spec, { name: "big", maxBatch: 8, maxDelayMs: 5 });
  // The CLI's limit is protobuf's 2 GiB; a small one here makes a toy "large".
  const w = writeTritonRepo(repo, spec, config, { externalFrom: 1 });
  const big = readdirSync(join(repo, "big", "1", "model.onnx")).sort();
  assert.equal(w.modelFile, join(repo, "big", "1", "model.onnx", "model.onnx"));
  assert.ok(w.externalFiles >= 8, `${w.externalFiles} external files`);
  assert.equal(big.length, w.externalFiles + 1);
  assert.ok(big.includes("model.onnx"));
  assert.ok(
    big.filter((f) => f !== "model.onnx").every((f) => /^\d+\.bin$/.test(f)),
    big.join(" "),
  );
  const files = big.map((f) => readFileSync(join(repo, "big", "1", "model.onnx", f)).length);
  assert.equal(
    files.reduce((a, b) => a + b, 0),
    w.bytes,
  );
  // The weights live in the .bin files: the graph file is small.
  assert.ok(readFileSync(w.modelFile).length < 16_384);
  assert.equal(readFileSync(join(repo, "big", "config.pbtxt"), "utf8"), configPbtxt(config));
  // ORT finds the external data beside the file and gives the single-file model's logits.
  const x = batch(3);
  const single = await createSession(encodeModel(spec));
  const want = await single.run({ input: x });
  await single.release();
  const got = await outputs(w.modelFile, x);
  assert.deepEqual(Array.from(got.logits.data as Float32Array), Array.from(want.logits.data as Float32Array));
});

test("a failure while writing leaves no model directory behind", () => {
  const repo = join(tmp(), "repo");
  const spec = toySpec();
  const config = tritonConfig(spec, { name: "broken", maxBatch: 8, maxDelayMs: 5 });
  // The encoder fails after the staging directory exists (as a full disk would, later).
  const failing = new Proxy(spec, {
    get: (t, k) => {
      if (k === "nodes") throw new Error("injected failure");
      return Reflect.get(t, k);
    },
  });
  assert.throws(() => writeTritonRepo(repo, failing, config), /injected failure/);
  assert.deepEqual(tree(repo), []);
  // An existing model directory (another version in it) keeps its contents, and nothing of this call.
  mkdirSync(join(repo, "broken", "2"), { recursive: true });
  assert.throws(() => writeTritonRepo(repo, failing, config), /injected failure/);
  assert.deepEqual(tree(repo), ["broken", "broken/2"]);
});

test("config.pbtxt quotes names as protobuf text format does", () => {
  assert.equal(pbString('a"b\\c\nd\u0001é'), '"a\\"b\\\\c\\nd\\001\\303\\251"');
  const spec = toySpec();
  const text = configPbtxt(
    tritonConfig({ ...spec, outputs: [{ ...spec.outputs[0], name: 'odd "name"' }] }, { name: "m", maxBatch: 1, maxDelayMs: 0.0004 }),
  );
  assert.deepEqual(readPbtxt(text).output, [{ name: ['odd "name"'], data_type: ["TYPE_FP32"], dims: [10] }]);
  // Delays are whole microseconds.
  assert.deepEqual(readPbtxt(text).dynamic_batching, [{ max_queue_delay_microseconds: [0] }]);
  assert.throws(
    () =>
      tritonConfig(
        { ...spec, inputs: [{ name: "input", dtype: "float32", dims: [1, 3, 32, 32] }] },
        { name: "m", maxBatch: 8, maxDelayMs: 5 },
      ),
    /no free batch dimension/,
  );
});
