/** Format-aware mutations of the data files: IDX (raw and gzip), CIFAR-10 batches, PNG/JPEG/WebP images. */
import * as zlib from "node:zlib";
import { chance, concat, crc32, interesting32, latin1, type Mutant, pick, type Sfc32 } from "./common.js";
import { mutateBytes } from "./mutate.js";

// ---------------------------------------------------------------------------------------------------------------
// IDX: 0 0 type ndim, ndim big-endian u32 dims, data

export function mutateIdx(rng: Sfc32, seed: Uint8Array): Mutant {
  const out = seed.slice();
  const v = new DataView(out.buffer);
  const ndim = seed[3];
  switch (rng.int(6)) {
    case 0:
    case 1: {
      const i = rng.int(ndim);
      const x = interesting32(rng, v.getUint32(4 + 4 * i, false));
      v.setUint32(4 + 4 * i, x, false);
      return { bytes: out, what: `dim ${i} -> ${x}` };
    }
    case 2:
      out[3] = pick(rng, [0, 1, 2, 3, 4, 255, ndim + 1, ndim - 1]) & 0xff;
      return { bytes: out, what: `ndim -> ${out[3]}` };
    case 3:
      out[2] = pick(rng, [0x00, 0x09, 0x0b, 0x0c, 0x0d, 0x0e, 0xff]);
      return { bytes: out, what: `type -> 0x${out[2].toString(16)}` };
    case 4: {
      // Many dimensions of 2 (2^255 elements), or every dim at its maximum.
      const n = pick(rng, [32, 64, 255]);
      const dims = new Uint8Array(4 * n);
      const dv = new DataView(dims.buffer);
      const d = pick(rng, [2, 0xffffffff, 0]);
      for (let i = 0; i < n; i++) dv.setUint32(4 * i, d, false);
      return { bytes: concat([Uint8Array.of(0, 0, 8, n), dims, seed.subarray(4 + 4 * ndim)]), what: `${n} dims of ${d}` };
    }
    default:
      return mutateBytes(rng, seed);
  }
}

