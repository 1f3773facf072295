import type { Command } from "commander";
import { LPIPS_LAYERS, perceptualDistance } from "../features/distance.js";
import { readModelMeta } from "../weights/model-meta.js";
import { addModelOptions, type ModelFlags, positiveInt, resolveModel } from "./options.js";

interface DistanceFlags extends Omit<ModelFlags, "arch"> {
  arch?: string;
  layers: string;
  lpipsWeights?: string;
  json?: boolean;
  threads?: number;
}

export function register(program: Command): void {
  addModelOptions(
    program
      .command("distance")
      .description("LPIPS perceptual distance between two images of the same size (at that size, any aspect), through VGG16's features")
      .argument("<a>", "image file")
      .argument("<b>", "image file of the same size")
      .option("--layers <names>", "feature maps whose terms are summed", LPIPS_LAYERS.join(","))
      .option("--lpips-weights <file>", "LPIPS's learned channel weights (lpips/weights/v0.1/vgg.pth); default all ones (LPIPS's baseline)")
      .option("--json", "print JSON: {a, b, distance, layers: {name: term}, weights}")
      .option("--threads <n>", "engine threads", positiveInt),
    false,
  ).action(async (a: string, b: string, o: DistanceFlags) => {
    // LPIPS's trunk is vgg16; a `vgg train` checkpoint describes its own model instead.
    const describes = o.weights?.endsWith(".safetensors") && readModelMeta(o.weights);
    const { arch, options } = resolveModel({ ...o, arch: o.arch ?? (describes ? "" : "vgg16") } as ModelFlags);
    const layers = o.layers
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "");
    const d = await perceptualDistance(a, b, {
      ...options,
      arch,
      layers,
      weights: o.weights,
      init: o.init,
      seed: o.seed,
      lpipsWeights: o.lpipsWeights,
      threads: o.threads,
    });
    if (!o.json) return console.log(d.distance.toPrecision(7));
    console.log(JSON.stringify({ a, b, distance: d.distance, layers: d.layers, weights: o.lpipsWeights ? "lpips" : "unit" }, null, 1));
  });
}
