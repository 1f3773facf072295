/**
 * The one walk over a model's layers in inference mode (NCHW, each op's `forward`): the inference graph, the dense
 * graph's convolutional part and the training step's frozen prefix are all emitted by it.
 */
import type { GraphBuilder } from "../onnx/builder.js";
import { opOf } from "../ops/index.js";
import type { Layer } from "../zoo/model.js";

/** A layer's output value name: its tap (relu3_2, fc6) or its module name with dots as underscores. */
export function valueName(layer: Layer): string {
  return layer.tap ?? layer.name.replace(/\./g, "_");
}

/**
 * Emits `layers` in inference mode from `x` and returns the last output. `param` gives a layer's tensor as a graph
 * value (an initializer, or an input); `each` sees every layer's output.
 */
export function emitInference(
  g: GraphBuilder,
  layers: readonly Layer[],
  x: string,
  param: (layer: Layer, suffix: string) => string,
  each?: (layer: Layer, y: string) => void,
): string {
  let h = x;
  for (const layer of layers) {
    h = opOf(layer.kind).forward({ g, param: (suffix) => param(layer, suffix) }, layer.attrs, h, layer.inShape, valueName(layer));
    each?.(layer, h);
  }
  return h;
}
