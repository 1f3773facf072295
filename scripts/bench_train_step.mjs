// The ONNX Runtime side of the training-step benchmark (needs `npm run build`): img/s of the whole step graph.
//   node scripts/bench_train_step.mjs [--arch vgg11_bn] [--head compact] [--batch 128] [--size 32] [--steps 8]
//        [--warmup 2] [--profile PREFIX] [--threads 2]
// Prints one JSON line like scripts/torch_train_bench.py.
import { parseArgs } from "node:util";
import { encodeModel } from "../dist/src/graph/onnx.js";
import { buildTrainStep, stepFeeds, TRAIN_SESSION_OPTIONS } from "../dist/src/graph/train-step.js";
import { createSession } from "../dist/src/runtime/ort.js";
import { initWeights } from "../dist/src/weights/init.js";
import { buildModel } from "../dist/src/zoo/model.js";

const { values: a } = parseArgs({
  options: {
    arch: { type: "string", default: "vgg11_bn" },
    head: { type: "string", default: "compact" },
    batch: { type: "string", default: "128" },
    size: { type: "string", default: "32" },
    classes: { type: "string", default: "10" },
    "width-divisor": { type: "string", default: "1" },
    steps: { type: "string", default: "8" },
    warmup: { type: "string", default: "2" },
    threads: { type: "string", default: "2" },
    profile: { type: "string" },
    opt: { type: "string" },
  },
});
const N = Number(a.batch);
const size = Number(a.size);
const classes = Number(a.classes);
const m = buildModel(a.arch, { head: a.head, numClasses: classes, inputSize: size, widthDivisor: Number(a["width-divisor"]), dropout: 0 });
const t0 = performance.now();
const step = buildTrainStep(m, { batchSize: N, ...(a.opt ? JSON.parse(a.opt) : {}) });
const bytes = encodeModel(step.spec);
const session = await createSession(bytes, { ...TRAIN_SESSION_OPTIONS, threads: Number(a.threads), profilePrefix: a.profile });
const buildMs = performance.now() - t0;
let sd = initWeights(m, "torchvision", 0);
let mom;
const x = { dtype: "float32", shape: [N, 3, size, size], data: Float32Array.from({ length: N * 3 * size * size }, () => Math.random() * 2 - 1) };
const y = { dtype: "int64", shape: [N], data: BigInt64Array.from({ length: N }, (_, k) => BigInt(k % classes)) };
const times = [];
const warm = Number(a.warmup);
for (let k = 0; k < warm + Number(a.steps); k++) {
  const t = performance.now();
  const r = await session.run(stepFeeds(step, sd, mom, { x, y, lr: 0.01, seed: k }));
  const nsd = new Map();
  const nm = new Map();
  for (const e of step.state) (e.kind === "momentum" ? nm : nsd).set(e.input, r[e.output]);
  sd = nsd;
  mom = nm;
  const dt = performance.now() - t;
  if (k >= warm) times.push(dt);
}
if (a.profile) session.endProfiling();
const sorted = [...times].sort((p, q) => p - q);
const med = sorted[sorted.length >> 1];
console.log(
  JSON.stringify({
    engine: "onnxruntime",
    arch: a.arch,
    head: a.head,
    batch: N,
    size,
    nodes: step.spec.nodes.length,
    build_ms: Math.round(buildMs),
    ms: times.map((t) => Math.round(t * 10) / 10),
    median_ms: Math.round(med * 10) / 10,
    img_s: Math.round((N / med) * 10000) / 10,
    best_img_s: Math.round((N / sorted[0]) * 10000) / 10,
    peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
  }),
);
