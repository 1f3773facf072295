/**
 * torch.save zip archives for the fuzzer: a reader for the (valid) seeds, a writer that can lie in every field
 * (sizes, offsets, methods, ZIP64 records), and the zip-aware mutations of the pth-zip format.
 */
import * as zlib from "node:zlib";
import {
  chance,
  concat,
  crc32,
  INTERESTING_64,
  interesting32,
  latin1,
  type Mutant,
  pick,
  type Sfc32,
  u16le,
  u32le,
  u64le,
  utf8,
} from "./common.js";
import { mutateBytes } from "./mutate.js";
import { mutatePickle, scanPickle } from "./pickle.js";

export interface ZEntry {
  name: string;
  data: Uint8Array;
  /** 0 stored, 8 deflate, anything else recorded as is (with the data stored). */
  method: number;
  /** Uncompressed size to declare, when it should not be the real one. */
  size?: number;
  /** Compressed size to declare. */
  compSize?: number;
  crc?: number;
  flags?: number;
  /** ZIP64 extra field with these 64-bit values (size, compressed size, offset), fields set to 0xFFFFFFFF. */
  zip64?: { size?: bigint; compSize?: bigint; offset?: bigint };
}

export interface ZOptions {
  /** ZIP64 end record and locator, with optional lies. */
  zip64?: { count?: bigint; cdSize?: bigint; cdOffset?: bigint; recordOffset?: bigint };
  comment?: Uint8Array;
}

