/** Header-aware mutations of safetensors, .npy and legacy .pth files. */
import {
  chance,
  concat,
  interesting64,
  latin1,
  type Mutant,
  pick,
  type Sfc32,
  u16le,
  u32le,
  u64le,
  utf8,
  WEIRD_NUMBERS,
} from "./common.js";
import { mutateBytes } from "./mutate.js";
import { mutatePickle, scanPickle } from "./pickle.js";

// ---------------------------------------------------------------------------------------------------------------
// safetensors: u64 header length, JSON header, data

const ST_DTYPES = [
  "F32",
  "F16",
  "BF16",
  "F64",
  "I64",
  "I32",
  "I16",
  "I8",
  "U8",
  "BOOL",
  "U16",
  "U64",
  "F8_E4M3",
  "C64",
  "F128",
  "",
  "f32",
  "F32 ",
];

function deep(open: string, close: string, n: number, inner = "1"): string {
  return open.repeat(n) + inner + close.repeat(n);
}

/** A replacement JSON value for one field of a tensor entry. */
function weirdField(rng: Sfc32, field: string, entry: Record<string, unknown>): string {
  const offs = entry.data_offsets as number[];
  const shape = entry.shape as number[];
  switch (field) {
    case "dtype":
      return chance(rng, 0.8) ? JSON.stringify(pick(rng, ST_DTYPES)) : pick(rng, ["5", "null", "[]", '{"F32":1}']);
    case "shape": {
      const n = pick(rng, WEIRD_NUMBERS);
      return pick(rng, [
        `[${n}]`,
        `[${n}, ${n}]`,
        `[${[...shape.slice(1), n].join(",")}]`,
        "[]",
        `[${shape.join(",")}, 0]`,
        `[${shape.join(",")}, 1]`,
        `[65536, 65536, 65536]`,
        `[4294967296, 4294967296]`,
        '"1,2"',
        deep("[", "]", pick(rng, [100, 10_000, 100_000])),
      ]);
    }
    default: {
      const n = pick(rng, WEIRD_NUMBERS);
      return pick(rng, [
        `[${offs[0]}, ${n}]`,
        `[${n}, ${offs[1]}]`,
        `[${n}, ${n}]`,
        `[${offs[1]}, ${offs[0]}]`,
        `[${offs[0]}]`,
        `[${offs.join(",")}, 0]`,
        "null",
      ]);
    }
  }
}

function stParse(b: Uint8Array): { header: Record<string, Record<string, unknown>>; data: Uint8Array } {
  const n = Number(new DataView(b.buffer, b.byteOffset).getBigUint64(0, true));
  return { header: JSON.parse(Buffer.from(b.subarray(8, 8 + n)).toString("utf8")), data: b.subarray(8 + n) };
}

function stBuild(entries: [string, string][], data: Uint8Array, lenLie?: bigint): Uint8Array {
  const text = utf8(`{${entries.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(",")}}`);
  return concat([u64le(lenLie ?? BigInt(text.length)), text, data]);
}

