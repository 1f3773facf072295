/**
 * The type of the model description a `vgg train` checkpoint carries (model-meta.ts reads it from a file). Types only,
 * so the browser's pages can name it without pulling in file access.
 */
import type { PresetOptions } from "../data/transforms.js";
import type { ModelOptions } from "../zoo/model.js";

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