/** The entries of a valid archive (stored or deflate). */
export function readZip(b: Uint8Array): ZEntry[] {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let eocd = b.length - 22;
  while (eocd >= 0 && v.getUint32(eocd, true) !== 0x06054b50) eocd--;
  if (eocd < 0) throw new Error("seed is not a zip archive");
  const count = v.getUint16(eocd + 10, true);
  let p = v.getUint32(eocd + 16, true);
  const out: ZEntry[] = [];
  for (let i = 0; i < count; i++) {
    const method = v.getUint16(p + 10, true);
    const compSize = v.getUint32(p + 20, true);
    const nameLen = v.getUint16(p + 28, true);
    const extraLen = v.getUint16(p + 30, true);
    const commentLen = v.getUint16(p + 32, true);
    const local = v.getUint32(p + 42, true);
    const name = Buffer.from(b.subarray(p + 46, p + 46 + nameLen)).toString("utf8");
    const start = local + 30 + v.getUint16(local + 26, true) + v.getUint16(local + 28, true);
    const raw = b.subarray(start, start + compSize);
    out.push({ name, data: method === 8 ? new Uint8Array(zlib.inflateRawSync(raw)) : raw.slice(), method });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return out;
}

/** Writes an archive the way torch does (local headers, data, central directory, end record), lies included. */
export function writeZip(entries: readonly ZEntry[], o: ZOptions = {}): Uint8Array {
  const local: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let pos = 0;
  for (const e of entries) {
    const name = utf8(e.name);
    const body = e.method === 8 ? new Uint8Array(zlib.deflateRawSync(e.data)) : e.data;
    const size = e.size ?? e.data.length;
    const comp = e.compSize ?? body.length;
    const crc = e.crc ?? crc32(e.data);
    const z = e.zip64;
    const extra = z
      ? concat([u16le(1), u16le(24), u64le(z.size ?? BigInt(size)), u64le(z.compSize ?? BigInt(comp)), u64le(z.offset ?? BigInt(pos))])
      : new Uint8Array(0);
    const hdr = (cd: boolean) => {
      const h = new Uint8Array(cd ? 46 : 30);
      const v = new DataView(h.buffer);
      v.setUint32(0, cd ? 0x02014b50 : 0x04034b50, true);
      const o = cd ? 2 : 0;
      v.setUint16(4 + o, z ? 45 : 20, true);
      v.setUint16(6 + o, e.flags ?? 0, true);
      v.setUint16(8 + o, e.method, true);
      v.setUint32(14 + o, crc, true);
      v.setUint32(18 + o, z ? 0xffffffff : comp, true);
      v.setUint32(22 + o, z ? 0xffffffff : size, true);
      v.setUint16(26 + o, name.length, true);
      v.setUint16(28 + o, extra.length, true);
      if (cd) v.setUint32(42, z ? 0xffffffff : pos, true);
      return h;
    };
    central.push(hdr(true), name, extra);
    const l = concat([hdr(false), name, extra, body]);
    local.push(l);
    pos += l.length;
  }
  const cd = concat(central);
  const tail: Uint8Array[] = [cd];
  const cdStart = pos;
  if (o.zip64) {
    const z = o.zip64;
    const rec = new Uint8Array(56);
    const rv = new DataView(rec.buffer);
    rv.setUint32(0, 0x06064b50, true);
    rv.setBigUint64(4, 44n, true);
    rv.setBigUint64(24, z.count ?? BigInt(entries.length), true);
    rv.setBigUint64(32, z.count ?? BigInt(entries.length), true);
    rv.setBigUint64(40, z.cdSize ?? BigInt(cd.length), true);
    rv.setBigUint64(48, z.cdOffset ?? BigInt(cdStart), true);
    const loc = concat([u32le(0x07064b50), u32le(0), u64le(z.recordOffset ?? BigInt(cdStart + cd.length)), u32le(1)]);
    tail.push(rec, loc);
  }
  const comment = o.comment ?? new Uint8Array(0);
  const eocd = new Uint8Array(22);
  const ev = new DataView(eocd.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, o.zip64 ? 0xffff : entries.length, true);
  ev.setUint16(10, o.zip64 ? 0xffff : entries.length, true);
  ev.setUint32(12, o.zip64 ? 0xffffffff : cd.length, true);
  ev.setUint32(16, o.zip64 ? 0xffffffff : cdStart, true);
  ev.setUint16(20, comment.length, true);
  return concat([...local, ...tail, eocd, comment]);
}

/** Offsets of the central directory entries and the end record of an archive as written above. */
function layout(b: Uint8Array): { cd: number[]; eocd: number; locals: number[] } {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let eocd = b.length - 22;
  while (eocd > 0 && v.getUint32(eocd, true) !== 0x06054b50) eocd--;
  const cd: number[] = [];
  const locals: number[] = [];
  let p = v.getUint32(eocd + 16, true);
  for (let i = 0; i < v.getUint16(eocd + 10, true) && p + 46 <= b.length; i++) {
    cd.push(p);
    locals.push(v.getUint32(p + 42, true));
    p += 46 + v.getUint16(p + 28, true) + v.getUint16(p + 30, true) + v.getUint16(p + 32, true);
  }
  return { cd, eocd, locals };
}

/** Overwrites one header field of an archive in place (central directory, end record or local header). */
function corruptField(rng: Sfc32, b: Uint8Array): Mutant {
  const { cd, eocd, locals } = layout(b);
  const out = b.slice();
  const v = new DataView(out.buffer);
  const where = rng.int(3);
  let at: number;
  let size: number;
  let label: string;
  if (where === 0 && cd.length) {
    const [off, sz, name] = pick(rng, [
      [8, 2, "flags"],
      [10, 2, "method"],
      [16, 4, "crc"],
      [20, 4, "compressed size"],
      [24, 4, "size"],
      [28, 2, "name length"],
      [30, 2, "extra length"],
      [32, 2, "comment length"],
      [42, 4, "local offset"],
    ] as const);
    at = pick(rng, cd) + off;
    size = sz;
    label = `central directory ${name}`;
  } else if (where === 1) {
    const [off, sz, name] = pick(rng, [
      [4, 2, "disk"],
      [8, 2, "disk entries"],
      [10, 2, "entries"],
      [12, 4, "directory size"],
      [16, 4, "directory offset"],
      [20, 2, "comment length"],
    ] as const);
    at = eocd + off;
    size = sz;
    label = `end record ${name}`;
  } else {
    if (!locals.length) return mutateBytes(rng, b);
    const [off, sz, name] = pick(rng, [
      [0, 4, "signature"],
      [8, 2, "method"],
      [18, 4, "compressed size"],
      [22, 4, "size"],
      [26, 2, "name length"],
      [28, 2, "extra length"],
    ] as const);
    at = pick(rng, locals) + off;
    size = sz;
    label = `local header ${name}`;
  }
  if (at + size > out.length) return mutateBytes(rng, b);
  const old = size === 4 ? v.getUint32(at, true) : v.getUint16(at, true);
  const x = interesting32(rng, old);
  if (size === 4) v.setUint32(at, x, true);
  else v.setUint16(at, x & 0xffff, true);
  return { bytes: out, what: `${label} ${old} -> ${size === 4 ? x : x & 0xffff}` };
}

const BOMB = new Uint8Array(4 << 20);

/** Rebuilds the archive with one structural change. */
function restructure(rng: Sfc32, entries: ZEntry[]): Mutant {
  const es = entries.map((e) => ({ ...e }));
  const pkl = es.find((e) => e.name.endsWith("data.pkl")) as ZEntry;
  const top = pkl.name.slice(0, -"data.pkl".length);
  const storages = es.filter((e) => e.name.includes("/data/"));
  const any = pick(rng, es);
  let opts: ZOptions = {};
  let what: string;
  switch (rng.int(15)) {
    case 0:
      for (const e of es) if (chance(rng, 0.6)) e.method = 8;
      what = "deflate entries";
      break;
    case 1: {
      any.method = 8;
      any.size = pick(rng, [0xfffffffe, any.data.length * 1000, any.data.length + 1, Math.max(0, any.data.length - 1), 0]);
      what = `deflate '${any.name}' declaring ${any.size} bytes`;
      break;
    }
    case 2:
      any.compSize = interesting32(rng, any.data.length);
      what = `'${any.name}' compressed size -> ${any.compSize}`;
      break;
    case 3: {
      const huge = () => (chance(rng, 0.5) ? pick(rng, INTERESTING_64) : undefined);
      any.zip64 = { size: huge(), compSize: huge(), offset: huge() };
      opts = { zip64: chance(rng, 0.5) ? {} : { count: huge(), cdSize: huge(), cdOffset: huge(), recordOffset: huge() } };
      what = `ZIP64 '${any.name}' ${JSON.stringify(any.zip64, (_, x) => (typeof x === "bigint" ? String(x) : x))}`;
      break;
    }
    case 4:
      es.push({ ...any });
      what = `duplicate entry '${any.name}'`;
      break;
    case 5: {
      const name = pick(rng, [`other/data.pkl`, `${top}constants.pkl`, `${top}data.pkl`, "data.pkl", `${top}byteorder`]);
      const data = name.endsWith("byteorder") ? latin1(pick(rng, ["big", "", "littl\u00e9", "little\0"])) : pkl.data;
      es.push({ name, data, method: 0 });
      what = `add entry '${name}'`;
      break;
    }
    case 6: {
      const victim = chance(rng, 0.5) && storages.length ? pick(rng, storages) : any;
      es.splice(es.indexOf(victim), 1);
      what = `remove entry '${victim.name}'`;
      break;
    }
    case 7:
      any.name = pick(rng, [
        "../../etc/passwd",
        `${top}data/../data.pkl`,
        "",
        "a".repeat(300),
        `${top}data/\u0000`,
        any.name.toUpperCase(),
      ]);
      what = `rename an entry to '${any.name.slice(0, 40)}'`;
      break;
    case 8:
      any.method = pick(rng, [1, 9, 12, 14, 93, 99, 0xffff]);
      what = `method of '${any.name}' -> ${any.method}`;
      break;
    case 9:
      any.flags = pick(rng, [1, 8, 0x41, 0x800, 0xffff]);
      what = `flags of '${any.name}' -> ${any.flags}`;
      break;
    case 10: {
      const s = storages.length ? pick(rng, storages) : any;
      const n = pick(rng, [0, 1, s.data.length - 1, s.data.length + 1, s.data.length * 2]);
      s.data = n <= s.data.length ? s.data.subarray(0, Math.max(0, n)) : concat([s.data, new Uint8Array(n - s.data.length)]);
      what = `resize '${s.name}' to ${n} bytes`;
      break;
    }
    case 11:
      any.crc = (crc32(any.data) ^ 1) >>> 0;
      what = `bad CRC for '${any.name}'`;
      break;
    case 12: {
      // A legitimate high-ratio entry: zeros deflate ~1000:1.
      const s = chance(rng, 0.5) ? pkl : any;
      s.data = concat([s.data, BOMB.subarray(0, pick(rng, [1 << 16, 1 << 20, 4 << 20]))]);
      s.method = 8;
      what = `pad '${s.name}' with ${s.data.length} zero bytes, deflated`;
      break;
    }
    case 13: {
      // A deflated pickle that is all work: millions of nested tuples, or of NONE POP pairs before the real one.
      const n = pick(rng, [1 << 20, 8 << 20, 32 << 20]);
      const nest = chance(rng, 0.5);
      const body = new Uint8Array(n).fill(0x85);
      if (!nest) for (let i = 0; i < n; i += 2) body.set([0x4e, 0x30], i);
      pkl.data = nest ? concat([Uint8Array.of(0x80, 2, 0x29), body, Uint8Array.of(0x2e)]) : concat([body, pkl.data]);
      pkl.method = 8;
      what = `data.pkl of ${n} ${nest ? "nested tuples" : "bytes of NONE POP"}, deflated`;
      break;
    }
    default: {
      const fake = concat([u32le(0x06054b50), new Uint8Array(18).fill(0xff)]);
      opts = { comment: chance(rng, 0.5) ? new Uint8Array(0xffff).fill(0x50) : concat([fake, new Uint8Array(rng.int(100))]) };
      what = "archive comment";
    }
  }
  return { bytes: writeZip(es, opts), what };
}

/** One zip-aware mutation of a torch.save archive (`seed` is its bytes, `entries` what readZip found in it). */
export function mutateZip(rng: Sfc32, seed: Uint8Array, entries: ZEntry[]): Mutant {
  const r = rng.int(10);
  if (r < 4) {
    const es = entries.map((e) => ({ ...e }));
    const pkl = es.find((e) => e.name.endsWith("data.pkl")) as ZEntry;
    const m = chance(rng, 0.85) ? mutatePickle(rng, pkl.data, scanPickle(pkl.data).ops) : mutateBytes(rng, pkl.data);
    pkl.data = m.bytes;
    return { bytes: writeZip(es), what: `data.pkl: ${m.what}` };
  }
  if (r < 6) return corruptField(rng, seed);
  return restructure(rng, entries);
}
