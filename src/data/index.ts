/** The data layer: datasets from specs, transforms, and the worker-thread batch loader. */

export * from "../random.js";
export * from "./cifar.js";
export * from "./dataset.js";
export * from "./folder.js";
export * from "./idx.js";
export * from "./loader.js";
export * from "./npy-data.js";
export * from "./spec.js";
export * from "./transforms.js";
