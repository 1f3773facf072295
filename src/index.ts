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
export { calibrate, lowerPrecision, PRECISIONS, type CalibrationMethod, type Precision, type PrecisionOptions } from "./precision.js";
export {
  activationParams,
  calibrationGraph,
  foldBatchNorm,
  prepareQuantization,
  quantizeGraph,
  quantizeWeight,
  toFloat16,
  type ActivationType,
  type CalibrationGraph,
  type QuantizeOptions,
  type Range,
} from "./graph/quantize.js";
export { floatsToHalf, floatToHalf } from "./graph/half.js";
export {
  checkpointPreprocessing,
  loadImage,
  PRESETS,
  presetPreprocessing,
  preprocessImage,
  reverseChannels,
  resizeLikePil,
  CAFFE_MEAN_BGR,
  TORCHVISION_MEAN,
  TORCHVISION_STD,
  type PresetName,
  type Preprocessing,
} from "./predict/preprocess.js";
export { predictFiles, type Prediction, type PredictOptions } from "./predict/predict.js";
export { softmax, topK, type ClassScore } from "./predict/topk.js";
export { featureGrid, writeGrayPng, type GrayImage } from "./predict/grid.js";
export { expandInputs, type ExpandedInputs, type Skipped } from "./predict/inputs.js";
export { defaultLabels, IMAGENET_CLASSES, readLabels, shortName } from "./zoo/labels.js";
export { decodeImage } from "./data/folder.js";
export { readModelMeta, type ModelMeta } from "./train/checkpoint.js";
