/**
 * The training page's worker: the same step graph as `vgg train` (src/graph/train-step.ts: forward, loss, backward,
 * SGD with momentum, BN statistics) run by onnxruntime-web, with the weights and momentum going in and out of each
 * step as in Node. It runs here, off the page's thread, so the page never freezes; it also classifies with the
 * weights as they are and encodes them as a `vgg train` checkpoint.
 */
import { buildInferenceGraph } from "../../src/graph/infer.js";
import { buildTrainStep, freezeParts, resolveFreeze, stepFeeds, TRAIN_SESSION_OPTIONS, zeroMomentum } from "../../src/graph/train-step.js";
import { encodeModel } from "../../src/onnx/encode.js";
import { readInitializers } from "../../src/onnx/initializers.js";
import { hash32 } from "../../src/random.js";
import { configureRuntime, createSession, hasWebGpu, type WebSession } from "../../src/runtime/ort-web.js";
import { numel, type StateDict } from "../../src/tensor.js";
import { initWeights } from "../../src/weights/init.js";
import { fitForFineTune } from "../../src/weights/match.js";
import { bytesSource, decodeSafetensors, encodeSafetensors } from "../../src/weights/safetensors-codec.js";
import { buildModel, stateSpec, type VggModel } from "../../src/zoo/model.js";
import type { FromWorker, ToWorker, TrainInit, Trains } from "./train-protocol.js";

interface Run {
  init: TrainInit;
  model: VggModel;
  weights: StateDict;
  momentum: StateDict;
  step: ReturnType<typeof buildTrainStep>;
  session: WebSession;
  /** Training steps taken. */
  steps: number;
  data?: { x: Float32Array; y: Int32Array; n: number };
  /** The inference session over the weights of step `at`. */
  infer?: { at: number; session: WebSession };
}

let run: Run | null = null;
/** The CPU form of the run's step graph, for a fallback from WebGPU to WASM. */
let cpuStep: () => ReturnType<typeof buildTrainStep> = () => {
  throw new Error("no model yet");
};
/** Why the run is on WASM although WebGPU was asked for. */
let fallback: string | undefined;
let stopAsked = false;
const post = (m: FromWorker, transfer: Transferable[] = []) => postMessage(m, { transfer });

/** Leading layers frozen for what trains (the CLI's --freeze rule). */
function frozenLayers(model: VggModel, trains: Trains): number {
  if (trains === "all") return 0;
  if (trains === "classifier") return resolveFreeze(model, "features");
  // The most that can be frozen and still leave a layer to train: up to the last FC.
  return Math.max(...freezeParts(model).values());
}

async function start(init: TrainInit): Promise<void> {
  const rt = configureRuntime({ wasmPaths: init.wasmPaths, threads: init.threads });
  const model = buildModel(init.arch, init.options);
  const fresh = initWeights(model, "torchvision", init.seed);
  let weights = fresh;
  if (init.weights) {
    const bytes = new Uint8Array(init.weights.bytes);
    const keys = new Set(stateSpec(model).map((e) => e.key));
    const what = init.weights.format === "onnx" ? "the served model" : "the checkpoint";
    const sd =
      init.weights.format === "onnx"
        ? readInitializers(bytes, what, (k) => keys.has(k))
        : decodeSafetensors(bytesSource(bytes), what).tensors;
    weights = fitForFineTune(model, sd, fresh, what).weights;
  }
  const freeze = frozenLayers(model, init.trains);
  const sgd = { momentum: init.momentum, weightDecay: init.weightDecay, nesterov: false, decayExempt: "none" as const, freeze };
  const stepOptions = { ...sgd, batchSize: init.batchSize, frozenWeights: freeze > 0 ? weights : undefined };
  // On WebGPU, the graph's WebGPU forms (BN statistics from reductions, float pool masks: what `--device webgpu` builds
  // in Node); on WASM, the CPU forms, the same graph as `vgg train`.
  const gpu = init.backend === "webgpu" || (init.backend === "auto" && (await hasWebGpu()));
  let step = buildTrainStep(model, { ...stepOptions, device: gpu ? "webgpu" : "cpu" });
  let session: WebSession;
  try {
    session = await createSession(encodeModel(step.spec), { ...TRAIN_SESSION_OPTIONS, backend: gpu ? "webgpu" : "wasm" });
  } catch (err) {
    if (init.backend !== "auto" || !gpu) throw err;
    step = buildTrainStep(model, stepOptions);
    session = await createSession(encodeModel(step.spec), { ...TRAIN_SESSION_OPTIONS, backend: "wasm" });
    cpuStep = () => step;
    fallback = `WebGPU failed: ${err instanceof Error ? err.message.split("\n")[0] : String(err)}`;
  }
  cpuStep = () => buildTrainStep(model, stepOptions);
  run = { init, model, weights, momentum: zeroMomentum(model, sgd), step, session, steps: 0 };
  const trained = step.state.filter((e) => e.kind === "param").reduce((n, e) => n + numel(e.shape), 0);
  const params = stateSpec(model)
    .filter((e) => e.param.trainable)
    .reduce((n, e) => n + numel(e.param.shape), 0);
  const what = init.trains === "all" ? "everything" : init.trains === "classifier" ? "the classifier" : "the last FC layer";
  post({
    type: "ready",
    backend: session.backend,
    fallbackReason: fallback ?? session.fallbackReason,
    threads: rt.threads,
    params,
    trained,
    summary: `training ${what}`,
  });
}

