/** The public API: the zoo, the compiler to ONNX, weights I/O, and a ready-to-run predictor. */
export { VggError } from "./errors.js";
export type { DType, StateDict, Tensor } from "./tensor.js";
export { ARCHS, CONFIGS, archSpec, type ArchSpec, type ConfigItem } from "./zoo/configs.js";
export {
  buildModel,
  macCount,
  paramCount,
  stateSpec,
  tapNames,
  type Head,
  type Layer,
  type ModelOptions,
  type VggModel,
} from "./zoo/model.js";
export { buildInferenceGraph, encodeInferenceGraph, type InferenceGraphOptions } from "./graph/infer.js";
export { encodeModel, encodeModelParts } from "./graph/onnx.js";
export { initWeights, INIT_SCHEMES, type InitScheme } from "./weights/init.js";
export { loadWeights } from "./weights/load.js";
export { matchStateDict } from "./weights/match.js";
export { loadStateDict } from "./weights/index.js";
export { readSafetensors, writeSafetensors } from "./weights/safetensors.js";
export { readNpy, writeNpy } from "./weights/npy.js";
export { Predictor, type PredictorOptions } from "./predictor.js";
