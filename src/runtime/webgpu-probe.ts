/**
 * Run as its own process by device.ts: opens a one-node model on ORT's WebGPU provider and prints one JSON line,
 * {"ok":true} or {"ok":false,"error":"..."}. A process of its own because Dawn writes its warnings ("Couldn't load
 * Vulkan: ...") straight to file descriptor 2, where the CLI could not keep them off the user's terminal; the parent
 * reads them from the pipe and folds them into its one-line message instead.
 */
import * as ort from "onnxruntime-node";
import { encodeModel } from "../onnx/encode.js";

const model = encodeModel({
  nodes: [{ opType: "Relu", inputs: ["x"], outputs: ["y"] }],
  initializers: [],
  inputs: [{ name: "x", dtype: "float32", dims: [2] }],
  outputs: [{ name: "y", dtype: "float32", dims: [2] }],
  opsets: [{ domain: "", version: 17 }],
});

try {
  const s = await ort.InferenceSession.create(model, { executionProviders: ["webgpu"], logSeverityLevel: 3 });
  // A run too: an adapter whose device cannot compile and dispatch a shader is no adapter for this project.
  const r = await s.run({ x: new ort.Tensor("float32", Float32Array.of(-1, 2), [2]) });
  const y = (await r.y.getData(true)) as Float32Array;
  if (y[0] !== 0 || y[1] !== 2) throw new Error(`a test run gave [${[...y].join(", ")}], not [0, 2]`);
  await s.release();
  process.stdout.write(`${JSON.stringify({ ok: true })}\n`);
} catch (err) {
  process.stdout.write(`${JSON.stringify({ ok: false, error: err instanceof Error ? err.message : String(err) })}\n`);
}
