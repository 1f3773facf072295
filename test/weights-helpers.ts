/**
 * Builders for the weight-reader tests: a pickle assembler, a torch.save-style writer (zip, ZIP64, deflate,
 * legacy) and a VggError assertion. Hand-built bytes let the tests cover cases torch never writes by itself.
 */
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as zlib from "node:zlib";
import { VggError } from "../src/errors.js";

export function tmpDir(): string {
  return mkdtempSync(join(tmpdir(), "vgg-weights-"));
}

/** `fn` must throw a VggError whose message is one line, names `file`, and matches `pattern`. */
export function assertVggError(fn: () => unknown, file: string, pattern?: RegExp): VggError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  if (caught === undefined) assert.fail(`expected a VggError for ${file}, got success`);
  if (!(caught instanceof VggError)) {
    assert.fail(
      `expected a VggError for ${file}, got ${(caught as Error)?.name}: ${(caught as Error)?.message}\n${(caught as Error)?.stack}`,
    );
  }
  assert.ok(!/[\n\r\u2028\u2029]/.test(caught.message), `message is not one line: ${JSON.stringify(caught.message)}`);
  assert.ok(caught.message.includes(file), `message does not name ${file}: ${caught.message}`);
  if (pattern) assert.match(caught.message, pattern);
  return caught;
}

/** Runs `fn`; success or a well-formed VggError naming `file` are both fine, anything else fails the test. */
export function assertCleanOutcome(fn: () => unknown, file: string, what: string): "ok" | "error" {
  try {
    fn();
    return "ok";
  } catch (err) {
    if (!(err instanceof VggError)) assert.fail(`${what}: ${(err as Error)?.name}: ${(err as Error)?.message}\n${(err as Error)?.stack}`);
    assert.ok(!/[\n\r\u2028\u2029]/.test(err.message), `${what}: message is not one line: ${JSON.stringify(err.message)}`);
    assert.ok(err.message.includes(file), `${what}: message does not name the file: ${err.message}`);
    return "error";
  }
}

export function hex(s: string): Uint8Array {
  return Uint8Array.from(Buffer.from(s, "hex"));
}

/** Assembles pickle opcodes; methods mirror the opcodes torch.save emits. */
export class PickleBuilder {
  private readonly out: number[] = [];
  raw(...bytes: number[]): this {
    for (const b of bytes) this.out.push(b);
    return this;
  }
  u32(n: number): this {
    return this.raw(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff);
  }
  proto(v = 2): this {
    return this.raw(0x80, v);
  }
  global(module: string, name: string): this {
    return this.raw(0x63, ...Buffer.from(`${module}\n${name}\n`, "utf8"));
  }
  str(s: string): this {
    const b = Buffer.from(s, "utf8");
    return this.raw(0x58)
      .u32(b.length)
      .raw(...b);
  }
  int(n: number): this {
    if (n >= 0 && n < 256) return this.raw(0x4b, n);
    if (n >= 0 && n < 65536) return this.raw(0x4d, n & 0xff, n >> 8);
    return this.raw(0x4a).u32(n >>> 0);
  }
  mark(): this {
    return this.raw(0x28);
  }
  tuple(): this {
    return this.raw(0x74);
  }
  emptyTuple(): this {
    return this.raw(0x29);
  }
  reduce(): this {
    return this.raw(0x52);
  }
  none(): this {
    return this.raw(0x4e);
  }
  bool(v: boolean): this {
    return this.raw(v ? 0x88 : 0x89);
  }
  stop(): this {
    return this.raw(0x2e);
  }
  ints(xs: number[]): this {
    this.mark();
    for (const x of xs) this.int(x);
    return this.tuple();
  }
  bytes(): Uint8Array {
    return Uint8Array.from(this.out);
  }
}

export type StorageName =
  | "FloatStorage"
  | "DoubleStorage"
  | "HalfStorage"
  | "LongStorage"
  | "IntStorage"
  | "CharStorage"
  | "ByteStorage"
  | "BoolStorage"
  | "BFloat16Storage"
  | "ShortStorage";

export const ITEM: Record<StorageName, number> = {
  FloatStorage: 4,
  DoubleStorage: 8,
  HalfStorage: 2,
  LongStorage: 8,
  IntStorage: 4,
  CharStorage: 1,
  ByteStorage: 1,
  BoolStorage: 1,
  BFloat16Storage: 2,
  ShortStorage: 2,
};