/** gzip-level mutations; `inner` is the IDX file the seed compresses. */
export function mutateIdxGz(rng: Sfc32, seed: Uint8Array, inner: Uint8Array): Mutant {
  const r = rng.int(10);
  if (r < 4) {
    const m = mutateIdx(rng, inner);
    return { bytes: new Uint8Array(zlib.gzipSync(m.bytes)), what: `inner ${m.what}` };
  }
  const out = seed.slice();
  const v = new DataView(out.buffer);
  switch (r) {
    case 4: {
      // Footer: CRC32 and ISIZE (uncompressed size mod 2^32).
      const at = out.length - pick(rng, [4, 8]);
      v.setUint32(at, interesting32(rng, v.getUint32(at, true)), true);
      return { bytes: out, what: `gzip footer at ${at}` };
    }
    case 5: {
      // Header flags: FEXTRA with a lying length, FNAME without its terminator, FHCRC.
      const flg = pick(rng, [0x04, 0x08, 0x02, 0x1f, 0xe0]);
      const extra = flg === 0x04 ? Uint8Array.of(0xff, 0xff, 1, 2, 3) : flg === 0x08 ? latin1("name") : new Uint8Array(0);
      const hdr = out.subarray(0, 10).slice();
      hdr[3] = flg;
      return { bytes: concat([hdr, extra, out.subarray(10)]), what: `gzip FLG 0x${flg.toString(16)}` };
    }
    case 6: {
      const tail = pick(rng, [
        seed,
        new Uint8Array(zlib.gzipSync(new Uint8Array(1 << 16))),
        Uint8Array.of(0x1f, 0x8b),
        new Uint8Array(100),
      ]);
      return { bytes: concat([seed, tail]), what: `gzip member + ${tail.length} more bytes` };
    }
    case 7: {
      // Decompression bombs: the header declares a little, the stream inflates to a lot (or the reverse).
      const n = pick(rng, [1 << 20, 8 << 20]);
      const head = inner.subarray(0, 4 + 4 * inner[3]).slice();
      if (chance(rng, 0.5)) new DataView(head.buffer).setUint32(4, n / (head.length > 8 ? 784 : 1), false);
      return { bytes: new Uint8Array(zlib.gzipSync(concat([head, new Uint8Array(n)]), { level: 9 })), what: `gzip of ${n} zero bytes` };
    }
    default:
      return mutateBytes(rng, seed);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// CIFAR-10: records of 1 label byte + 3072 pixel bytes

export function mutateCifar(rng: Sfc32, seed: Uint8Array): Mutant {
  const r = rng.int(4);
  if (r === 0) {
    const out = seed.slice();
    const i = rng.int(seed.length / 3073);
    out[i * 3073] = pick(rng, [10, 11, 0x7f, 0xff]);
    return { bytes: out, what: `label of record ${i} -> ${out[i * 3073]}` };
  }
  if (r === 1) {
    // The last one makes a whole number of 3074-byte records: CIFAR-100 (two label bytes), which the reader names.
    const d = pick(rng, [-3073, -1, 1, 3073, 3074, 3074 - (seed.length % 3074)]);
    const bytes = d < 0 ? seed.subarray(0, Math.max(0, seed.length + d)) : concat([seed, new Uint8Array(d)]);
    return { bytes, what: `length ${d > 0 ? "+" : ""}${d}` };
  }
  return mutateBytes(rng, seed);
}

// ---------------------------------------------------------------------------------------------------------------
// Images

interface Chunk {
  type: string;
  data: Uint8Array;
}

function pngChunks(b: Uint8Array): Chunk[] {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out: Chunk[] = [];
  for (let p = 8; p + 12 <= b.length; ) {
    const n = v.getUint32(p, false);
    out.push({ type: Buffer.from(b.subarray(p + 4, p + 8)).toString("latin1"), data: b.subarray(p + 8, p + 8 + n) });
    p += 12 + n;
  }
  return out;
}

/** Chunks back into a PNG with correct CRCs (a bad CRC is rejected before anything interesting happens). */
function pngBuild(chunks: Chunk[], lenLie?: { index: number; len: number }): Uint8Array {
  const parts: Uint8Array[] = [Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)];
  chunks.forEach((c, i) => {
    const td = concat([latin1(c.type), c.data]);
    const len = new Uint8Array(4);
    new DataView(len.buffer).setUint32(0, lenLie?.index === i ? lenLie.len : c.data.length, false);
    const crc = new Uint8Array(4);
    new DataView(crc.buffer).setUint32(0, crc32(td), false);
    parts.push(len, td, crc);
  });
  return concat(parts);
}

function mutatePng(rng: Sfc32, seed: Uint8Array): Mutant {
  const chunks = pngChunks(seed).map((c) => ({ ...c }));
  const ihdr = chunks[0].data.slice();
  const v = new DataView(ihdr.buffer);
  switch (rng.int(6)) {
    case 0:
    case 1: {
      const at = pick(rng, [0, 4]);
      v.setUint32(at, pick(rng, [0, 1, 0x7fffffff, 0x80000000, 0xffffffff, 16384, 65535, 100_000, v.getUint32(at, false) + 1]), false);
      chunks[0].data = ihdr;
      return { bytes: pngBuild(chunks), what: `IHDR ${at ? "height" : "width"} -> ${v.getUint32(at, false)}` };
    }
    case 2: {
      const at = 8 + rng.int(5);
      ihdr[at] = pick(rng, [0, 1, 2, 3, 4, 6, 7, 16, 255]);
      chunks[0].data = ihdr;
      return { bytes: pngBuild(chunks), what: `IHDR byte ${at} -> ${ihdr[at]}` };
    }
    case 3: {
      const index = rng.int(chunks.length);
      const len = pick(rng, [0, 0x7fffffff, 0xffffffff, chunks[index].data.length + 1]);
      return { bytes: pngBuild(chunks, { index, len }), what: `chunk ${chunks[index].type} length -> ${len}` };
    }
    case 4: {
      const extra = pick(rng, [
        { type: "zTXt", data: concat([latin1("k\0\0"), new Uint8Array(zlib.deflateSync(new Uint8Array(1 << 20)))]) },
        { type: "iCCP", data: concat([latin1("p\0\0"), new Uint8Array(zlib.deflateSync(new Uint8Array(1 << 20)))]) },
        { type: "IDAT", data: new Uint8Array(zlib.deflateSync(new Uint8Array(1 << 22))) },
        { type: "acTL", data: Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0) },
        { type: "PLTE", data: new Uint8Array(3 * 300) },
        { type: "IHDR", data: ihdr },
      ]);
      chunks.splice(1 + rng.int(chunks.length - 1), 0, extra);
      return { bytes: pngBuild(chunks), what: `insert ${extra.type} chunk` };
    }
    default: {
      const i = rng.int(chunks.length);
      const m = mutateBytes(rng, chunks[i].data);
      chunks[i].data = m.bytes;
      return { bytes: pngBuild(chunks), what: `${chunks[i].type}: ${m.what}` };
    }
  }
}

