/** Flags shared by the commands that build a model, and their parsing. */
import { type Command, InvalidArgumentError, Option } from "commander";
import { VggError } from "../errors.js";
import { DEFAULT_DEVICE, DEVICES, type Device, type DeviceChoice, resolveDevice } from "../runtime/device.js";
import { weightsFormat } from "../weights/index.js";
import { INIT_SCHEMES, type InitScheme } from "../weights/init.js";
import { readModelMeta } from "../weights/model-meta.js";
import { checkTaps } from "../zoo/features.js";
import { buildModel, type ModelFlagOptions, type ModelOptions, resolveOptions } from "../zoo/model.js";

export function int(v: string): number {
  const n = Number(v);
  if (!/^-?\d+$/.test(v.trim()) || !Number.isSafeInteger(n)) throw new InvalidArgumentError("not an integer.");
  return n;
}

export function positiveInt(v: string): number {
  const n = int(v);
  if (n < 1) throw new InvalidArgumentError("must be at least 1.");
  return n;
}

/** A TCP port to listen on (0: any free one). */
export function port(v: string): number {
  const n = int(v);
  if (n < 0 || n > 65535) throw new VggError(`--port ${v}: want 0-65535 (0: any free port)`);
  return n;
}

export function float(v: string): number {
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n)) throw new InvalidArgumentError("not a number.");
  return n;
}

export interface ModelFlags extends ModelFlagOptions {
  arch: string;
  config?: string;
  weights?: string;
  init?: InitScheme;
  seed?: number;
}

/** The flags that define a model's layers and parameter shapes (no weights). */
export function addArchOptions(cmd: Command, archRequired = true): Command {
  const arch = new Option("--arch <name>", "model, e.g. vgg16, vgg11_bn, vgg16_1x1 (see `vgg list`)");
  if (archRequired) arch.makeOptionMandatory();
  return cmd
    .addOption(arch)
    .option("--num-classes <n>", "classes of the last FC layer (default 1000)", positiveInt)
    .option("--in-channels <n>", "input channels (default 3)", positiveInt)
    .option("--dropout <p>", "dropout rate of fc6/fc7 (default 0.5)", float)
    .addOption(new Option("--head <kind>", "paper (7x7 pool, FC-4096 x2) or compact (global pool, one FC)").choices(["paper", "compact"]))
    .option("--width-divisor <d>", "divide every width by d (small experiments)", positiveInt)
    .option("--config <list>", "custom feature config, e.g. 64,M,128,M,conv1-128,M");
}

/**
 * The model flags plus where its weights come from (a file, or a seeded initialisation). With `initTakesWeights`
 * (training), --init also takes weights (a file, `imagenet`, an entry name or a URL) besides a scheme name, so it
 * is a free string there rather than a choice.
 */
export function addModelOptions(cmd: Command, archRequired = true, initTakesWeights = false): Command {
  const init = initTakesWeights
    ? new Option("--init <scheme|weights>", `${INIT_SCHEMES.join("|")}, or weights to start from: a file, imagenet, an entry name or a URL`)
    : new Option("--init <scheme>", "initialisation when no weights are given").choices(INIT_SCHEMES);
  return addArchOptions(cmd, archRequired)
    .option(
      "--weights <file|name|url>",
      "weights: a .pth/.safetensors file, imagenet (the arch's torchvision weights), an entry of `vgg weights list`, or a URL",
    )
    .addOption(init.default("torchvision"))
    .option("--seed <n>", "seed for initialisation", int, 0);
}

/** --device: where ONNX Runtime runs (runtime/device.ts). */
export function addDeviceOption(cmd: Command): Command {
  return cmd.addOption(
    new Option(
      "--device <name>",
      "where ONNX Runtime runs: cpu, webgpu (the GPU through ORT's bundled WebGPU provider; needs a Vulkan driver) or auto (webgpu when an adapter exists, else cpu)",
    )
      .choices(DEVICES)
      .default(DEFAULT_DEVICE),
  );
}