export interface FakeStorage {
  key: string;
  type: StorageName;
  /** Raw little-endian bytes. */
  data: Uint8Array;
  /** Element count written into the persistent id; defaults to the true one. */
  numel?: number;
}

export interface FakeTensor {
  name: string;
  storage: FakeStorage;
  offset?: number;
  size: number[];
  stride?: number[];
}

function contiguousStride(size: number[]): number[] {
  const s = new Array<number>(size.length);
  let acc = 1;
  for (let d = size.length - 1; d >= 0; d--) {
    s[d] = acc;
    acc *= size[d];
  }
  return s;
}

/** The pickle torch.save writes for an OrderedDict of tensors (zip: 5-field persistent ids; legacy: 6). */
export function statePickle(tensors: FakeTensor[], legacy: boolean, wrap?: (p: PickleBuilder, body: () => void) => void): Uint8Array {
  const p = new PickleBuilder().proto(2);
  const body = () => {
    p.global("collections", "OrderedDict").emptyTuple().reduce().mark();
    for (const t of tensors) {
      p.str(t.name).global("torch._utils", "_rebuild_tensor_v2").mark();
      const numel = t.storage.numel ?? t.storage.data.length / ITEM[t.storage.type];
      p.mark().str("storage").global("torch", t.storage.type).str(t.storage.key).str("cpu").int(numel);
      if (legacy) p.none();
      p.tuple().raw(0x51); // BINPERSID
      p.int(t.offset ?? 0)
        .ints(t.size)
        .ints(t.stride ?? contiguousStride(t.size))
        .bool(false);
      p.global("collections", "OrderedDict").emptyTuple().reduce().tuple().reduce();
    }
    p.raw(0x75); // SETITEMS
  };
  if (wrap) wrap(p, body);
  else body();
  return p.stop().bytes();
}

function uniqueStorages(tensors: FakeTensor[]): FakeStorage[] {
  const seen = new Map<string, FakeStorage>();
  for (const t of tensors) if (!seen.has(t.storage.key)) seen.set(t.storage.key, t.storage);
  return [...seen.values()];
}

export interface ZipFileEntry {
  name: string;
  data: Uint8Array;
}

export interface ZipOptions {
  zip64?: boolean;
  deflate?: boolean;
  /** Compression method to record (default 0, or 8 with deflate). */
  method?: number;
}