function mutateJpeg(rng: Sfc32, seed: Uint8Array): Mutant {
  const out = seed.slice();
  const v = new DataView(out.buffer);
  const markers: number[] = [];
  for (let p = 2; p + 4 <= out.length && out[p] === 0xff && out[p + 1] !== 0xda; p += 2 + v.getUint16(p + 2, false)) markers.push(p);
  const sof = markers.find((p) => out[p + 1] >= 0xc0 && out[p + 1] <= 0xc2);
  if (sof !== undefined && chance(rng, 0.5)) {
    const at = sof + pick(rng, [5, 7, 9, 4]);
    if (at === sof + 9 || at === sof + 4) out[at] = pick(rng, [0, 1, 2, 4, 5, 255, 12, 16]);
    else v.setUint16(at, pick(rng, [0, 1, 0xffff, 0x8000, 16384, v.getUint16(at, false) * 4]) & 0xffff, false);
    return { bytes: out, what: `SOF byte ${at - sof} edited` };
  }
  if (markers.length && chance(rng, 0.5)) {
    const p = pick(rng, markers);
    v.setUint16(p + 2, pick(rng, [0, 1, 2, 0xffff, v.getUint16(p + 2, false) + 1]) & 0xffff, false);
    return { bytes: out, what: `marker 0x${out[p + 1].toString(16)} length -> ${v.getUint16(p + 2, false)}` };
  }
  return mutateBytes(rng, seed);
}

function mutateWebp(rng: Sfc32, seed: Uint8Array): Mutant {
  const out = seed.slice();
  const v = new DataView(out.buffer);
  switch (rng.int(4)) {
    case 0:
      v.setUint32(4, interesting32(rng, v.getUint32(4, true)), true);
      return { bytes: out, what: `RIFF size -> ${v.getUint32(4, true)}` };
    case 1:
      v.setUint32(16, interesting32(rng, v.getUint32(16, true)), true);
      return { bytes: out, what: `first chunk size -> ${v.getUint32(16, true)}` };
    case 2: {
      // VP8 frame dims at 26 (lossy) or VP8L's packed 14-bit dims at 21 (lossless).
      const at = pick(rng, [21, 22, 23, 24, 26, 27, 28, 29]);
      out[at] = pick(rng, [0, 0xff, 0x3f, out[at] ^ 0x20]);
      return { bytes: out, what: `byte ${at} of the frame header -> ${out[at]}` };
    }
    default:
      return mutateBytes(rng, seed);
  }
}

export function mutateImage(rng: Sfc32, seed: Uint8Array): Mutant {
  if (chance(rng, 0.4)) return mutateBytes(rng, seed);
  if (seed[0] === 0x89) return mutatePng(rng, seed);
  if (seed[0] === 0xff) return mutateJpeg(rng, seed);
  return mutateWebp(rng, seed);
}
