/**
 * Which nodes of each graph ORT's WebGPU provider takes and which it leaves to the CPU provider (ORT copies tensors
 * between the two around those): read from ORT's verbose log ("Node placements") of a session created in a child
 * process, whose stderr this process reads. For scripts/device-check.sh; needs a WebGPU adapter.
 *
 *   node dist/bench/webgpu-placement.js [--cpu]   # one JSON object: per graph, nodes per provider, the CPU nodes' op types
 *
 * Placement depends on op types and shapes' ranks, not on widths: the graphs are the benchmarks' at width / 8.
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { buildInferenceGraph } from "../src/graph/infer.js";
import { buildTrainStep, TRAIN_SESSION_OPTIONS } from "../src/graph/train-step.js";
import { encodeModel, type ModelSpec } from "../src/onnx/encode.js";
import { createSession } from "../src/runtime/ort.js";
import { initWeights } from "../src/weights/init.js";
import { buildModel, type ModelOptions } from "../src/zoo/model.js";

const GRAPHS: Record<string, () => ModelSpec> = {
  "infer vgg16 224": () => infer("vgg16", { widthDivisor: 8 }),
  "infer vgg11_lrn 224": () => infer("vgg11_lrn", { widthDivisor: 8 }),
  "train vgg11_bn compact 32 b128": () => train("vgg11_bn", { head: "compact", numClasses: 10, widthDivisor: 8, inputSize: 32 }, 128),
  "train vgg16_bn compact 224 b32": () => train("vgg16_bn", { head: "compact", numClasses: 10, widthDivisor: 8, inputSize: 224 }, 32),
  "train vgg11 paper 64 b8 dropout": () => train("vgg11", { numClasses: 10, widthDivisor: 8, inputSize: 64, dropout: 0.5 }, 8),
};

function infer(arch: string, o: ModelOptions): ModelSpec {
  const m = buildModel(arch, o);
  return buildInferenceGraph(m, initWeights(m, "torchvision", 0));
}

function train(arch: string, o: ModelOptions, batchSize: number): ModelSpec {
  return buildTrainStep(buildModel(arch, { dropout: 0, ...o }), { batchSize, device: "webgpu" }).spec;
}

interface Placement {
  nodes: Record<string, number>;
  cpuOps: Record<string, number>;
  error?: string;
}

/** ORT's "Node placements" lines: `All nodes placed on [EP]. Number of nodes: N`, or per EP `Node(s) placed on ...` and one `  OpType (name)` line per node. */
export function parsePlacement(log: string): Placement {
  const out: Placement = { nodes: {}, cpuOps: {} };
  let ep = "";
  for (const line of log.split("\n")) {
    if (!line.includes("VerifyEachNodeIsAssignedToAnEp]")) continue;
    const text = line.slice(line.indexOf("]") + 1);
    const head = /placed on \[(\w+)\]\. Number of nodes: (\d+)/.exec(text);
    if (head) {
      ep = head[1];
      out.nodes[ep] = Number(head[2]);
      continue;
    }
    const node = /^\s+(\w+) \(/.exec(text);
    if (node && ep === "CPUExecutionProvider") out.cpuOps[node[1]] = (out.cpuOps[node[1]] ?? 0) + 1;
  }
  return out;
}

const self = fileURLToPath(import.meta.url);
// --cpu: the same on the CPU provider (checks this script where there is no adapter).
const device = process.argv.includes("--cpu") ? "cpu" : "webgpu";
const one = process.argv.indexOf("--one");
if (one >= 0) {
  const name = process.argv[one + 1];
  try {
    const s = await createSession(encodeModel(GRAPHS[name]()), { ...TRAIN_SESSION_OPTIONS, device, logSeverity: 0 });
    await s.release();
  } catch (err) {
    console.log(JSON.stringify({ error: err instanceof Error ? err.message : String(err) }));
  }
} else {
  const result: Record<string, Placement> = {};
  for (const name of Object.keys(GRAPHS)) {
    const args = [self, "--one", name, ...(device === "cpu" ? ["--cpu"] : [])];
    const r = spawnSync(process.execPath, args, { encoding: "utf8", maxBuffer: 1 << 30, timeout: 120_000 });
    const p = parsePlacement(r.stderr);
    const last = r.stdout.trim().split("\n").pop() ?? "";
    if (last.startsWith("{")) p.error = (JSON.parse(last) as { error: string }).error.slice(0, 500);
    else if (r.status !== 0) p.error = `exit ${r.status} ${r.signal ?? ""}`.trim();
    result[name] = p;
  }
  console.log(JSON.stringify(result, null, 1));
}