export function mutateSafetensors(rng: Sfc32, seed: Uint8Array): Mutant {
  const { header, data } = stParse(seed);
  let entries: [string, string][] = Object.entries(header).map(([k, v]) => [k, JSON.stringify(v)]);
  const names = Object.keys(header).filter((k) => k !== "__metadata__");
  const name = pick(rng, names);
  const i = entries.findIndex(([k]) => k === name);
  let body = data;
  let lie: bigint | undefined;
  let what: string;
  switch (rng.int(12)) {
    case 0:
    case 1:
    case 2: {
      const field = pick(rng, ["dtype", "shape", "data_offsets"]);
      const e = { ...header[name] };
      const v = weirdField(rng, field, e);
      entries[i] = [
        name,
        `{${Object.entries(e)
          .map(([k, x]) => `${JSON.stringify(k)}:${k === field ? v : JSON.stringify(x)}`)
          .join(",")}}`,
      ];
      what = `'${name}'.${field} = ${v.slice(0, 60)}`;
      break;
    }
    case 3: {
      const dup = chance(rng, 0.5) ? entries[i] : [name, entries[rng.int(entries.length)][1]];
      entries.splice(rng.int(entries.length + 1), 0, dup as [string, string]);
      what = `duplicate key '${name}'`;
      break;
    }
    case 4: {
      const n = pick(rng, [64, 1000, 100_000, 200_000]);
      const where = rng.int(3);
      if (where === 0) entries.push(["__metadata__", deep('{"a":', "}", n, '"x"')]);
      else if (where === 1) entries.push(["deep", deep("[", "]", n)]);
      else entries.push(["deep", deep('{"a":', "}", n, "1")]);
      what = `${n}-deep nesting`;
      break;
    }
    case 5: {
      const meta = pick(rng, [
        '{"a":1}',
        "[]",
        '"x"',
        "null",
        '{"__proto__":"x","constructor":"y"}',
        '{"a":{"b":"c"}}',
        `{"k":"${"v".repeat(100_000)}"}`,
      ]);
      entries = entries.filter(([k]) => k !== "__metadata__");
      entries.unshift(["__metadata__", meta]);
      what = `__metadata__ = ${meta.slice(0, 40)}`;
      break;
    }
    case 6: {
      lie = interesting64(rng, BigInt(stBuild(entries, new Uint8Array(0)).length - 8));
      what = `header length -> ${lie}`;
      break;
    }
    case 7: {
      const k = pick(rng, ["__proto__", "constructor", "", "a\u0000b", "\ud800", "toString", "hasOwnProperty"]);
      entries.push([k, entries[i][1]]);
      what = `key ${JSON.stringify(k)}`;
      break;
    }
    case 8:
      entries.splice(i, 1);
      what = `drop '${name}'`;
      break;
    case 9: {
      const n = pick(rng, [1, 8, 4096]);
      body = chance(rng, 0.5) ? data.subarray(0, Math.max(0, data.length - n)) : concat([data, new Uint8Array(n)]);
      what = `data section ${body.length - data.length > 0 ? "+" : ""}${body.length - data.length} bytes`;
      break;
    }
    case 10: {
      // Raw header text edits that break the JSON or its UTF-8.
      const text = `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(",")}}`;
      const edit = pick(rng, [
        " " + text,
        text.slice(1),
        `${text.slice(0, -1)},}`,
        text.replace('"', "'"),
        `[${text}]`,
        `${text}x`,
        "{}",
        "[]",
        "null",
      ]);
      const bytes = chance(rng, 0.3) ? concat([latin1(edit.slice(0, 20)), Uint8Array.of(0xff, 0xfe), latin1(edit.slice(20))]) : utf8(edit);
      return { bytes: concat([u64le(BigInt(bytes.length)), bytes, data]), what: `header text edit` };
    }
    default: {
      // Make two tensors overlap or leave a hole, by swapping or shifting offsets.
      const e = { ...header[name] } as { data_offsets: number[] };
      const d = pick(rng, [-4, -1, 1, 4]);
      e.data_offsets = e.data_offsets.map((x) => Math.max(0, x + d));
      entries[i] = [name, JSON.stringify(e)];
      what = `shift '${name}' by ${d}`;
    }
  }
  return { bytes: stBuild(entries, body, lie), what };
}

// ---------------------------------------------------------------------------------------------------------------
// .npy: magic, version, header length, Python dict literal, data

const DESCRS = [
  "<f4",
  "<f8",
  "<f2",
  "<i8",
  "|u1",
  "|b1",
  ">f4",
  ">i8",
  "|O",
  "O",
  "<c8",
  "|V16",
  "<U10",
  "<i2",
  "<u4",
  "<M8[s]",
  "",
  "f4",
  "<f4<",
];

function npyParse(b: Uint8Array): { major: number; text: string; data: Uint8Array } {
  const major = b[6];
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const len = major === 1 ? v.getUint16(8, true) : v.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  return { major, text: Buffer.from(b.subarray(start, start + len)).toString("latin1"), data: b.subarray(start + len) };
}

function npyBuild(major: number, text: Uint8Array, data: Uint8Array, lenLie?: number): Uint8Array {
  const len = lenLie ?? text.length;
  const head = concat([Uint8Array.of(0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, major, 0), major === 1 ? u16le(len) : u32le(len)]);
  return concat([head, text, data]);
}

function dictText(d: Record<string, string>): string {
  return `{${Object.entries(d)
    .map(([k, v]) => `'${k}': ${v}`)
    .join(", ")}, }`;
}

