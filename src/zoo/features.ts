/**
 * What each tap of a model gives, as timm's `feature_info` describes a backbone (num_chs, reduction, module), and
 * the conv trunk re-planned for an H x W input: LPIPS runs at the image's own size, which need not be square.
 */
import { VggError } from "../errors.js";
import { opOf } from "../ops/index.js";
import { type Layer, tapNames, type VggModel } from "./model.js";

export interface FeatureInfo {
  /** The paper-style tap name: relu4_3, pool5, fc6, logits. */
  name: string;
  /** Channels of a feature map, features of a vector (fc6, fc7, logits). */
  channels: number;
  /** Input pixels per map position along each axis (the product of the pools' strides); null for vectors. */
  stride: number | null;
  /** [H, W] of the map at the model's input size; null for vectors. */
  size: [number, number] | null;
  /** torchvision's module name of the layer whose output this is (`features.22`, `classifier.4`). */
  layer: string;
}

/** Every tap of `model`, in forward order. */
export function featureInfo(model: VggModel): FeatureInfo[] {
  let stride = 1;
  const out: FeatureInfo[] = [];
  for (const l of model.layers) {
    if (l.kind === "maxpool") stride *= l.attrs.stride;
    if (!l.tap) continue;
    const map = l.outShape.length === 3;
    out.push({
      name: l.tap,
      channels: l.outShape[0],
      stride: map ? stride : null,
      size: map ? [l.outShape[1], l.outShape[2]] : null,
      layer: l.name,
    });
  }
  return out;
}

/** Refuses taps the model lacks, and (with `mapsOnly`) taps that are vectors rather than feature maps. */
export function checkTaps(model: VggModel, taps: readonly string[], mapsOnly = false): void {
  if (taps.length === 0) throw new VggError("no taps given (e.g. relu4_3)");
  const known = tapNames(model);
  const maps = featureInfo(model)
    .filter((f) => f.size)
    .map((f) => f.name);
  for (const t of taps) {
    if (!known.includes(t)) throw new VggError(`unknown tap '${t}' for ${model.arch} (known: ${known.join(", ")})`);
    if (mapsOnly && !maps.includes(t)) throw new VggError(`tap '${t}' is not a feature map (maps: ${maps.join(", ")})`);
  }
}

/**
 * The layers of `model` up to its last tap among `taps`, planned for a C x H x W input. Only the conv trunk can be
 * re-planned: its ops take any size (the head's adaptive pool and FCs are planned for the square input).
 */
export function trunkAt(model: VggModel, taps: readonly string[], h: number, w: number): VggModel {
  checkTaps(model, taps, true);
  const last = Math.max(...taps.map((t) => model.layers.findIndex((l) => l.tap === t)));
  let shape = [model.inputShape[0], h, w];
  const layers: Layer[] = [];
  for (const l of model.layers.slice(0, last + 1)) {
    const op = opOf(l.kind);
    let outShape: number[];
    try {
      outShape = op.outShape(l.attrs, shape);
    } catch (err) {
      throw new VggError(`a ${h}x${w} input is too small for ${taps.join(", ")} of ${model.arch} (${l.name}: ${(err as Error).message})`);
    }
    layers.push({ ...l, inShape: shape, outShape, macs: op.macs(l.attrs, shape) });
    shape = outShape;
  }
  const pools = layers.filter((l) => l.kind === "maxpool").length;
  return { ...model, layers, inputShape: [model.inputShape[0], h, w], minInputSize: 2 ** pools };
}
