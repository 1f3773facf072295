/** The fuzzed formats and how a mutant of each is made (deterministically from the seed, format and index). */
import { keyedRng } from "../../src/random.js";
import { chance, type Mutant, pick } from "./common.js";
import { mutateCifar, mutateIdx, mutateIdxGz, mutateImage } from "./data.js";
import { mutateBytes } from "./mutate.js";
import { mutateOnnx } from "./onnx.js";
import type { Seed } from "./seeds.js";
import { mutateLegacyPth, mutateNpy, mutateSafetensors } from "./weights.js";
import { mutateZip } from "./zip.js";

export const FORMATS = ["pth-zip", "pth-legacy", "safetensors", "npy", "idx", "idx-gz", "cifar", "image", "onnx"] as const;
export type Format = (typeof FORMATS)[number];

const STREAM_FUZZ = 0x46555a5a;

function formatAware(format: Format, rng: Parameters<typeof mutateBytes>[0], s: Seed): Mutant {
  switch (format) {
    case "pth-zip":
      return mutateZip(rng, s.bytes, s.zip ?? []);
    case "pth-legacy":
      return mutateLegacyPth(rng, s.bytes);
    case "safetensors":
      return mutateSafetensors(rng, s.bytes);
    case "npy":
      return mutateNpy(rng, s.bytes);
    case "idx":
      return mutateIdx(rng, s.bytes);
    case "idx-gz":
      return mutateIdxGz(rng, s.bytes, s.inner ?? new Uint8Array(0));
    case "cifar":
      return mutateCifar(rng, s.bytes);
    case "image":
      return mutateImage(rng, s.bytes);
    case "onnx":
      return mutateOnnx(rng, s.bytes);
  }
}

/**
 * Mutant `index` of `format`: a seed, a format-aware mutation (or, one time in five, a format-blind one), and
 * sometimes a second, blind one on top. Depends only on (seed, format, index), so any file can be made again.
 */
export function makeMutant(format: Format, seeds: readonly Seed[], seed: number, index: number): Mutant & { seed: Seed } {
  const rng = keyedRng(seed, STREAM_FUZZ, FORMATS.indexOf(format), index);
  const s = pick(rng, seeds);
  let m = chance(rng, 0.8) ? formatAware(format, rng, s) : mutateBytes(rng, s.bytes);
  if (chance(rng, 0.15)) {
    const m2 = mutateBytes(rng, m.bytes);
    m = { bytes: m2.bytes, what: `${m.what}; ${m2.what}` };
  }
  return { ...m, seed: s };
}
