/**
 * Building one batch from source indices: the work a loader worker does, also usable in-thread (workers: 0).
 * Each sample's random augmentation comes from sampleRng(seed, epoch, source index), so a batch's content does
 * not depend on which thread built it, on the batch size, or on what was built before.
 */
import { VggError } from "../errors.js";
import { sampleRng } from "../random.js";
import { type Source, sourceImage } from "./dataset.js";
import { compileTransforms, type Image, type Transform, type TransformConfig } from "./transforms.js";

export interface BuiltBatch {
  x: Float32Array;
  y: BigInt64Array;
}

export class BatchBuilder {
  private readonly views: Transform[];
  constructor(
    private readonly source: Source,
    /** One transform, or several views of each sample (test-time crops and flips): x holds n * views samples. */
    config: TransformConfig | TransformConfig[],
    private readonly seed: number,
    /** [C, H, W] every sample must come out as. */
    private readonly shape: readonly [number, number, number],
  ) {
    this.views = (Array.isArray(config) ? config : [config]).map(compileTransforms);
    if (this.views.length === 0) throw new VggError("no transform views");
  }

  async build(epoch: number, indices: Int32Array): Promise<BuiltBatch> {
    const [C, H, W] = this.shape;
    const per = C * H * W;
    const n = indices.length;
    const V = this.views.length;
    const x = new Float32Array(n * V * per);
    const y = new BigInt64Array(n);
    const src = this.source;
    const put = (k: number, img: Image, file?: string) => {
      for (const [v, t] of this.views.entries()) {
        const [c, h, w] = t.outputShape(img.c, img.h, img.w);
        if (c !== C || h !== H || w !== W) {
          throw new VggError(`transforms give ${c}x${h}x${w} for a ${img.c}x${img.h}x${img.w} image, not ${C}x${H}x${W}`, file);
        }
        t.apply(img, sampleRng(this.seed, epoch, indices[k]), x, (k * V + v) * per);
      }
      y[k] = BigInt(src.labels[indices[k]]);
    };
    if (src.kind === "array") {
      for (let k = 0; k < n; k++) put(k, sourceImage(src, indices[k]) as Image);
    } else {
      // libvips decodes on libuv's thread pool; a few in flight keep it busy without holding a whole batch of
      // decoded full-size photos at once.
      let next = 0;
      const work = async () => {
        for (let k = next++; k < n; k = next++) {
          const file = src.files[indices[k]];
          const img = await sourceImage(src, indices[k]);
          try {
            put(k, img, file);
          } catch (err) {
            throw err instanceof VggError && err.file ? err : new VggError(err instanceof Error ? err.message : String(err), file);
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(6, n) }, work));
    }
    return { x, y };
  }
}
