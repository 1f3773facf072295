import { statSync } from "node:fs";
import { type Command, Option } from "commander";
import { PRESETS, type PresetName } from "../data/preprocessing.js";
import { VggError } from "../errors.js";
import { type ExtractedFeatures, extractFeatures, FEATURE_POOLS, type FeaturePool, isNpyInput } from "../features/extract.js";
import { checkMemory, estimateInference } from "../graph/memory.js";
import { readNpy } from "../io/npy.js";
import type { Skipped } from "../predict/inputs.js";
import { Predictor } from "../predict/predictor.js";
import { weightsPreprocessing } from "../predict/preprocess.js";
import type { Tensor } from "../tensor.js";
import { writeSafetensors } from "../weights/safetensors.js";
import { checkTaps } from "../zoo/features.js";
import { buildModel } from "../zoo/model.js";
import { addModelOptions, type ModelFlags, positiveInt, resolveModel } from "./options.js";

interface FeaturesFlags extends Omit<ModelFlags, "arch"> {
  arch?: string;
  tap: string;
  out: string;
  pool: FeaturePool;
  batchSize: number;
  preset?: PresetName;
  inputSize?: number;
  threads?: number;
}

export function register(program: Command): void {
  addModelOptions(
    program
      .command("features")
      .description("features at named taps for images or a preprocessed .npy batch, one tensor per tap in a .safetensors file")
      .argument(
        "<inputs...>",
        "image files, directories, quoted patterns like 'imgs/*.jpg', or one float32 NCHW .npy (already preprocessed)",
      )
      .requiredOption("--tap <names>", "taps, comma-separated (relu1_1 ... relu5_4, pool1 ... pool5, fc6, fc7, logits)")
      .requiredOption("--out <file.safetensors>", "output: one tensor per tap, the input names in __metadata__.files")
      .addOption(
        new Option("--pool <how>", "avg/max: one value per channel ([N, C]); none: the maps ([N, C, H, W])")
          .choices(FEATURE_POOLS)
          .default("avg"),
      )
      .option("--batch-size <n>", "images per engine run", positiveInt, 8)
      .addOption(new Option("--preset <name>", "image preprocessing (default: a checkpoint's own, else torchvision)").choices(PRESETS))
      .option("--input-size <s>", "network input size (default 224; a checkpoint's own; a .npy's own)", positiveInt)
      .option("--threads <n>", "engine threads", positiveInt),
    false,
  ).action(async (inputs: string[], o: FeaturesFlags) => {
    const taps = [...new Set(o.tap.split(",").map((s) => s.trim()))].filter((s) => s !== "");
    refuseDirectory(o.out);
    const x = isNpyInput(inputs) ? readBatch(inputs[0], o) : undefined;
    const size = x ? x.shape[2] : o.inputSize;

    const { arch, options } = resolveModel(o as ModelFlags, o.arch ? (size ?? 224) : size);
    const planned = buildModel(arch, options);
    checkTaps(planned, taps);
    checkMemory(`inference with ${arch} at batch ${o.batchSize}`, estimateInference(planned, o.batchSize), "use a smaller --batch-size");
    const prep = x ? undefined : weightsPreprocessing(o.weights, o.preset, planned.inputShape);
    const predictor = await Predictor.create(arch, {
      ...options,
      weights: o.weights,
      init: o.init,
      seed: o.seed,
      taps,
      threads: o.threads,
    });

    const progress = progressLine(x ? "rows" : "images");
    const held: Skipped[] = [];
    let result: ExtractedFeatures;
    try {
      result = await extractFeatures(predictor, x ?? inputs, {
        taps,
        inputName: inputs[0],
        pool: o.pool,
        batchSize: o.batchSize,
        preprocessing: prep,
        onProgress: progress.update,
        onSkip: (s) => held.push(s),
      });
    } finally {
      progress.done();
      await predictor.release();
    }
    if (result.files.length === 0) throw noneRead(held);
    for (const s of held) console.error(`vgg: skipped ${s.file}: ${s.reason}`);
    const metadata = {
      files: JSON.stringify(result.files),
      taps: JSON.stringify(taps),
      pool: o.pool,
      arch,
      preprocessing: prep?.name ?? "npy",
      input_size: String(planned.inputShape[1]),
    };
    // Atomic: an interrupted or failed write leaves any earlier file as it was.
    writeSafetensors(o.out, new Map(taps.map((t) => [t, result.features[t]])), metadata);
  });
}

/** Found before the model runs, not when writing after it. */
function refuseDirectory(out: string): void {
  let dir = false;
  try {
    dir = statSync(out).isDirectory();
  } catch {
    // absent: written at the end
  }
  if (dir) throw new VggError("is a directory: --out takes a .safetensors file name", out);
}

/** A preprocessed batch: its H (= W) is the model's input size (--input-size may only repeat it), its C the channels. */
function readBatch(file: string, o: FeaturesFlags): Tensor {
  if (o.preset) throw new VggError("--preset is for image inputs; a .npy is already preprocessed", file);
  const x = readNpy(file);
  if (x.dtype !== "float32") throw new VggError(`want float32 (preprocessed NCHW), got ${x.dtype}`, file);
  if (x.shape.length !== 4) throw new VggError(`want a float32 NCHW array, got shape [${x.shape.join(", ")}]`, file);
  const [n, c, h, w] = x.shape;
  if (n === 0) throw new VggError("the batch is empty", file);
  if (h !== w) throw new VggError(`images must be square, got ${h}x${w}`, file);
  if (o.inputSize !== undefined && o.inputSize !== h) throw new VggError(`the arrays are ${h}x${w}, not --input-size ${o.inputSize}`, file);
  if (o.arch && o.inChannels === undefined) o.inChannels = c;
  return x;
}

/** --preset, else a `vgg train` checkpoint's own evaluation transform, else torchvision's (as `vgg predict`). */

function noneRead(held: Skipped[]): VggError {
  if (held.length === 1) return new VggError(held[0].reason, held[0].file);
  for (const s of held) console.error(`vgg: skipped ${s.file}: ${s.reason}`);
  return new VggError(held.length === 0 ? "no inputs given" : `none of the ${held.length} inputs could be read as an image`);
}

/** `features 12/100 images` redrawn in place on a terminal; nothing when stderr is a file or a pipe. */
function progressLine(unit: string): { update: (done: number, total: number) => void; done: () => void } {
  const tty = Boolean(process.stderr.isTTY);
  let shown = false;
  return {
    update: (done, total) => {
      if (!tty) return;
      shown = true;
      process.stderr.write(`\rfeatures ${done}/${total} ${unit}\x1b[K`);
    },
    done: () => {
      if (shown) process.stderr.write("\r\x1b[K");
    },
  };
}
