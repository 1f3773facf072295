/**
 * The public API. The common things in one call each: `createModel` (classify, features), `train`, `perceptualDistance`;
 * below them the zoo, the compiler to ONNX, weights I/O (and the published weights' table and cache), and a predictor.
 */
export { type ClassifyInput, type CreateModelOptions, createModel, VggNet } from "./api/create-model.js";
export { type TrainOptions, train } from "./api/train.js";
export { decodeImage } from "./data/folder.js";
export {
  CAFFE_MEAN_BGR,
  PRESETS,
  type Preprocessing,
  type PresetName,
  preprocessImage,
  presetPreprocessing,
  resizeLikePil,
  reverseChannels,
  TORCHVISION_MEAN,
  TORCHVISION_STD,
} from "./data/preprocessing.js";
export { VggError } from "./errors.js";
export { type DistanceOptions, perceptualDistance } from "./features/distance.js";
export { type ExtractOptions, extractFeatures, type FeatureInputs, type FeaturePool, features } from "./features/extract.js";
export { floatsToHalf, floatToHalf } from "./graph/half.js";
export { buildInferenceGraph, encodeInferenceGraph, type InferenceGraphOptions } from "./graph/infer.js";
export { type CalibrationMethod, calibrate, lowerPrecision, PRECISIONS, type Precision, type PrecisionOptions } from "./graph/precision.js";
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
export { readNpy, writeNpy } from "./io/npy.js";
export { encodeModel, encodeModelParts } from "./onnx/encode.js";
export { featureGrid, type GrayImage, writeGrayPng } from "./predict/grid.js";
export { type ExpandedInputs, expandInputs, type Skipped } from "./predict/inputs.js";
export { type Prediction, type PredictOptions, predictFiles } from "./predict/predict.js";
export { type EngineOptions, Predictor, type PredictorOptions } from "./predict/predictor.js";
export { checkpointPreprocessing, loadImage } from "./predict/preprocess.js";
export { type ClassScore, softmax, topK } from "./predict/topk.js";
export { DEVICES, type Device, type DeviceChoice, resolveDevice, type WebGpuStatus, webGpuStatus } from "./runtime/device.js";
export type { DType, StateDict, Tensor } from "./tensor.js";
export { TRAIN_DEFAULTS } from "./train/config.js";
export type { EpochMetrics, TrainResult } from "./train/types.js";
export { cachePath, isWeightsRef, type ResolveOptions, resolveWeights, verifyFile } from "./weights/hub.js";
export { loadStateDict } from "./weights/index.js";
export { INIT_SCHEMES, type InitScheme, initWeights } from "./weights/init.js";
export { loadWeights } from "./weights/load.js";
export { type FineTuneFit, fitForFineTune, matchStateDict } from "./weights/match.js";
export { type ModelMeta, readModelMeta } from "./weights/model-meta.js";
export { PRETRAINED, type PretrainedEntry, pretrainedEntry } from "./weights/pretrained.js";
export { readSafetensors, writeSafetensors } from "./weights/safetensors.js";
export { ARCHS, type ArchSpec, archSpec, CONFIGS, type ConfigItem } from "./zoo/configs.js";
export { type FeatureInfo, featureInfo } from "./zoo/features.js";
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
