/** Flags shared by the commands that build a model, and their parsing. */
import { type Command, InvalidArgumentError, Option } from "commander";
import { INIT_SCHEMES, type InitScheme } from "../weights/init.js";
import type { ModelOptions } from "../zoo/model.js";

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

export function float(v: string): number {
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n)) throw new InvalidArgumentError("not a number.");
  return n;
}

export interface ModelFlags {
  arch: string;
  numClasses?: number;
  inChannels?: number;
  dropout?: number;
  head?: "paper" | "compact";
  widthDivisor?: number;
  inputSize?: number;
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

/** The model flags plus where its weights come from (a file, or a seeded initialisation). */
export function addModelOptions(cmd: Command, archRequired = true): Command {
  return addArchOptions(cmd, archRequired)
    .option("--weights <file>", "torchvision .pth or .safetensors state_dict")
    .addOption(new Option("--init <scheme>", "initialisation when no weights are given").choices(INIT_SCHEMES).default("torchvision"))
    .option("--seed <n>", "seed for initialisation", int, 0);
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