export function mutateNpy(rng: Sfc32, seed: Uint8Array): Mutant {
  const { major, text, data } = npyParse(seed);
  const m = /'descr': '([^']*)'.*'fortran_order': (\w+).*'shape': (\([^)]*\))/.exec(text);
  if (!m) throw new Error(`seed .npy header not understood: ${text}`);
  const d: Record<string, string> = { descr: `'${m[1]}'`, fortran_order: m[2], shape: m[3] };
  let ver = major;
  let body = data;
  let lie: number | undefined;
  let raw: string | undefined;
  let what: string;
  switch (rng.int(10)) {
    case 0:
    case 1: {
      const n = pick(rng, WEIRD_NUMBERS);
      d.shape = pick(rng, [
        `(${n},)`,
        `(${n}, ${n})`,
        `(${n}, 3, 8, 8)`,
        "()",
        "(0,)",
        `(${n}L,)`,
        "(3, 'a')",
        "(True,)",
        "(1.5,)",
        "(-1, 2)",
        "[3]",
      ]);
      what = `shape ${d.shape}`;
      break;
    }
    case 2:
      d.descr = chance(rng, 0.8) ? `'${pick(rng, DESCRS)}'` : pick(rng, ["5", "None", "('<f4', (2,))", "[('a', '<f4')]", "'<f4'"]);
      what = `descr ${d.descr}`;
      break;
    case 3:
      d.fortran_order = pick(rng, ["True", "1", "'False'", "None", "()"]);
      what = `fortran_order ${d.fortran_order}`;
      break;
    case 4: {
      const n = pick(rng, [100, 10_000, 60_000]);
      raw = pick(rng, [
        `{'descr': '<f4', 'fortran_order': False, 'shape': ${deep("(", ",)", n)}, }`,
        `{'descr': ${deep("{'a': ", "}", n, "1")}, }`,
        `{'descr': ${deep("[", "]", n)}, }`,
      ]);
      what = `${n}-deep nesting`;
      break;
    }
    case 5:
      raw = pick(rng, [
        `${dictText(d).slice(0, -3)}, 'descr': '<f8', }`,
        `${dictText(d).slice(0, -3)}, 'extra': 1, }`,
        `{'descr': '<f4', 'shape': ${d.shape}}`,
        `{'descr': '<f4', 'fortran_order': False, 'shape': ${d.shape}, } trailing`,
        `{'descr': '<f4\\x00', 'fortran_order': False, 'shape': ${d.shape}}`,
        `{'descr: '<f4', 'fortran_order': False, 'shape': ${d.shape}}`,
        `{1: 2}`,
        `{}`,
        "",
      ]);
      what = `header ${raw.slice(0, 50)}`;
      break;
    case 6:
      ver = pick(rng, [0, 2, 3, 4, 255]);
      what = `version ${ver}`;
      break;
    case 7:
      lie = pick(rng, [0, 1, text.length - 1, text.length + 1, 0xffff, ...(major > 1 ? [0xffffffff, 0x7fffffff] : [])]);
      what = `header length ${lie}`;
      break;
    case 8: {
      const n = pick(rng, [1, 2, 4, 8, 1000]);
      body = chance(rng, 0.5) ? data.subarray(0, Math.max(0, data.length - n)) : concat([data, new Uint8Array(n)]);
      what = `data ${body.length - data.length} bytes`;
      break;
    }
    default: {
      // Header bytes that are not latin1/UTF-8 text, or a huge padded header.
      const big = chance(rng, 0.5);
      raw = big ? dictText(d) + " ".repeat(pick(rng, [70_000, 1 << 20])) : `${dictText(d)}\u00ff\u00fe`;
      if (big && ver === 1) ver = 2;
      what = big ? `padded header of ${raw.length} bytes` : "non-ASCII header bytes";
    }
  }
  const headerText = raw ?? dictText(d);
  const bytes = ver === 3 && chance(rng, 0.5) ? concat([latin1(headerText), Uint8Array.of(0xc3)]) : latin1(headerText);
  return { bytes: npyBuild(ver, bytes, body, lie), what };
}

// ---------------------------------------------------------------------------------------------------------------
// legacy .pth: five pickles, then each storage as a u64 element count and its bytes

export function mutateLegacyPth(rng: Sfc32, seed: Uint8Array): Mutant {
  const ops = [];
  let p = 0;
  for (let i = 0; i < 5; i++) {
    const s = scanPickle(seed, p);
    ops.push(...s.ops);
    p = s.end;
  }
  const pickleEnd = p;
  const r = rng.int(10);
  if (r < 6) return mutatePickle(rng, seed, ops);
  if (r < 8) {
    // The u64 count before the first storage (only the first one's position is known without the sizes).
    const out = seed.slice();
    const v = new DataView(out.buffer);
    const x = interesting64(rng, v.getBigUint64(pickleEnd, true));
    v.setBigUint64(pickleEnd, x, true);
    return { bytes: out, what: `first storage count -> ${x}` };
  }
  if (r === 8) {
    const at = pickleEnd + rng.int(Math.max(1, seed.length - pickleEnd));
    return { bytes: seed.slice(0, at), what: `truncate in the storages at ${at}` };
  }
  return mutateBytes(rng, seed);
}
