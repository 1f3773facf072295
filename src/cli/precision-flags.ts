/** `--precision` and the int8 calibration flags, shared by export, infer, predict, eval and bench infer. */
import { statSync } from "node:fs";
import { type Command, InvalidArgumentError, Option } from "commander";
import { PRESETS, type Preprocessing, type PresetName } from "../data/preprocessing.js";
import { VggError } from "../errors.js";
import { type CalibrationMethod, PRECISIONS, type Precision, type PrecisionOptions } from "../graph/precision.js";
import type { WinogradChoice } from "../graph/winograd-infer.js";
import { readNpy } from "../io/npy.js";
import { expandInputs } from "../predict/inputs.js";
import { loadImage, weightsPreprocessing } from "../predict/preprocess.js";
import { numel, type Tensor } from "../tensor.js";
import { float, positiveInt } from "./options.js";

export interface PrecisionFlags {
  precision: Precision;
  calibrate?: string;
  calibrateRandom?: number | true;
  calibrateCount?: number;
  calibrateMethod?: CalibrationMethod;
  percentile?: number;
  activations?: "uint8" | "int8";
  perTensor?: boolean;
  reduceRange?: boolean;
  fp16Compute?: boolean;
  preset?: PresetName;
  winograd?: WinogradChoice;
}

function precisionArg(v: string): Precision {
  if (!(PRECISIONS as readonly string[]).includes(v)) throw new InvalidArgumentError(`must be one of ${PRECISIONS.join(", ")}.`);
  return v as Precision;
}

export function addPrecisionOptions(
  cmd: Command,
  o: { calibrateHelp?: string; fp16Compute?: boolean; list?: boolean; preset?: boolean; winograd?: WinogradChoice } = {},
): Command {
  const p = o.list
    ? new Option(
        "--precision <p>",
        `${PRECISIONS.join(", ")}, or a comma-separated list to compare (agreement with fp32 is reported)`,
      ).default("fp32")
    : new Option("--precision <p>", "fp32, fp16 (weights stored as float16) or int8 (static QDQ quantization; needs --calibrate)")
        .argParser(precisionArg)
        .default("fp32");
  cmd
    .addOption(p)
    .option(
      "--calibrate <src>",
      o.calibrateHelp ??
        "int8 calibration images: a float32 NCHW .npy preprocessed as the model's input, or a directory/pattern of image files (preprocessed with --preset, or a checkpoint's own)",
    )
    .option("--calibrate-count <n>", "use at most n calibration images (default: all, up to 1000 files from a directory)", positiveInt)
    .addOption(
      new Option(
        "--calibrate-random [n]",
        "int8 with n random calibration images (default 8): for speed tests only, the outputs are garbage",
      ).argParser(positiveInt),
    )
    .addOption(
      new Option("--calibrate-method <m>", "activation range: min-max of the calibration activations, or a percentile")
        .choices(["minmax", "percentile"])
        .default("minmax"),
    )
    .option("--percentile <p>", "for --calibrate-method percentile: share of values inside the range, in percent", float, 99.99)
    .addOption(
      new Option("--activations <type>", "int8: activations as uint8 (U8S8, ORT's x86 default) or int8 (S8S8)")
        .choices(["uint8", "int8"])
        .default("uint8"),
    )
    .option("--per-tensor", "int8: one weight scale per tensor instead of per output channel")
    .option("--reduce-range", "int8: 7-bit weights (default on x86 CPUs without VNNI, where u8 x s8 sums saturate)")
    .option("--no-reduce-range", "int8: 8-bit weights even on a CPU without VNNI")
    .addOption(
      new Option("--winograd <w>", "fp32 on the cpu: Winograd F(4x4,3x3) for the 3x3 convs; auto picks the layers where it measured faster")
        .choices(["auto", "on", "off"])
        .default(o.winograd ?? "auto"),
    );
  if (o.preset) {
    cmd.addOption(
      new Option(
        "--preset <name>",
        "preprocessing of --calibrate image files: torchvision or caffe (default: a checkpoint's own, else torchvision)",
      ).choices(PRESETS),
    );
  }
  if (o.fp16Compute)
    cmd.option(
      "--fp16-compute",
      "fp16: compute in float16 as well (for engines with fp16 kernels, e.g. WebGPU; slower on ORT's CPU build)",
    );
  return cmd;
}

