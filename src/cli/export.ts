import { basename } from "node:path";
import { type Command, InvalidArgumentError } from "commander";
import { VggError } from "../errors.js";
import { buildInferenceGraph } from "../graph/infer.js";
import { lowerPrecision } from "../graph/precision.js";
import { resolveWinograd } from "../graph/winograd-infer.js";
import { writeFileAtomic } from "../io/atomic.js";
import { encodeModelParts } from "../onnx/encode.js";
import { weightsFor } from "../predict/predictor.js";
import { checkModelName, checkRepoTarget, TRITON_DEFAULTS, tritonConfig, writeTritonRepo } from "../serve/triton.js";
import { checkTaps } from "../zoo/features.js";
import { buildModel } from "../zoo/model.js";
import { addModelOptions, float, type ModelFlags, positiveInt, resolveModel } from "./options.js";
import { addPrecisionOptions, calibrationPreprocessing, type PrecisionFlags, precisionOptions } from "./precision-flags.js";

type ExportFlags = ModelFlags &
  PrecisionFlags & {
    out?: string;
    tap?: string;
    threads?: number;
    tritonRepo?: string;
    name?: string;
    maxBatch?: number;
    maxDelayMs?: number;
  };

function nonNegative(v: string): number {
  const n = float(v);
  if (n < 0) throw new InvalidArgumentError("must be at least 0.");
  return n;
}

/** The model's name in the repository: --name, else --out's base name without .onnx, else the arch. */
function repoName(o: ExportFlags, arch: string): string {
  if (o.name !== undefined) {
    checkModelName(o.name);
    return o.name;
  }
  if (o.out === undefined) return arch;
  const name = basename(o.out).replace(/\.onnx$/i, "");
  checkModelName(name, `from --out ${basename(o.out)}`);
  return name;
}

export function register(program: Command): void {
  addPrecisionOptions(
    addModelOptions(
      program
        .command("export")
        .description(
          "write the model as a standalone ONNX file (weights as initializers, dynamic batch), in fp32, fp16 or int8, and/or as a Triton model repository",
        )
        .option("--out <model.onnx>", "output file (--out, --triton-repo or both)")
        .option("--triton-repo <dir>", "write a Triton/KServe model repository: DIR/NAME/config.pbtxt and DIR/NAME/1/model.onnx")
        .option("--name <name>", "the model's name in --triton-repo (default: --out's base name without .onnx, else the arch)")
        .option("--max-batch <n>", `--triton-repo's max_batch_size (default ${TRITON_DEFAULTS.maxBatch}, as vgg serve)`, positiveInt)
        .option(
          "--max-delay-ms <ms>",
          `--triton-repo's dynamic batching delay, max_queue_delay_microseconds (default ${TRITON_DEFAULTS.maxDelayMs}, as vgg serve)`,
          nonNegative,
        )
        .option("--input-size <s>", "square input size (default 224)", positiveInt)
        .option("--tap <names>", "comma-separated outputs instead of the logits, e.g. relu2_2,relu4_3")
        .option("--threads <n>", "engine threads for int8 calibration", positiveInt),
      false,
    ),
    { fp16Compute: true, preset: true, winograd: "off" },
  ).action(async (o: ExportFlags) => {
    if (o.out === undefined && o.tritonRepo === undefined) throw new VggError("pass --out FILE.onnx, --triton-repo DIR, or both");
    if (o.tritonRepo === undefined) {
      const given: [string, unknown][] = [
        ["--name", o.name],
        ["--max-batch", o.maxBatch],
        ["--max-delay-ms", o.maxDelayMs],
      ];
      const stray = given.filter(([, v]) => v !== undefined).map(([f]) => f);
      if (stray.length > 0) throw new VggError(`${stray.join(", ")}: only with --triton-repo DIR`);
    }
    const { arch, options } = resolveModel(o);
    const m = buildModel(arch, options);
    const taps = o.tap ? o.tap.split(",") : undefined;
    // Before calibration data or weights are read (a checkpoint's model is only known here).
    if (taps) checkTaps(m, taps);
    // A name Triton cannot take, or one the repository already holds, is refused before the weights are read.
    const repo = o.tritonRepo === undefined ? undefined : { dir: o.tritonRepo, name: repoName(o, m.arch) };
    if (repo) checkRepoTarget(repo.dir, repo.name);
    const p = await precisionOptions(o, o.precision, m.inputShape, () => calibrationPreprocessing(o, m.inputShape));
    // The weights are not kept in a variable: int8 drops the float copy while it calibrates (peak memory).
    const winograd = resolveWinograd(p.winograd, o.precision, "cpu");
    const spec = await lowerPrecision(m, buildInferenceGraph(m, await weightsFor(m, o), { taps, winograd }), p, o.threads);
    const prec = spec.metadata?.precision ?? "fp32";
    const what = `${m.arch}, ${prec}${winograd === "off" ? "" : `, Winograd ${winograd}`}, input [N, ${m.inputShape.join(", ")}]`;
    if (o.out !== undefined) {
      const { parts, length } = encodeModelParts(spec);
      if (length >= 2 ** 31) console.error(`vgg: warning: ${o.out} is over 2 GB, which protobuf readers refuse`);
      await writeFileAtomic(o.out, parts);
      console.log(`wrote ${o.out} (${(length / 2 ** 20).toFixed(1)} MiB, ${what})`);
    }
    if (repo) {
      const config = tritonConfig(spec, {
        name: repo.name,
        maxBatch: o.maxBatch ?? TRITON_DEFAULTS.maxBatch,
        maxDelayMs: o.maxDelayMs ?? TRITON_DEFAULTS.maxDelayMs,
      });
      const w = writeTritonRepo(repo.dir, spec, config);
      const ext = w.externalFiles > 0 ? ` + ${w.externalFiles} external-data files` : "";
      console.log(
        `wrote ${w.dir}/config.pbtxt and ${w.modelFile}${ext} (${(w.bytes / 2 ** 20).toFixed(1)} MiB, ${what}; ` +
          `max_batch_size ${config.maxBatchSize}, max_queue_delay_microseconds ${config.maxQueueDelayMicroseconds})`,
      );
    }
  });
}
