/**
 * torchvision's published VGG weights, as data (pretrained.json) with typed access.
 *
 * Checked against torchvision's own source, torchvision/models/vgg.py:
 * - torchvision 0.14.1 (Debian python3-torchvision 0.14.1-2, the copy installed on the build machine): every URL,
 *   file name and hash prefix, acc@1/acc@5, num_params, `categories` (None for FEATURES), DEFAULT = IMAGENET1K_V1,
 *   and the transforms: ImageClassification(crop_size=224) with resize_size 256 and the ImageNet mean/std, and
 *   FEATURES's mean (0.48235, 0.45882, 0.40784), std 1/255;
 * - `_file_size` (MiB; torchvision >= 0.15 added it) from upstream main's vgg.py as stored in the public code index
 *   (the index does not name that file's commit); it agrees with pytorch.org's docs page (vgg16: "527.8 MB").
 * Older torchvision releases pointed vgg11/vgg13 at other files (vgg11-bbd30ac9.pth, vgg13-c768596a.pth; seen in
 * pytorch/vision's vgg.py at commits 1c1feb57 and 02196ff4, before the weights enums): caches from then hold
 * those under their own names, so they never pass for the entries here.
 */
import { type Preprocessing, type PresetName, presetPreprocessing } from "../data/preprocessing.js";
import TABLE from "./pretrained.json" with { type: "json" };

export interface PretrainedEntry {
  /** `<arch>.<torchvision weights enum name>`, e.g. `vgg16.IMAGENET1K_V1`. */
  name: string;
  arch: string;
  /** torchvision's enum member name: IMAGENET1K_V1 or IMAGENET1K_FEATURES. */
  weights: string;
  /** The arch's `imagenet` weights (torchvision's DEFAULT). */
  default: boolean;
  file: string;
  url: string;
  /** The first hex digits of the file's SHA-256, as in its name (torch.hub's rule). */
  sha256Prefix: string;
  /** ImageNet-1K top-1 / top-5 (%); null where torchvision gives NaN (features-only weights). */
  top1: number | null;
  top5: number | null;
  /** torchvision's `_file_size`: MiB, rounded to 3 decimals (so the byte count is known to +-524 bytes). */
  fileSizeMiB: number;
  numParams: number;
  /** 1000, or null for weights without a usable classifier. */
  numClasses: number | null;
  /** The preprocessing preset these weights were trained with (see data/preprocessing.ts). */
  preset: PresetName;
  /** torchvision's transform parameters, kept verbatim to check the preset against. */
  transform: { resize: number; crop: number; mean: number[]; std: number[] };
  note?: string;
}

export const TORCHVISION_BASE_URL = TABLE.baseUrl;
export const PRETRAINED: readonly PretrainedEntry[] = TABLE.entries as PretrainedEntry[];

/** An entry by its full name; the weights part is matched case-insensitively (`vgg16.imagenet1k_v1`). */
export function pretrainedEntry(name: string, table: readonly PretrainedEntry[] = PRETRAINED): PretrainedEntry | undefined {
  const dot = name.indexOf(".");
  if (dot < 0) return undefined;
  const arch = name.slice(0, dot);
  const weights = name.slice(dot + 1).toUpperCase();
  return table.find((e) => e.arch === arch && e.weights.toUpperCase() === weights);
}

/** The entry whose file this is (by file name: torchvision's names carry their hash), if any. */
export function pretrainedForFile(fileName: string, table: readonly PretrainedEntry[] = PRETRAINED): PretrainedEntry | undefined {
  return table.find((e) => e.file === fileName);
}

/** The arch's `imagenet` weights, if torchvision publishes any. */
export function defaultEntry(arch: string, table: readonly PretrainedEntry[] = PRETRAINED): PretrainedEntry | undefined {
  return table.find((e) => e.arch === arch && e.default);
}

/** The archs with published weights, in table order. */
export function archsWithWeights(table: readonly PretrainedEntry[] = PRETRAINED): string[] {
  return [...new Set(table.map((e) => e.arch))];
}

/** The preprocessing the entry's weights expect, for a `size` x `size` input (224: exactly torchvision's). */
export function entryPreprocessing(entry: PretrainedEntry, size = entry.transform.crop): Preprocessing {
  return presetPreprocessing(entry.preset, size);
}

/** ImageNet accuracy as a table cell: "71.592", or "-" for features-only weights. */
export function fmtAcc(v: number | null): string {
  return v === null ? "-" : v.toFixed(3);
}
