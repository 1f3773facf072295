/**
 * Preprocessing for prediction: what turns an image file into the network's input, matching the weights.
 *
 * - `torchvision`: torchvision's ImageNet evaluation on a PIL image: Resize(round(size*256/224)) of the shorter
 *   side (bilinear, antialiased; done as PIL does it, horizontal pass then vertical, rounding to uint8 after
 *   each), CenterCrop(size), ToTensor (RGB in [0, 1]), Normalize(mean 0.485/0.456/0.406, std 0.229/0.224/0.225).
 * - `caffe`: the original Caffe/Keras VGG weights: the same geometry, then BGR order, values 0-255 minus the
 *   per-channel means 103.939/116.779/123.68 (B, G, R), no scaling.
 * - a checkpoint written by `vgg train`: the run's own evaluation transform, `presetTransforms` called with the
 *   data statistics and preset options stored in the checkpoint, after bringing the photo to the training data's
 *   native size (e.g. Fashion-MNIST: shorter side to 28, centre crop 28x28, then zero padding to 32 as in training),
 *   decoded to the data's channels (grayscale for 1-channel data).
 */

import { basename } from "node:path";
import { CIFAR10_CLASSES } from "../data/cifar.js";
import { decodeImage } from "../data/folder.js";
import {
  type Preprocessing,
  type PresetName,
  preprocessImage,
  presetPreprocessing,
  TORCHVISION_MEAN,
  TORCHVISION_STD,
} from "../data/preprocessing.js";
import { FASHION_MNIST_CLASSES } from "../data/spec.js";
import { type DataStats, type Image, type PresetOptions, presetTransforms } from "../data/transforms.js";
import { VggError } from "../errors.js";
import { type ModelMeta, readModelMeta } from "../weights/model-meta.js";
import { pretrainedForFile } from "../weights/pretrained.js";

/**
 * The data a checkpoint was trained on, as `presetTransforms` needs it. Checkpoints from before the trainer
 * stored it get it from their labels: Fashion-MNIST's classes mean 1-channel 28x28, CIFAR-10's 3-channel
 * 32x32; anything else is taken as variable-size photos (rescale + centre crop).
 */
export function checkpointData(meta: ModelMeta): { stats: DataStats; preset: PresetOptions } {
  const o = meta.options;
  const inputSize = o.inputSize ?? 224;
  const same = (a: readonly string[]) => a.length === meta.labels.length && a.every((x, i) => x === meta.labels[i]);
  const channels = meta.data?.channels ?? (meta.mean.length || (o.inChannels ?? 3));
  const size = meta.data
    ? meta.data.size
    : same(FASHION_MNIST_CLASSES)
      ? ([28, 28] as [number, number])
      : same(CIFAR10_CLASSES)
        ? ([32, 32] as [number, number])
        : null;
  const stats: DataStats = { channels, size, mean: [...meta.mean], std: [...meta.std] };
  const preset: PresetOptions = { ...(meta.preset ?? {}), size: inputSize, channels: o.inChannels ?? channels };
  if (!meta.preset && meta.mean.length === 0) preset.normalize = "none";
  return { stats, preset };
}

/** The evaluation preprocessing of a model trained by `vgg train`, from its checkpoint metadata. */
export function checkpointPreprocessing(meta: ModelMeta, inputSize?: number): Preprocessing {
  const { stats, preset } = checkpointData(meta);
  if (inputSize !== undefined) preset.size = inputSize;
  if (stats.channels !== 1 && stats.channels !== 3)
    throw new VggError(`the model was trained on ${stats.channels}-channel data; images decode to 1 or 3`);
  // The loader's statistics: per-channel mean/std of the data (normalize "mean" keeps std 1, "none" drops both).
  if (preset.normalize !== "none" && stats.mean.length !== stats.channels) {
    throw new VggError(`the checkpoint's normalisation has ${stats.mean.length} means for ${stats.channels}-channel data`);
  }
  const transform = presetTransforms(stats, preset, false);
  return { name: "checkpoint", channels: stats.channels as 1 | 3, bgr: false, native: stats.size ?? undefined, transform };
}

/**
 * The preprocessing the weights expect, one rule for every command and the library: the preset asked for, else a
 * `vgg train` checkpoint's own, else a published entry's (by its file name), else torchvision's.
 */
export function weightsPreprocessing(
  weights: string | undefined,
  preset: PresetName | undefined,
  inputShape: readonly number[],
): Preprocessing {
  const [channels, size] = inputShape;
  const meta = !preset && weights?.endsWith(".safetensors") ? readModelMeta(weights) : undefined;
  if (meta) return checkpointPreprocessing(meta, size);
  const name = preset ?? (weights ? pretrainedForFile(basename(weights))?.preset : undefined) ?? "torchvision";
  if (channels !== 3) throw new VggError(`the ${name} preset is for 3-channel models, this one takes ${channels}`);
  return presetPreprocessing(name, size);
}

export interface WeightsNormalization {
  mean: number[];
  std: number[];
  /** Whose statistics these are, for the run's description. */
  from: string;
}

/**
 * The mean/std a bare weights file (not a `vgg train` checkpoint, which carries its own) was trained with: a published
 * entry's, else torchvision's ImageNet statistics for 3-channel models (torchvision's convention).
 */
export function weightsNormalization(weights: string, inChannels: number): WeightsNormalization | undefined {
  const entry = pretrainedForFile(basename(weights));
  if (entry) return { mean: [...entry.transform.mean], std: [...entry.transform.std], from: `${entry.name}'s` };
  return inChannels === 3 ? { mean: [...TORCHVISION_MEAN], std: [...TORCHVISION_STD], from: "ImageNet's (torchvision)" } : undefined;
}

/** Statistics for 3 channels applied to data of `channels`: as they are, or (1-channel data) averaged over RGB. */
export function forChannels(n: { mean: number[]; std: number[] } | undefined, channels: number): { mean?: number[]; std?: number[] } {
  if (!n) return {};
  if (n.mean.length === channels) return { mean: n.mean, std: n.std };
  const avg = (v: number[]) => [v.reduce((a, b) => a + b, 0) / v.length];
  if (channels === 1) return { mean: avg(n.mean), std: avg(n.std) };
  throw new VggError(`the weights are normalised for ${n.mean.length} channels, the data has ${channels}: pass --normalize`);
}

/** Decodes an image file or its bytes (JPEG, PNG, WebP, ... via sharp) and preprocesses it. */
export async function loadImage(file: string | Uint8Array, p: Preprocessing): Promise<Image> {
  return preprocessImage(await decodeImage(file, p.channels), p);
}
