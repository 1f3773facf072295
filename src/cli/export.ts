import type { Command } from "commander";
import { buildInferenceGraph } from "../graph/infer.js";
import { lowerPrecision } from "../graph/precision.js";
import { writeFileAtomic } from "../io/atomic.js";
import { encodeModelParts } from "../onnx/encode.js";
import { weightsFor } from "../predict/predictor.js";
import { checkTaps } from "../zoo/features.js";
import { buildModel } from "../zoo/model.js";
import { addModelOptions, type ModelFlags, positiveInt, resolveModel } from "./options.js";
import { addPrecisionOptions, calibrationPreprocessing, type PrecisionFlags, precisionOptions } from "./precision-flags.js";

type ExportFlags = ModelFlags & PrecisionFlags & { out: string; tap?: string; threads?: number };

export function register(program: Command): void {
  addPrecisionOptions(
    addModelOptions(
      program
        .command("export")
        .description("write the model as a standalone ONNX file (weights as initializers, dynamic batch), in fp32, fp16 or int8")
        .requiredOption("--out <model.onnx>", "output file")
        .option("--input-size <s>", "square input size (default 224)", positiveInt)
        .option("--tap <names>", "comma-separated outputs instead of the logits, e.g. relu2_2,relu4_3")
        .option("--threads <n>", "engine threads for int8 calibration", positiveInt),
      false,
    ),
    { fp16Compute: true, preset: true },
  ).action(async (o: ExportFlags) => {
    const { arch, options } = resolveModel(o);
    const m = buildModel(arch, options);
    const taps = o.tap ? o.tap.split(",") : undefined;
    // Before calibration data or weights are read (a checkpoint's model is only known here).
    if (taps) checkTaps(m, taps);
    const p = await precisionOptions(o, o.precision, m.inputShape, () => calibrationPreprocessing(o, m.inputShape));
    // The weights are not kept in a variable: int8 drops the float copy while it calibrates (peak memory).
    const spec = await lowerPrecision(m, buildInferenceGraph(m, await weightsFor(m, o), { taps }), p, o.threads);
    const { parts, length } = encodeModelParts(spec);
    if (length >= 2 ** 31) console.error(`vgg: warning: ${o.out} is over 2 GB, which protobuf readers refuse`);
    await writeFileAtomic(o.out, parts);
    const prec = spec.metadata?.precision ?? "fp32";
    console.log(`wrote ${o.out} (${(length / 2 ** 20).toFixed(1)} MiB, ${m.arch}, ${prec}, input [N, ${m.inputShape.join(", ")}])`);
  });
}
