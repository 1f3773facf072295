/**
 * `vgg convert`: a torchvision state_dict (.pth zip or legacy, or .safetensors) to safetensors with torchvision's
 * key names. A DataParallel `module.` prefix is dropped. With --arch the weights are first fitted to that model
 * (every key, every shape), so a file that converts is a file `vgg infer --arch ...` loads.
 */
import { extname } from "node:path";
import type { Command } from "commander";
import { inFile, VggError } from "../errors.js";
import { numel, type StateDict } from "../tensor.js";
import { loadStateDict, writeSafetensors } from "../weights/index.js";
import { matchStateDict, stripModulePrefix } from "../weights/match.js";
import { buildModel } from "../zoo/model.js";
import { addArchOptions, type ModelFlags, modelOptions } from "./options.js";

interface ConvertFlags extends Omit<ModelFlags, "arch"> {
  arch?: string;
  in: string;
  out: string;
}

/** Extensions of other formats: writing safetensors bytes under one of these names would mislead every reader. */
const OTHER_FORMATS = new Set([".pth", ".pt", ".pkl", ".bin", ".ckpt", ".npy", ".npz", ".onnx"]);

export function register(program: Command): void {
  addArchOptions(
    program
      .command("convert")
      .description("convert a .pth (zip or legacy) or .safetensors state_dict to .safetensors with torchvision key names")
      .requiredOption("--in <file>", "torchvision .pth/.pt or .safetensors state_dict (a training checkpoint's 'state_dict' is used)")
      .requiredOption("--out <file.safetensors>", "output file (written atomically: an existing file is only replaced by a complete one)"),
    false,
  ).action(async (o: ConvertFlags) => {
    if (OTHER_FORMATS.has(extname(o.out).toLowerCase())) {
      throw new VggError(`convert writes safetensors; name the output '.safetensors', not '${extname(o.out)}'`, o.out);
    }
    if (!o.arch) {
      const stray = (["numClasses", "inChannels", "dropout", "head", "widthDivisor", "config"] as const).find((k) => o[k] !== undefined);
      if (stray)
        throw new VggError(
          `--${stray.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} describes the model to check against; give --arch too`,
        );
    }
    let sd: StateDict;
    try {
      sd = stripModulePrefix(loadStateDict(o.in));
    } catch (err) {
      throw inFile(o.in, err);
    }
    if (sd.size === 0) throw new VggError("the state dict holds no tensors", o.in);
    const metadata: Record<string, string> = { format: "pt" };
    let what = "";
    if (o.arch) {
      const m = buildModel(o.arch, modelOptions({ ...o, arch: o.arch }));
      // Written as the model loads it: torchvision's key order, float32 parameters, int64 BN counters.
      sd = matchStateDict(m, sd, o.in);
      metadata.arch = m.arch;
      what = `, checked against ${m.arch}`;
    }
    writeSafetensors(o.out, sd, metadata);
    let params = 0;
    for (const t of sd.values()) params += numel(t.shape);
    console.log(`wrote ${o.out} (${sd.size} tensors, ${params.toLocaleString("en-US")} values${what})`);
  });
}
