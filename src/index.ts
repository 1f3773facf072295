/** The public API: the zoo, the compiler to ONNX, weights I/O, and a ready-to-run predictor. */

export { decodeImage } from "./data/folder.js";
export { VggError } from "./errors.js";
export { floatsToHalf, floatToHalf } from "./graph/half.js";
export { buildInferenceGraph, encodeInferenceGraph, type InferenceGraphOptions } from "./graph/infer.js";
export { encodeModel, encodeModelParts } from "./graph/onnx.js";
export {
  type ActivationType,
  activationParams,
  type CalibrationGraph,
  calibrationGraph,
  foldBatchNorm,
  prepareQuantization,
  type QuantizeOptions,
  quantizeGraph,
  quantizeWeight,
  type Range,
  toFloat16,
} from "./graph/quantize.js";
export { type CalibrationMethod, calibrate, lowerPrecision, PRECISIONS, type Precision, type PrecisionOptions } from "./precision.js";
export { featureGrid, type GrayImage, writeGrayPng } from "./predict/grid.js";
export { type ExpandedInputs, expandInputs, type Skipped } from "./predict/inputs.js";
export { type Prediction, type PredictOptions, predictFiles } from "./predict/predict.js";
export {
  CAFFE_MEAN_BGR,
  checkpointPreprocessing,
  loadImage,
  PRESETS,
  type Preprocessing,
  type PresetName,
  preprocessImage,
  presetPreprocessing,
  resizeLikePil,
  reverseChannels,
  TORCHVISION_MEAN,
  TORCHVISION_STD,
} from "./predict/preprocess.js";
export { type ClassScore, softmax, topK } from "./predict/topk.js";
export { Predictor, type PredictorOptions } from "./predictor.js";
export type { DType, StateDict, Tensor } from "./tensor.js";
export { type ModelMeta, readModelMeta } from "./train/checkpoint.js";
export { loadStateDict } from "./weights/index.js";
export { INIT_SCHEMES, type InitScheme, initWeights } from "./weights/init.js";
export { loadWeights } from "./weights/load.js";
export { matchStateDict } from "./weights/match.js";
export { readNpy, writeNpy } from "./weights/npy.js";
export { readSafetensors, writeSafetensors } from "./weights/safetensors.js";
export { ARCHS, type ArchSpec, archSpec, CONFIGS, type ConfigItem } from "./zoo/configs.js";
export { defaultLabels, IMAGENET_CLASSES, readLabels, shortName } from "./zoo/labels.js";
export {
  buildModel,
  type Head,
  type Layer,
  type ModelOptions,
  macCount,
  paramCount,
  stateSpec,
  tapNames,
  type VggModel,
} from "./zoo/model.js";
