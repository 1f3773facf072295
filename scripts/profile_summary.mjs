// Summarise an ONNX Runtime JSON profile: time per op type and per node (kernel time, summed over runs).
//   node scripts/profile_summary.mjs PROFILE.json [--top 30] [--skip-runs 1]   (the first runs are warm-up)
import { readFileSync } from "node:fs";

const file = process.argv[2];
const top = Number(process.argv[process.argv.indexOf("--top") + 1] || 30) || 30;
const ev = JSON.parse(readFileSync(file, "utf8"));
const skipAt = process.argv.indexOf("--skip-runs");
const skip = skipAt > 0 ? Number(process.argv[skipAt + 1]) : 1;
const allRuns = ev.filter((e) => e.name === "model_run").sort((p, q) => p.ts - q.ts);
const runs = allRuns.slice(skip);
const from = runs.length ? runs[0].ts : 0;
const byType = new Map();
const byNode = new Map();
let total = 0;
for (const e of ev) {
  if (e.cat !== "Node" || !e.name.endsWith("_kernel_time") || e.ts < from) continue;
  const t = e.args.op_name;
  const n = e.name.replace(/_kernel_time$/, "");
  byType.set(t, (byType.get(t) ?? 0) + e.dur);
  byNode.set(n, { t, d: (byNode.get(n)?.d ?? 0) + e.dur });
  total += e.dur;
}
const nr = runs.length || 1;
const runMs = runs.reduce((s, e) => s + e.dur, 0) / nr / 1000;
console.log(`runs ${runs.length}, mean run ${runMs.toFixed(1)} ms, kernel time per run ${(total / nr / 1000).toFixed(1)} ms`);
for (const [t, d] of [...byType].sort((p, q) => q[1] - p[1]))
  console.log(`${t.padEnd(24)} ${(d / nr / 1000).toFixed(1).padStart(8)} ms ${((100 * d) / total).toFixed(1).padStart(5)}%`);
// Groups by what the node does (node names come from src/ops and src/ops/winograd.ts; first match wins).
const gemm = (t) => t === "MatMul" || t === "Gemm";
const groups = [
  ["conv GEMM: weight gradient", (n, t) => gemm(t) && /(_wino_dw_gemm|^features_\d+_dw)$/.test(n)],
  ["conv GEMM: input gradient", (n, t) => gemm(t) && /(_bwd_wino_gemm|^features_\d+_dx)$/.test(n)],
  ["conv GEMM: forward", (n, t) => gemm(t) && /(_wino_gemm|^features_\d+_gemm)$/.test(n)],
  [
    "Winograd transforms and tiling",
    (n) => /(wino_in|wino_out|_tiles|_hwcn|_untile|wino_dy|wino_dw_sum|wino_dw_oc|wino_kernel|_wino_dw|_pad)(_\d+)?$/.test(n),
  ],
  ["im2col gathers", (n) => /im2col/.test(n)],
  ["BatchNorm forward/backward", (n) => /^features_\d+(_bx_d|_dbeta|_sum_dy_x|_dgamma|_stat_in\d|_invstd|_dx)?(_\d+)?$/.test(n)],
  ["max-pool (+fused ReLU)", (n) => /(pool\d|_argmax|_mask|_relu_dx|_max_rows|_max|_crop)/.test(n)],
  ["SGD update", (n) => /(_dp|_buf|_new)$/.test(n)],
  ["classifier, loss", (n) => /^(classifier|log_softmax|onehot|loss|dlogits|topk|correct)/.test(n)],
];
const byGroup = new Map();
for (const [n, { t, d }] of byNode) {
  const short = n.replace(/^n_/, "");
  const hit = groups.find(([, f]) => f(short, t));
  const key = hit ? hit[0] : `unnamed ${t}`;
  byGroup.set(key, (byGroup.get(key) ?? 0) + d);
}
console.log("--- by role (node names)");
for (const [gname, d] of [...byGroup].sort((p, q) => q[1] - p[1]))
  console.log(`${gname.padEnd(34)} ${(d / nr / 1000).toFixed(1).padStart(8)} ms ${((100 * d) / total).toFixed(1).padStart(5)}%`);
console.log("--- top nodes");
for (const [n, { t, d }] of [...byNode].sort((p, q) => q[1].d - p[1].d).slice(0, top))
  console.log(`${n.padEnd(40)} ${t.padEnd(14)} ${(d / nr / 1000).toFixed(2).padStart(8)} ms`);
