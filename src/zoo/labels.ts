/**
 * Class names. The 1000 ImageNet-1k classes ship with the package (src/zoo/imagenet-classes.json, written by
 * scripts/make_imagenet_labels.mjs from @tensorflow-models/mobilenet's list, Apache-2.0) in torchvision's class
 * order: index i is row i of classifier.6 in torchvision's weights, e.g. 0 "tench, Tinca tinca",
 * 281 "tabby, tabby cat", 999 "toilet tissue, toilet paper, bathroom tissue".
 */
import { readFileSync } from "node:fs";
import { VggError } from "../errors.js";
import { fsError } from "../io/atomic.js";
import IMAGENET from "./imagenet-classes.json" with { type: "json" };

export const IMAGENET_CLASSES: readonly string[] = Object.freeze([...IMAGENET]);

/** The short name of an ImageNet class: its first synonym ("tabby" for "tabby, tabby cat"). */
export function shortName(label: string): string {
  return label.split(", ")[0];
}

/**
 * Labels from a file: a JSON array of strings, or plain text with one label per line (trailing blank lines and
 * a final newline are ignored; surrounding spaces are trimmed). With `numClasses`, the count must match.
 */
export function readLabels(file: string, numClasses?: number): string[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw fsError(file, err);
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  let labels: string[];
  if (text.trimStart().startsWith("[")) {
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch (err) {
      throw new VggError(`not valid JSON: ${(err as Error).message.split("\n")[0]}`, file);
    }
    if (!Array.isArray(v) || v.some((x) => typeof x !== "string" && typeof x !== "number")) {
      throw new VggError("a JSON labels file must be an array of strings", file);
    }
    labels = v.map(String);
  } else {
    labels = text.split(/\r?\n/).map((l) => l.trim());
    while (labels.length > 0 && labels[labels.length - 1] === "") labels.pop();
    const blank = labels.indexOf("");
    if (blank >= 0) throw new VggError(`line ${blank + 1} is empty (one label per line)`, file);
  }
  if (labels.length === 0) throw new VggError("has no labels", file);
  if (numClasses !== undefined && labels.length !== numClasses) {
    throw new VggError(`has ${labels.length} labels, the model has ${numClasses} classes`, file);
  }
  return labels;
}

/** Names for a model's classes when none are given: ImageNet's for 1000 classes, else the indices. */
export function defaultLabels(numClasses: number): string[] {
  return numClasses === IMAGENET_CLASSES.length ? [...IMAGENET_CLASSES] : Array.from({ length: numClasses }, (_, i) => String(i));
}

/** A model's class names: from a labels file, else a checkpoint's own (when they are as many), else defaultLabels. */
export function modelLabels(numClasses: number, file?: string, checkpointLabels?: readonly string[]): readonly string[] {
  if (file) return readLabels(file, numClasses);
  return checkpointLabels?.length === numClasses ? checkpointLabels : defaultLabels(numClasses);
}
