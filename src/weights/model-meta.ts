/**
 * The model's description that a checkpoint carries in its safetensors metadata (key `model`): what predict,
 * serve, eval and the library need to rebuild the network and preprocess its input, without the trainer.
 */
import type { PresetOptions } from "../data/transforms.js";
import { VggError } from "../errors.js";
import type { ModelOptions } from "../zoo/model.js";
import { readSafetensorsFile } from "./safetensors.js";

export interface ModelMeta {
  arch: string;
  options: ModelOptions;
  /** Class names, index = label. */
  labels: string[];
  /** Preprocessing the model was trained with. */
  mean: number[];
  std: number[];
  /**
   * The training data's channels and native size (null: images of varying size) and the preset options of the
   * run: `presetTransforms({...data, mean, std}, preset, false)` is its evaluation transform, which `vgg predict`
   * applies to new images. Absent in checkpoints written before it was added.
   */
  data?: { channels: number; size: [number, number] | null };
  preset?: PresetOptions;
}

export function readModelMeta(path: string): ModelMeta | undefined {
  const meta = readSafetensorsFile(path, { tensors: false }).metadata;
  if (!meta.model) return undefined;
  try {
    return JSON.parse(meta.model) as ModelMeta;
  } catch {
    throw new VggError("the model description in its metadata is not valid JSON", path);
  }
}