/** The device a command runs on: "webgpu" without an adapter is a one-line error, "auto" without one a note on stderr. */
export function commandDevice(choice: DeviceChoice | undefined): Promise<Device> {
  return resolveDevice(choice, (line) => console.error(`vgg: note: ${line}`));
}

/** Rewrites a shared flag's help for one command, where its default differs there. */
export function describeOption(cmd: Command, long: string, description: string): void {
  const opt = cmd.options.find((o) => o.long === long);
  if (!opt) throw new Error(`describeOption: ${long} is not an option of ${cmd.name()}`);
  opt.description = description;
}

/** The flags that define a model's layers; a checkpoint written by `vgg train` already says all of them. */
const LAYER_FLAGS: [keyof ModelFlags, string][] = [
  ["numClasses", "--num-classes"],
  ["inChannels", "--in-channels"],
  ["head", "--head"],
  ["widthDivisor", "--width-divisor"],
  ["config", "--config"],
  ["inputSize", "--input-size"],
];

/**
 * Refuses layer flags given beside a checkpoint that describes its own model (without --arch), rather than
 * silently using the checkpoint's values instead of them.
 */
function refuseLayerFlags(f: ModelFlags, file: string): void {
  const given = LAYER_FLAGS.filter(([k]) => f[k] !== undefined).map(([, flag]) => flag);
  if (given.length > 0)
    throw new VggError(`${given.join(", ")}: the checkpoint describes its model; pass --arch to define it yourself`, file);
}

export function modelOptions(f: ModelFlags, inputSize?: number): ModelOptions {
  return {
    numClasses: f.numClasses,
    inChannels: f.inChannels,
    dropout: f.dropout,
    head: f.head,
    widthDivisor: f.widthDivisor,
    inputSize: inputSize ?? f.inputSize,
    config: f.config ? f.config.split(",").map((s) => (/^\d+$/.test(s.trim()) ? Number(s) : s.trim())) : undefined,
  };
}

/**
 * The model a command runs: --arch and the layer flags, or, without --arch, the description a `vgg train` checkpoint
 * (--weights FILE.safetensors) carries. `inputSize`, when given, is the input size either way (infer: the .npy's).
 */
export function resolveModel(f: ModelFlags, inputSize?: number): { arch: string; options: ModelOptions } {
  if (f.arch) return { arch: f.arch, options: modelOptions(f, inputSize) };
  // A file that is no weights at all is reported as that, not as a weights file that lacks a model description.
  if (f.weights) weightsFormat(f.weights);
  const meta = f.weights?.endsWith(".safetensors") ? readModelMeta(f.weights) : undefined;
  if (!f.weights || !meta)
    throw new VggError(
      f.weights ? "the weights file has no model description: pass --arch" : "pass --arch NAME (or --weights of a `vgg train` checkpoint)",
      f.weights,
    );
  refuseLayerFlags(f, f.weights);
  return { arch: meta.arch, options: inputSize ? { ...meta.options, inputSize } : { ...meta.options } };
}

/**
 * Refuses --tap names that the flags' model lacks. main.ts runs it before --weights is fetched or read, so a typo
 * in a tap name is not reported after a 500 MB download or load. Without --arch the model is a checkpoint's, known
 * only once its description is read: the command checks its taps then.
 */
export function checkTapFlags(f: Partial<ModelFlags> & { tap?: unknown }): void {
  if (!f.arch || typeof f.tap !== "string") return;
  const taps = f.tap
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (taps.length === 0) return;
  const o = modelOptions({ ...f, arch: f.arch });
  // Tap names do not depend on the input size: plan at one every config takes, so that only the names are judged.
  const pools = resolveOptions(f.arch, o).config.filter((c) => c === "M").length;
  checkTaps(buildModel(f.arch, { ...o, inputSize: Math.max(224, 2 ** pools) }), taps);
}
