/** Feature-map grids written as PNG (the grid itself, shared with the browser demo, is in grid-core.ts). */
import { loadSharp } from "../data/folder.js";
import { VggError } from "../errors.js";
import type { GrayImage } from "./grid-core.js";

export { featureGrid, type GrayImage } from "./grid-core.js";

/** Writes a grayscale image as PNG. */
export async function writeGrayPng(file: string, img: GrayImage): Promise<void> {
  const sharp = await loadSharp();
  try {
    await sharp(Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength), {
      raw: { width: img.width, height: img.height, channels: 1 },
    })
      .png()
      .toFile(file);
  } catch (err) {
    throw new VggError(`cannot write PNG: ${(err as Error).message.split("\n")[0]}`, file);
  }
}
