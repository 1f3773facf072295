import type { Command } from "commander";
import { buildInferenceGraph } from "../graph/infer.js";
import { encodeModelParts } from "../graph/onnx.js";
import { weightsFor } from "../predictor.js";
import { writeFileAtomic } from "../weights/atomic.js";
import { buildModel } from "../zoo/model.js";
import { addModelOptions, type ModelFlags, modelOptions, positiveInt } from "./options.js";

export function register(program: Command): void {
  addModelOptions(
    program
      .command("export")
      .description("write the model as a standalone ONNX file (weights as initializers, dynamic batch)")
      .requiredOption("--out <model.onnx>", "output file")
      .option("--input-size <s>", "square input size (default 224)", positiveInt)
      .option("--tap <names>", "comma-separated outputs instead of the logits, e.g. relu2_2,relu4_3"),
  ).action(async (o: ModelFlags & { out: string; tap?: string }) => {
    const m = buildModel(o.arch, modelOptions(o));
    const w = await weightsFor(m, o);
    const spec = buildInferenceGraph(m, w, { taps: o.tap ? o.tap.split(",") : undefined });
    const { parts, length } = encodeModelParts(spec);
    if (length >= 2 ** 31) console.error(`vgg: warning: ${o.out} is over 2 GB, which protobuf readers refuse`);
    await writeFileAtomic(o.out, parts);
    console.log(`wrote ${o.out} (${(length / 2 ** 20).toFixed(1)} MiB, ${m.arch}, input [N, ${m.inputShape.join(", ")}])`);
  });
}
