import { mkdirSync } from "node:fs";
import { basename, extname, join } from "node:path";
import { type Command, Option } from "commander";
import { PRESETS, type PresetName } from "../data/preprocessing.js";
import { VggError } from "../errors.js";
import { checkMemory, estimateInference } from "../graph/memory.js";
import { fsError } from "../io/atomic.js";
import { writeNpy } from "../io/npy.js";
import { featureGrid, writeGrayPng } from "../predict/grid.js";
import { expandInputs, type Skipped } from "../predict/inputs.js";
import { type Prediction, predictFiles } from "../predict/predict.js";
import { Predictor } from "../predict/predictor.js";
import { weightsPreprocessing } from "../predict/preprocess.js";
import type { DeviceChoice } from "../runtime/device.js";
import { type ModelMeta, readModelMeta } from "../weights/model-meta.js";
import { checkTaps } from "../zoo/features.js";
import { modelLabels } from "../zoo/labels.js";
import { buildModel } from "../zoo/model.js";
import { addDeviceOption, addModelOptions, commandDevice, type ModelFlags, positiveInt, resolveModel } from "./options.js";
import { addPrecisionOptions, type PrecisionFlags, precisionOptions } from "./precision-flags.js";

interface PredictFlags extends Omit<ModelFlags, "arch">, PrecisionFlags {
  arch?: string;
  inputSize?: number;
  preset?: PresetName;
  top: number;
  labels?: string;
  json?: boolean;
  batchSize: number;
  tap?: string;
  out?: string;
  saveInput?: string;
  threads?: number;
  device: DeviceChoice;
}

