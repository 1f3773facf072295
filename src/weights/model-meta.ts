/**
 * The model's description that a checkpoint carries in its safetensors metadata (key `model`): what predict,
 * serve, eval and the library need to rebuild the network and preprocess its input, without the trainer.
 */
import { VggError } from "../errors.js";
import type { ModelMeta } from "./meta.js";
import { readSafetensorsFile } from "./safetensors.js";

export type { ModelMeta } from "./meta.js";

export function readModelMeta(path: string): ModelMeta | undefined {
  const meta = readSafetensorsFile(path, { tensors: false }).metadata;
  if (!meta.model) return undefined;
  try {
    return JSON.parse(meta.model) as ModelMeta;
  } catch {
    throw new VggError("the model description in its metadata is not valid JSON", path);
  }
}
