/**
 * `vgg serve` driven by clients this project did not write: curl, and Python's standard library (scripts/oip_client.py,
 * written from the protocol's documents) sending what a Triton or KServe client sends, JSON and binary.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { createSession } from "../src/runtime/ort.js";
import { ROOT, relErr, tmp } from "./helpers.js";
import { exportToy, inferBody, type Served, startServe, toyInput } from "./serve-helpers.js";

const dir = tmp("vgg-serve-clients-");
const toy = join(dir, "toy.onnx");
const x = toyInput(2, 21);
let want: Float32Array;
let served: Served;

const has = (cmd: string, arg: string) => spawnSync(cmd, [arg], { encoding: "utf8" }).status === 0;

before(async () => {
  exportToy(toy);
  const s = await createSession(toy);
  want = (await s.run({ input: { dtype: "float32", shape: [2, 3, 32, 32], data: x } })).logits.data as Float32Array;
  await s.release();
  served = await startServe(["--model", toy]);
});

after(async () => {
  await served?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

test("curl: JSON and binary infer requests", { skip: !has("curl", "--version") && "needs curl" }, () => {
  const json = join(dir, "req.json");
  fs.writeFileSync(json, inferBody(x, [2, 3, 32, 32]));
  const url = `${served.base}/v2/models/toy/infer`;
  const r = spawnSync("curl", ["-sS", "--fail-with-body", "-H", "Content-Type: application/json", "--data-binary", `@${json}`, url], {
    encoding: "utf8",
  });
  assert.equal(r.status, 0, r.stderr + r.stdout);
  const out = (JSON.parse(r.stdout) as { outputs: { shape: number[]; data: number[] }[] }).outputs[0];
  assert.deepEqual(out.shape, [2, 10]);
  assert.ok(relErr(out.data, want) < 1e-5);

  const header = Buffer.from(
    JSON.stringify({
      inputs: [{ name: "input", shape: [2, 3, 32, 32], datatype: "FP32", parameters: { binary_data_size: x.byteLength } }],
    }),
  );
  const bin = join(dir, "req.bin");
  fs.writeFileSync(bin, Buffer.concat([header, Buffer.from(x.buffer, x.byteOffset, x.byteLength)]));
  const b = spawnSync(
    "curl",
    [
      "-sS",
      "--fail-with-body",
      "-H",
      `Inference-Header-Content-Length: ${header.length}`,
      "-H",
      "Content-Type: application/octet-stream",
      "--data-binary",
      `@${bin}`,
      url,
    ],
    { encoding: "utf8" },
  );
  assert.equal(b.status, 0, b.stderr + b.stdout);
  assert.ok(relErr((JSON.parse(b.stdout) as { outputs: { data: number[] }[] }).outputs[0].data, want) < 1e-5);

  const live = spawnSync("curl", ["-sS", "-o", "/dev/null", "-w", "%{http_code}", `${served.base}/v2/health/live`], { encoding: "utf8" });
  assert.equal(live.stdout, "200");
});

test("Python's urllib, as a Triton/KServe client sends: metadata, JSON and binary tensor data", {
  skip: !has("python3", "--version") && "needs python3",
}, () => {
  const input = join(dir, "input.json");
  fs.writeFileSync(input, JSON.stringify({ shape: [2, 3, 32, 32], data: Array.from(x) }));
  const r = spawnSync("python3", [join(ROOT, "scripts", "oip_client.py"), served.base, "toy", input], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as {
    ready: { ready: boolean };
    metadata: { platform: string; inputs: { shape: number[] }[] };
    json: { shape: number[]; data: number[] };
    binary: { shape: number[]; data: number[] };
  };
  assert.equal(out.ready.ready, true);
  assert.equal(out.metadata.platform, "onnx_onnxv1");
  assert.deepEqual(out.metadata.inputs[0].shape, [-1, 3, 32, 32]);
  assert.deepEqual(out.json.shape, [2, 10]);
  assert.ok(relErr(out.json.data, want) < 1e-5);
  assert.deepEqual(out.binary.shape, [2, 10]);
  assert.ok(relErr(out.binary.data, want) < 1e-5);
});