/** Model flags that a checkpoint's own description replaces (they apply with --arch only). */
export function register(program: Command): void {
  const cmd = addPrecisionOptions(
    addModelOptions(
      program
        .command("predict")
        .description("classify image files (JPEG, PNG, WebP; directories and glob patterns too): top-k classes with probabilities")
        .argument("<images...>", "image files, directories (their files, not sub-directories) or quoted patterns like 'imgs/*.jpg'")
        .option("--input-size <s>", "network input size (default 224; a checkpoint's own)", positiveInt)
        .addOption(
          new Option(
            "--preset <name>",
            "preprocessing: torchvision (RGB, ImageNet mean/std) or caffe (BGR 0-255 minus mean); default: a checkpoint's own, else torchvision",
          ).choices(PRESETS),
        )
        .option("--top <k>", "classes to show per image", positiveInt, 5)
        .option("--labels <file>", "class names: one per line, or a JSON array (default: the checkpoint's, or ImageNet's for 1000 classes)")
        .option("--json", "print JSON: [{file, top: [{index, label, probability}]}]")
        .option("--batch-size <n>", "images per engine run", positiveInt, 8)
        .option("--tap <names>", "also save these feature maps (comma-separated, e.g. relu1_2,pool5) as .npy and a PNG grid, in --out")
        .option("--out <dir>", "directory for --tap outputs")
        .option("--save-input <x.npy>", "also write the preprocessed images as one float32 NCHW .npy")
        .option("--threads <n>", "engine threads", positiveInt),
      false,
    ),
    {
      calibrateHelp:
        "int8 calibration images: a float32 NCHW .npy preprocessed as the model's input, or a directory/pattern of image files (preprocessed as the images to classify)",
    },
  );
  addDeviceOption(cmd).action(async (images: string[], o: PredictFlags) => {
    const taps = o.tap ? unique(o.tap.split(",").map((s) => s.trim())) : [];
    if (taps.length > 0 && !o.out) throw new VggError("--tap needs --out DIR");
    if (o.out && taps.length === 0) throw new VggError("--out is for --tap outputs: give --tap NAME");

    // Skipped files are reported as they come, but held back until an image has run: if none does, a single bad
    // input gives just one error line.
    const { files, skipped } = expandInputs(images);
    const held: Skipped[] = [...skipped];
    let ran = 0;
    const report = (s: Skipped) => console.error(`vgg: skipped ${s.file}: ${s.reason}`);
    const onSkip = (s: Skipped) => (ran > 0 ? report(s) : held.push(s));
    const noneRan = () => {
      if (held.length === 1) return new VggError(held[0].reason, held[0].file);
      held.forEach(report);
      return new VggError(held.length === 0 ? "no images given" : `none of the ${held.length} inputs could be read as an image`);
    };
    if (files.length === 0) throw noneRan();
    const device = await commandDevice(o.device);
    if (o.out) {
      try {
        mkdirSync(o.out, { recursive: true });
      } catch (err) {
        throw fsError(o.out, err, "create");
      }
    }

    // A checkpoint written by `vgg train` describes its model, labels and preprocessing; anything else needs --arch.
    const meta: ModelMeta | undefined = o.weights?.endsWith(".safetensors") ? readModelMeta(o.weights) : undefined;
    const { arch, options } = resolveModel(o as ModelFlags, o.arch ? (o.inputSize ?? 224) : undefined);
    const planned = buildModel(arch, options);
    // Before calibration images or weights are read (a checkpoint's model is only known here).
    if (taps.length > 0) checkTaps(planned, taps);
    const [channels, size] = planned.inputShape;
    checkMemory(`inference with ${arch} at batch ${o.batchSize}`, estimateInference(planned, o.batchSize), "use a smaller --batch-size");
    const prep = weightsPreprocessing(o.weights, o.preset, planned.inputShape);
    const predictor = await Predictor.create(arch, {
      ...options,
      ...(await precisionOptions(o, o.precision, [channels, size, size], () => prep)),
      weights: o.weights,
      init: o.init,
      seed: o.seed,
      taps: ["logits", ...taps.filter((t) => t !== "logits")],
      threads: o.threads,
      device,
    });
    const model = predictor.model;
    const numClasses = model.options.numClasses;

    const labels = modelLabels(numClasses, o.labels, meta?.labels);

    const stems = new Map<string, number>();
    const results: { file: string; top: Prediction["top"] }[] = [];
    const inputs: Float32Array[] = [];
    for await (const p of predictFiles(predictor, files, { preprocessing: prep, labels, top: o.top, batchSize: o.batchSize, onSkip })) {
      if (ran++ === 0) held.splice(0).forEach(report);
      if (o.saveInput) inputs.push(Float32Array.from(p.input));
      if (o.out) await saveTaps(o.out, uniqueStem(p.file, stems), p, taps);
      if (o.json) results.push({ file: p.file, top: p.top });
      else printTop(p);
    }
    await predictor.release();
    if (ran === 0) throw noneRan();
    if (o.json) console.log(JSON.stringify(results, null, 1));
    if (o.saveInput) {
      const data = new Float32Array(inputs.length * inputs[0].length);
      for (const [i, x] of inputs.entries()) data.set(x, i * x.length);
      writeNpy(o.saveInput, { dtype: "float32", shape: [inputs.length, ...model.inputShape], data });
    }
  });
}

function unique(xs: string[]): string[] {
  return [...new Set(xs.filter((x) => x !== ""))];
}

function printTop(p: Prediction): void {
  // Without class names the label is the index itself (defaultLabels): print it once.
  const label = (t: Prediction["top"][number]) => (t.label === String(t.index) ? "" : `  ${t.label}`);
  const lines = p.top.map((t) => `  ${(100 * t.probability).toFixed(2).padStart(6)}%  ${String(t.index).padStart(4)}${label(t)}`);
  console.log([p.file, ...lines].join("\n"));
}

/** The file name without its extension, made unique among this run's outputs (cat, cat-2, ...). */
function uniqueStem(file: string, seen: Map<string, number>): string {
  const stem = basename(file, extname(file)) || basename(file);
  const n = (seen.get(stem) ?? 0) + 1;
  seen.set(stem, n);
  return n === 1 ? stem : `${stem}-${n}`;
}

async function saveTaps(dir: string, stem: string, p: Prediction, taps: string[]): Promise<void> {
  for (const tap of taps) {
    const t = p.outputs[tap];
    const base = join(dir, `${stem}.${tap}`);
    writeNpy(`${base}.npy`, { dtype: "float32", shape: [1, ...t.shape], data: t.data });
    await writeGrayPng(`${base}.png`, featureGrid(t.data as Float32Array, t.shape));
  }
}
