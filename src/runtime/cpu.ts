/** What the CPU can do, where that changes which numbers ONNX Runtime's kernels give. */
import { readFileSync } from "node:fs";

let vnni: boolean | undefined;

/**
 * x86 without VNNI (AVX-512 VNNI or AVX-VNNI) multiplies u8 x s8 int8 pairs with vpmaddubsw, whose 16-bit pair sums
 * saturate with 8-bit weights; ORT's quantization guide says to quantize weights to 7 bits there. Measured on an AVX2
 * EPYC: int8 top-1 agreement with fp32 96.1% with 8-bit weights, 99.25% with 7 (test/precision.test.ts). Other
 * architectures, and machines whose flags cannot be read, count as having it.
 */
export function cpuSaturatesU8S8(): boolean {
  if (vnni === undefined) {
    if (process.arch !== "x64" && process.arch !== "ia32") vnni = true;
    else {
      try {
        const flags = /^flags\s*:(.*)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "";
        vnni = !flags || /\b(avx512_vnni|avx_vnni)\b/.test(flags);
      } catch {
        vnni = true;
      }
    }
  }
  return !vnni;
}
