/**
 * Where a training run's (or a created model's) weights start: a seeded scheme (torchvision, paper, glorot), or
 * weights (a file, `imagenet`, an entry of the published table, a URL) fitted as timm's `pretrained=True,
 * num_classes=N` does: what matches by name and shape is loaded, a last FC of another shape is re-initialised.
 */
import { inFile } from "../errors.js";
import { type StateDict, shapeStr } from "../tensor.js";
import type { VggModel } from "../zoo/model.js";
import { resolveWeights } from "./hub.js";
import { loadStateDict } from "./index.js";
import { INIT_SCHEMES, type InitScheme, initWeights } from "./init.js";
import { fitForFineTune, stripModulePrefix } from "./match.js";

export type Start = { scheme: InitScheme } | { path: string; sd: StateDict };

export function isScheme(init: string): init is InitScheme {
  return (INIT_SCHEMES as string[]).includes(init);
}

/** Resolves and reads the starting point (downloading published weights once, into the cache). */
export async function resolveStart(init: string, arch: string, log?: (line: string) => void): Promise<Start> {
  if (isScheme(init)) return { scheme: init };
  const path = await resolveWeights(init, { arch, log });
  try {
    return { path, sd: stripModulePrefix(loadStateDict(path)) };
  } catch (err) {
    throw inFile(path, err);
  }
}

/** The input channels of the weights' first conv (features.0.weight), when it has one. */
export function startInChannels(s: Start): number | undefined {
  if (!("sd" in s)) return undefined;
  const w = s.sd.get("features.0.weight");
  return w?.shape.length === 4 ? w.shape[1] : undefined;
}

/** The model's starting weights, and one line saying what was loaded and what re-initialised (weights only). */
export function fitStart(model: VggModel, s: Start, seed: number): { weights: StateDict; summary?: string } {
  if ("scheme" in s) return { weights: initWeights(model, s.scheme, seed) };
  const fit = fitForFineTune(model, s.sd, initWeights(model, "torchvision", seed), s.path);
  const re = fit.reinit.map((r) => {
    const t = fit.weights.get(r.key);
    return `${r.key} ${shapeStr(t?.shape ?? [])} (${r.why})`;
  });
  const summary = `loaded ${fit.loaded.length} tensors${re.length ? `; re-initialised ${re.join(", ")}` : "; nothing re-initialised"}`;
  return { weights: fit.weights, summary };
}