/** The precision options of one precision, with calibration data loaded if int8 needs it. */
export async function precisionOptions(
  f: PrecisionFlags,
  precision: Precision,
  inputShape: number[],
  preprocessing: () => Preprocessing,
  calibration?: () => Promise<Tensor>,
): Promise<PrecisionOptions> {
  const base: PrecisionOptions = {
    precision,
    calibrationMethod: f.calibrateMethod,
    percentile: f.percentile,
    quantize: { activations: f.activations, perChannel: !f.perTensor, reduceRange: f.reduceRange },
    fp16Compute: f.fp16Compute,
    winograd: f.winograd,
  };
  if (precision !== "int8") return base;
  if (f.calibrate && f.calibrateRandom) throw new VggError("give --calibrate or --calibrate-random, not both");
  if (f.calibrateRandom) return { ...base, calibrateRandom: f.calibrateRandom === true ? 8 : f.calibrateRandom };
  if (!f.calibrate && !calibration) {
    throw new VggError(
      "--precision int8 needs --calibrate FILE.npy|DIR: without calibration images the activation ranges, and so the outputs, are garbage (--calibrate-random is for speed tests only)",
    );
  }
  const data = calibration
    ? await calibration()
    : await loadCalibration(f.calibrate as string, inputShape, preprocessing, f.calibrateCount);
  return { ...base, calibration: data };
}

/** Calibration images from a float32 NCHW .npy, or image files (a directory or pattern) preprocessed for the model. */
export async function loadCalibration(
  src: string,
  inputShape: number[],
  preprocessing: () => Preprocessing,
  count?: number,
): Promise<Tensor> {
  let st: ReturnType<typeof statSync> | undefined;
  try {
    st = statSync(src);
  } catch {
    st = undefined;
  }
  const per = numel(inputShape);
  if (st?.isFile() && src.toLowerCase().endsWith(".npy")) {
    const x = readNpy(src);
    if (x.dtype !== "float32")
      throw new VggError(`calibration data must be float32 (preprocessed as the model's input), got ${x.dtype}`, src);
    if (x.shape.length !== 4 || x.shape.slice(1).some((d, k) => d !== inputShape[k]) || x.shape[0] < 1) {
      throw new VggError(`calibration data has shape [${x.shape.join(", ")}], the model takes [N, ${inputShape.join(", ")}]`, src);
    }
    const n = Math.min(x.shape[0], count ?? x.shape[0]);
    return { dtype: "float32", shape: [n, ...inputShape], data: (x.data as Float32Array).subarray(0, n * per) };
  }
  const { files } = expandInputs([src]);
  if (files.length === 0) throw new VggError("no calibration images found (want a float32 .npy, a directory of images or a pattern)", src);
  const prep = preprocessing();
  const chosen = files.slice(0, count ?? 1000);
  const images: Float32Array[] = [];
  let skipped = 0;
  for (const file of chosen) {
    try {
      const img = await loadImage(file, prep);
      if (img.data.length !== per)
        throw new VggError(`preprocessing gives [${img.c}, ${img.h}, ${img.w}], the model takes [${inputShape.join(", ")}]`, file);
      images.push(img.data as Float32Array);
    } catch (err) {
      if (!(err instanceof VggError) || /the model takes/.test(err.message)) throw err;
      skipped++;
    }
  }
  if (images.length === 0) throw new VggError(`none of the ${chosen.length} calibration files could be read as an image`, src);
  if (skipped) console.error(`vgg: calibration: skipped ${skipped} file${skipped > 1 ? "s" : ""} that did not decode`);
  const data = new Float32Array(images.length * per);
  for (const [i, x] of images.entries()) data.set(x, i * per);
  return { dtype: "float32", shape: [images.length, ...inputShape], data };
}

/** How --calibrate image files are preprocessed: as the images the weights expect (weightsPreprocessing). */
export function calibrationPreprocessing(f: { preset?: PresetName; weights?: string }, inputShape: number[]): Preprocessing {
  try {
    return weightsPreprocessing(f.weights, f.preset, inputShape);
  } catch (err) {
    throw err instanceof VggError && !err.file ? new VggError(`${err.message}: calibrate with a .npy`) : err;
  }
}