/** `steps` more steps over the data in order (epoch after epoch; a last partial batch is left out), or until stop. */
async function train(steps: number): Promise<void> {
  const r = run;
  if (!r?.data) throw new Error("no training data yet");
  const B = r.init.batchSize;
  const perEpoch = Math.floor(r.data.n / B);
  if (perEpoch === 0) throw new Error(`${r.data.n} images are fewer than one batch of ${B}`);
  const [C, H, W] = r.model.inputShape;
  const per = C * H * W;
  stopAsked = false;
  for (let k = 0; k < steps && !stopAsked; k++) {
    const t0 = performance.now();
    const b = r.steps % perEpoch;
    const x = r.data.x.slice(b * B * per, (b + 1) * B * per);
    const y = BigInt64Array.from(r.data.y.subarray(b * B, (b + 1) * B), (v) => BigInt(v));
    // The step's dropout seed, as the Node trainer derives it from the run's seed and the step number.
    const seed = hash32((r.init.seed ^ hash32(r.steps)) >>> 0) >>> 0;
    const feeds = stepFeeds(r.step, r.weights, r.momentum, {
      x: { dtype: "float32", shape: [B, C, H, W], data: x },
      y: { dtype: "int64", shape: [B], data: y },
      lr: r.init.lr,
      seed,
    });
    const out = await runStep(r, feeds);
    for (const e of r.step.state) (e.kind === "momentum" ? r.momentum : r.weights).set(e.input, out[e.output]);
    r.steps++;
    const ms = performance.now() - t0;
    const loss = (out.loss.data as Float32Array)[0];
    const hits = (out.correct1.data as Float32Array)[0];
    post({
      type: "step",
      step: r.steps,
      epoch: Math.floor((r.steps - 1) / perEpoch) + 1,
      loss,
      acc: hits / B,
      ms,
      imagesPerSecond: (1000 * B) / ms,
    });
    // Let a stop message in between steps.
    await new Promise((res) => setTimeout(res, 0));
  }
  post({ type: "stopped", step: r.steps });
}

/**
 * One step; on WebGPU a failure (an op the provider cannot run in this graph) moves the run to WASM for good, with
 * the step retried there from the same state (a failed run changes no state: the outputs are never applied).
 */
async function runStep(r: Run, feeds: Parameters<WebSession["run"]>[0]): ReturnType<WebSession["run"]> {
  try {
    return await r.session.run(feeds);
  } catch (err) {
    if (r.session.backend !== "webgpu") throw err;
    const reason = `WebGPU failed: ${err instanceof Error ? err.message.split("\n")[0] : String(err)}`;
    await r.session.release();
    r.step = cpuStep();
    r.session = await createSession(encodeModel(r.step.spec), { ...TRAIN_SESSION_OPTIONS, backend: "wasm" });
    post({ type: "fallback", reason });
    return r.session.run(feeds);
  }
}

async function classify(id: number, x: Float32Array): Promise<void> {
  const r = run;
  if (!r) throw new Error("no model yet");
  if (r.infer?.at !== r.steps) {
    await r.infer?.session.release();
    const spec = buildInferenceGraph(r.model, r.weights);
    r.infer = { at: r.steps, session: await createSession(encodeModel(spec), { backend: "wasm" }) };
  }
  const [C, H, W] = r.model.inputShape;
  const out = await r.infer.session.run({ input: { dtype: "float32", shape: [x.length / (C * H * W), C, H, W], data: x } });
  const data = out.logits.data as Float32Array;
  post({ type: "logits", id, data }, [data.buffer]);
}

/** The weights as a `vgg train` checkpoint: torchvision's keys, the model's description in the metadata. */
function exportWeights(): void {
  const r = run;
  if (!r) throw new Error("no model yet");
  const meta = { ...r.init.meta, options: r.model.options };
  const parts = encodeSafetensors(
    r.weights,
    { format: "vgg-onnx", model: JSON.stringify(meta), step: String(r.steps) },
    "the page's weights",
  );
  const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    bytes.set(p, at);
    at += p.length;
  }
  post({ type: "weights", bytes, step: r.steps }, [bytes.buffer]);
}

let queue: Promise<void> = Promise.resolve();

addEventListener("message", (ev: MessageEvent<ToWorker>) => {
  const m = ev.data;
  // A stop must not wait behind the training it stops.
  if (m.type === "stop") {
    stopAsked = true;
    return;
  }
  queue = queue.then(async () => {
    try {
      if (m.type === "init") await start(m);
      else if (m.type === "data") {
        if (!run) throw new Error("no model yet");
        run.data = { x: m.x, y: m.y, n: m.y.length };
      } else if (m.type === "train") await train(m.steps);
      else if (m.type === "classify") await classify(m.id, m.x);
      else if (m.type === "export") exportWeights();
    } catch (err) {
      post({ type: "error", message: err instanceof Error ? err.message : String(err) });
    }
  });
});