/** A zip archive as torch's writer makes one (stored entries), optionally with ZIP64 records or deflate. */
export function buildZip(entries: ZipFileEntry[], o: ZipOptions = {}): Uint8Array {
  const chunks: Buffer[] = [];
  const central: Buffer[] = [];
  let pos = 0;
  for (const e of entries) {
    const name = Buffer.from(e.name, "utf8");
    const body = o.deflate ? zlib.deflateRawSync(e.data) : Buffer.from(e.data);
    const method = o.method ?? (o.deflate ? 8 : 0);
    const crc = zlib.crc32(e.data) >>> 0;
    const localExtra = o.zip64 ? Buffer.alloc(20) : Buffer.alloc(0);
    if (o.zip64) {
      localExtra.writeUInt16LE(1, 0);
      localExtra.writeUInt16LE(16, 2);
      localExtra.writeBigUInt64LE(BigInt(e.data.length), 4);
      localExtra.writeBigUInt64LE(BigInt(body.length), 12);
    }
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(o.zip64 ? 45 : 20, 4);
    local.writeUInt16LE(method, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(o.zip64 ? 0xffffffff : body.length, 18);
    local.writeUInt32LE(o.zip64 ? 0xffffffff : e.data.length, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(localExtra.length, 28);
    const offset = pos;
    chunks.push(local, name, localExtra, body);
    pos += local.length + name.length + localExtra.length + body.length;

    const cdExtra = o.zip64 ? Buffer.alloc(28) : Buffer.alloc(0);
    if (o.zip64) {
      cdExtra.writeUInt16LE(1, 0);
      cdExtra.writeUInt16LE(24, 2);
      cdExtra.writeBigUInt64LE(BigInt(e.data.length), 4);
      cdExtra.writeBigUInt64LE(BigInt(body.length), 12);
      cdExtra.writeBigUInt64LE(BigInt(offset), 20);
    }
    const cd = Buffer.alloc(46);
    cd.writeUInt32LE(0x02014b50, 0);
    cd.writeUInt16LE(o.zip64 ? 45 : 20, 4);
    cd.writeUInt16LE(o.zip64 ? 45 : 20, 6);
    cd.writeUInt16LE(method, 10);
    cd.writeUInt32LE(crc, 16);
    cd.writeUInt32LE(o.zip64 ? 0xffffffff : body.length, 20);
    cd.writeUInt32LE(o.zip64 ? 0xffffffff : e.data.length, 24);
    cd.writeUInt16LE(name.length, 28);
    cd.writeUInt16LE(cdExtra.length, 30);
    cd.writeUInt32LE(o.zip64 ? 0xffffffff : offset, 42);
    central.push(cd, name, cdExtra);
  }
  const cdStart = pos;
  const cdBytes = Buffer.concat(central);
  chunks.push(cdBytes);
  pos += cdBytes.length;
  if (o.zip64) {
    const rec = Buffer.alloc(56);
    rec.writeUInt32LE(0x06064b50, 0);
    rec.writeBigUInt64LE(44n, 4);
    rec.writeUInt16LE(45, 12);
    rec.writeUInt16LE(45, 14);
    rec.writeBigUInt64LE(BigInt(entries.length), 24);
    rec.writeBigUInt64LE(BigInt(entries.length), 32);
    rec.writeBigUInt64LE(BigInt(cdBytes.length), 40);
    rec.writeBigUInt64LE(BigInt(cdStart), 48);
    const loc = Buffer.alloc(20);
    loc.writeUInt32LE(0x07064b50, 0);
    loc.writeBigUInt64LE(BigInt(pos), 8);
    loc.writeUInt32LE(1, 16);
    chunks.push(rec, loc);
  }
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(o.zip64 ? 0xffff : entries.length, 8);
  eocd.writeUInt16LE(o.zip64 ? 0xffff : entries.length, 10);
  eocd.writeUInt32LE(o.zip64 ? 0xffffffff : cdBytes.length, 12);
  eocd.writeUInt32LE(o.zip64 ? 0xffffffff : cdStart, 16);
  chunks.push(eocd);
  return new Uint8Array(Buffer.concat(chunks));
}

/** A torch.save zip archive: `<top>/data.pkl`, `<top>/data/<key>`, `<top>/version`, `<top>/byteorder`. */
export function zipPth(tensors: FakeTensor[], o: ZipOptions & { top?: string; pickle?: Uint8Array; byteorder?: string } = {}): Uint8Array {
  const top = o.top ?? "archive";
  const entries: ZipFileEntry[] = [{ name: `${top}/data.pkl`, data: o.pickle ?? statePickle(tensors, false) }];
  if (o.byteorder !== "") entries.push({ name: `${top}/byteorder`, data: Buffer.from(o.byteorder ?? "little") });
  for (const s of uniqueStorages(tensors)) entries.push({ name: `${top}/data/${s.key}`, data: s.data });
  entries.push({ name: `${top}/version`, data: Buffer.from("3\n") });
  return buildZip(entries, o);
}

/** The legacy torch.save stream: magic, protocol, sys info, object pickle, storage key list, storages. */
export function legacyPth(tensors: FakeTensor[], o: { pickle?: Uint8Array; counts?: Record<string, bigint> } = {}): Uint8Array {
  const parts: Uint8Array[] = [];
  parts.push(hex("80028a0a6cfc9c46f9206aa850192e")); // magic number
  parts.push(new PickleBuilder().proto(2).int(1001).stop().bytes());
  const sys = new PickleBuilder().proto(2).raw(0x7d).mark();
  sys.str("protocol_version").int(1001).str("little_endian").bool(true).str("type_sizes").raw(0x7d).mark();
  sys.str("short").int(2).str("int").int(4).str("long").int(4).raw(0x75).raw(0x75).stop();
  parts.push(sys.bytes());
  parts.push(o.pickle ?? statePickle(tensors, true));
  const storages = uniqueStorages(tensors);
  const list = new PickleBuilder().proto(2).raw(0x5d).mark();
  for (const s of storages) list.str(s.key);
  parts.push(list.raw(0x65).stop().bytes());
  for (const s of storages) {
    const n = Buffer.alloc(8);
    n.writeBigUInt64LE(o.counts?.[s.key] ?? BigInt(s.data.length / ITEM[s.type]));
    parts.push(n, s.data);
  }
  return new Uint8Array(Buffer.concat(parts));
}

export function f32bytes(xs: number[]): Uint8Array {
  return new Uint8Array(Float32Array.from(xs).buffer);
}

export function writeBytes(dir: string, name: string, bytes: Uint8Array): string {
  const p = join(dir, name);
  writeFileSync(p, bytes);
  return p;
}
