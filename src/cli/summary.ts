import type { Command } from "commander";
import { estimateInference, estimateTraining, fmtMiB } from "../graph/memory.js";
import { numel } from "../tensor.js";
import { buildModel, macCount, paramCount } from "../zoo/model.js";
import { addArchOptions, type ModelFlags, modelOptions, positiveInt } from "./options.js";
import { fmtInt, table } from "./table.js";

export function register(program: Command): void {
  addArchOptions(
    program
      .command("summary")
      .description("layer table: name, kind, output shape, parameters, multiply-adds")
      .argument("[arch]", "model (or --arch)")
      .option("--input-size <s>", "square input size (default 224)", positiveInt)
      .option("--batch-size <n>", "batch size of the memory estimates (default: 1 for inference, 128 for training)", positiveInt)
      .option("--json", "print JSON"),
    false,
  ).action((arch: string | undefined, o: ModelFlags & { json?: boolean; batchSize?: number }) => {
    const m = buildModel(arch ?? o.arch ?? "", modelOptions(o));
    const layers = m.layers.map((l) => ({
      name: l.name,
      kind: l.kind,
      tap: l.tap ?? null,
      outputShape: l.outShape,
      params: l.params.filter((p) => p.trainable).reduce((n, p) => n + numel(p.shape), 0),
      macs: l.macs,
    }));
    const total = { params: paramCount(m), macs: macCount(m), weightBytes: paramCount(m) * 4 };
    const inferBatch = o.batchSize ?? 1;
    const trainBatch = o.batchSize ?? 128;
    const memory = {
      inference: { batch: inferBatch, ...estimateInference(m, inferBatch) },
      training: { batch: trainBatch, ...estimateTraining(m, trainBatch) },
    };
    if (o.json) return console.log(JSON.stringify({ arch: m.arch, options: m.options, layers, total, memory }));
    const rows = layers.map((l) => [
      l.name,
      l.kind + (l.tap ? ` (${l.tap})` : ""),
      `[${l.outputShape.join(", ")}]`,
      l.params ? fmtInt(l.params) : "-",
      l.macs ? fmtInt(l.macs) : "-",
    ]);
    console.log(`${m.arch}: input [${m.inputShape.join(", ")}], ${m.options.numClasses} classes, ${m.options.head} head`);
    console.log(table(["layer", "kind", "output", "params", "mult-adds"], rows));
    console.log(`total params: ${fmtInt(total.params)}  (${(total.weightBytes / 2 ** 20).toFixed(1)} MiB fp32)`);
    console.log(`total mult-adds: ${fmtInt(total.macs)}  (${(total.macs / 1e9).toFixed(2)} GMACs)`);
    const tr = memory.training.parts;
    console.log(
      `peak memory, estimated: inference at batch ${inferBatch} ${fmtMiB(memory.inference.total)}; training at batch ${trainBatch} ${fmtMiB(memory.training.total)} (weights and optimizer ${fmtMiB(tr.weights)}, activations ${fmtMiB(tr.activations)}, workspace ${fmtMiB(tr.workspace)})`,
    );
  });
}
