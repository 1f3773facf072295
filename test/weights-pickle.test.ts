import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { test } from "node:test";
import { VggError } from "../src/errors.js";
import { PyDict, PySet, PyTuple, unpickle } from "../src/weights/pickle.js";
import { hex, PickleBuilder } from "./weights-helpers.js";

const FILE = "/models/hostile.pth";

/** unpickle, expecting a one-line VggError that names FILE and matches `pattern`. */
function refuses(bytes: Uint8Array, pattern: RegExp, opts: Parameters<typeof unpickle>[1] = {}): void {
  assert.throws(
    () => unpickle(bytes, { file: FILE, ...opts }),
    (err: unknown) => {
      assert.ok(err instanceof VggError, `not a VggError: ${String(err)}`);
      assert.ok(!err.message.includes("\n"));
      assert.ok(err.message.startsWith(`${FILE}: `), err.message);
      assert.match(err.message, pattern);
      return true;
    },
  );
}

// pickle.dumps(OrderedDict([('a', 1), ('b', [1.5, None, True, False]), ('c', (1, 2**70, -3, -70000, 300)),
//   ('d', b'xy'), ('e', {'k': 'ü', 'set': {7}})]), protocol=N), from CPython 3.11.
const PY = {
  2: "800263636f6c6c656374696f6e730a4f726465726564446963740a7100295271012858010000006171024b0158010000006271035d710428473ff80000000000004e8889655801000000637105284b018a090000000000000000404afdffffff4a90eefeff4d2c017471065801000000647107635f636f646563730a656e636f64650a710858020000007879710958060000006c6174696e31710a86710b52710c580100000065710d7d710e2858010000006b710f5802000000c3bc711058030000007365747111635f5f6275696c74696e5f5f0a7365740a71125d71134b076185711452711575752e",
  3: "800363636f6c6c656374696f6e730a4f726465726564446963740a7100295271012858010000006171024b0158010000006271035d710428473ff80000000000004e8889655801000000637105284b018a090000000000000000404afdffffff4a90eefeff4d2c01747106580100000064710743027879710858010000006571097d710a2858010000006b710b5802000000c3bc710c5803000000736574710d636275696c74696e730a7365740a710e5d710f4b076185711052711175752e",
  4: "80049585000000000000008c0b636f6c6c656374696f6e73948c0b4f72646572656444696374949394295294288c0161944b018c0162945d9428473ff80000000000004e8889658c016394284b018a090000000000000000404afdffffff4a90eefeff4d2c0174948c01649443027879948c0165947d94288c016b948c02c3bc948c03736574948f94284b079075752e",
  5: "80059585000000000000008c0b636f6c6c656374696f6e73948c0b4f72646572656444696374949394295294288c0161944b018c0162945d9428473ff80000000000004e8889658c016394284b018a090000000000000000404afdffffff4a90eefeff4d2c0174948c01649443027879948c0165947d94288c016b948c02c3bc948c03736574948f94284b079075752e",
};

for (const [proto, bytes] of Object.entries(PY)) {
  test(`unpickles CPython protocol ${proto} output (OrderedDict, list, tuple, big int, bytes, dict, set)`, () => {
    const { value, end } = unpickle(hex(bytes));
    assert.equal(end, bytes.length / 2);
    assert.ok(value instanceof PyDict);
    assert.deepEqual([...value.map.keys()], ["a", "b", "c", "d", "e"]);
    assert.equal(value.map.get("a"), 1);
    assert.deepEqual(value.map.get("b"), [1.5, null, true, false]);
    const c = value.map.get("c");
    assert.ok(c instanceof PyTuple);
    assert.deepEqual(c.items, [1, 2n ** 70n, -3, -70000, 300]);
    assert.deepEqual(value.map.get("d"), Uint8Array.from([0x78, 0x79]));
    const e = value.map.get("e");
    assert.ok(e instanceof PyDict);
    assert.equal(e.map.get("k"), "ü");
    const s = e.map.get("set");
    assert.ok(s instanceof PySet);
    assert.deepEqual(s.items, [7]);
  });
}

test("memo: BINPUT/BINGET share one object, LONG_BINPUT/LONG_BINGET and MEMOIZE index it", () => {
  // [x, x] where x = [] memoised at 0x01020304, then appended to via the memo reference
  const p = new PickleBuilder().proto(2).raw(0x5d).raw(0x5d, 0x72).u32(0x01020304).raw(0x61); // outer=[], x=[] put, append
  p.raw(0x6a).u32(0x01020304).raw(0x61); // append x again
  p.raw(0x6a).u32(0x01020304).int(9).raw(0x61, 0x30); // x.append(9); pop x
  const { value } = unpickle(p.stop().bytes());
  assert.ok(Array.isArray(value));
  assert.equal(value.length, 2);
  assert.equal(value[0], value[1]);
  assert.deepEqual(value[0], [9]);
  // MEMOIZE numbers by memo size: 'a' -> 0, 'b' -> 1
  const q = new PickleBuilder().proto(4).raw(0x8c, 1, 0x61, 0x94, 0x8c, 1, 0x62, 0x94, 0x86, 0x68, 0, 0x68, 1, 0x86, 0x86).stop();
  const v = unpickle(q.bytes()).value as PyTuple;
  assert.deepEqual((v.items[1] as PyTuple).items, ["a", "b"]);
});

test("integers and floats decode with Python's widths and signs", () => {
  const p = new PickleBuilder().proto(2).mark();
  p.raw(0x4a, 0xff, 0xff, 0xff, 0xff); // BININT -1
  p.raw(0x4b, 0xff); // BININT1 255
  p.raw(0x4d, 0xff, 0xff); // BININT2 65535
  p.raw(0x8a, 0); // LONG1 0 bytes = 0
  p.raw(0x8a, 1, 0x80); // LONG1 -128
  p.raw(0x8a, 8, 0, 0, 0, 0, 0, 0, 0, 0x80); // -2^63 as bigint
  p.raw(0x8b, 2, 0, 0, 0, 0x00, 0x01); // LONG4 256
  p.raw(0x47, 0xc0, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18); // BINFLOAT -pi (big-endian)
  const v = unpickle(p.tuple().stop().bytes()).value as PyTuple;
  assert.deepEqual(v.items, [-1, 255, 65535, 0, -128, -(2n ** 63n), 256, -Math.PI]);
});

test("protocol 4 FRAME, BINUNICODE8, BINBYTES8 and STACK_GLOBAL are understood", () => {
  const body = new PickleBuilder()
    .raw(0x8d, 2, 0, 0, 0, 0, 0, 0, 0, 0x68, 0x69)
    .raw(0x8e, 1, 0, 0, 0, 0, 0, 0, 0, 0x7a)
    .raw(0x86)
    .stop()
    .bytes();
  const p = new PickleBuilder()
    .proto(4)
    .raw(0x95, body.length, 0, 0, 0, 0, 0, 0, 0)
    .raw(...body);
  const v = unpickle(p.bytes()).value as PyTuple;
  assert.deepEqual(v.items, ["hi", Uint8Array.from([0x7a])]);
  const sg = new PickleBuilder()
    .proto(4)
    .raw(0x8c, 11, ...Buffer.from("collections"), 0x8c, 11, ...Buffer.from("OrderedDict"), 0x93, 0x29, 0x52)
    .stop();
  assert.ok(unpickle(sg.bytes()).value instanceof PyDict);
});

test("the legacy format's consecutive pickles are read from `start`, returning where each ends", () => {
  const a = new PickleBuilder().proto(2).int(7).stop().bytes();
  const b = new PickleBuilder().proto(2).str("x").stop().bytes();
  const both = new Uint8Array([...a, ...b]);
  const first = unpickle(both);
  assert.deepEqual(first, { value: 7, end: a.length });
  assert.deepEqual(unpickle(both, { start: first.end }), { value: "x", end: both.length });
});

const EXPLOITS: Record<string, string> = {
  // class E: __reduce__ = lambda self: (os.system, ('touch /tmp/vgg-pwned',)); pickle.dumps(E(), protocol=2 / 4)
  "posix.system (protocol 2)": "800263706f7369780a73797374656d0a71005814000000746f756368202f746d702f7667672d70776e656471018571025271032e",
  "posix.system (protocol 4)":
    "8004952f000000000000008c05706f736978948c0673797374656d9493948c14746f756368202f746d702f7667672d70776e656494859452942e",
  // (eval, ('1+1',)) with protocol 2 (__builtin__ via fix_imports) and 4 (builtins)
  "__builtin__.eval (protocol 2)": "8002635f5f6275696c74696e5f5f0a6576616c0a71005803000000312b3171018571025271032e",
  "builtins.eval (protocol 4)": "8004951f000000000000008c086275696c74696e73948c046576616c9493948c03312b3194859452942e",
};

for (const [name, bytes] of Object.entries(EXPLOITS)) {
  test(`refuses a pickle that calls ${name}, before anything runs`, () => {
    const qual = name.split(" ")[0];
    refuses(hex(bytes), new RegExp(`forbidden global '${qual.replace(".", "\\.")}' in pickle`));
    assert.equal(existsSync("/tmp/vgg-pwned"), false);
  });
}

test("refuses os.system, builtins.getattr, subprocess and model classes by name", () => {
  for (const [mod, name] of [
    ["os", "system"],
    ["builtins", "getattr"],
    ["builtins", "__import__"],
    ["subprocess", "Popen"],
    ["torchvision.models.vgg", "VGG"],
    ["torch", "load"],
    ["torch._utils", "_rebuild_qtensor"],
    ["collections", "OrderedDict.__class__"],
    ["builtins", "constructor"],
    ["builtins", "hasOwnProperty"],
    ["torch", "constructor"],
    ["torch", "__proto__"],
    ["constructor", "name"],
  ]) {
    const bytes = new PickleBuilder().proto(2).global(mod, name).emptyTuple().reduce().stop().bytes();
    refuses(bytes, new RegExp(`forbidden global '${`${mod}.${name}`.replace(/[.()]/g, "\\$&")}' in pickle`));
  }
});

test("allowed globals are only data constructors: calling a storage class or REDUCE on a non-global fails", () => {
  refuses(
    new PickleBuilder().proto(2).global("torch", "FloatStorage").emptyTuple().reduce().stop().bytes(),
    /REDUCE on torch\.FloatStorage/,
  );
  refuses(new PickleBuilder().proto(2).str("x").emptyTuple().reduce().stop().bytes(), /REDUCE on str/);
  refuses(
    new PickleBuilder().proto(2).global("_codecs", "encode").str("x").str("rot13").raw(0x86).reduce().stop().bytes(),
    /_codecs\.encode\(str, 'latin1'\)/,
  );
  refuses(
    new PickleBuilder().proto(2).global("torch", "ComplexFloatStorage").stop().bytes(),
    /unsupported tensor storage 'torch\.ComplexFloatStorage'/,
  );
});

test("tensors and persistent ids are refused unless the caller provides them", () => {
  refuses(new PickleBuilder().proto(2).str("pid").raw(0x51).stop().bytes(), /persistent ids are not expected/);
  const t = new PickleBuilder()
    .proto(2)
    .global("torch._utils", "_rebuild_tensor_v2")
    .mark()
    .none()
    .int(0)
    .ints([1])
    .ints([1])
    .bool(false)
    .none()
    .tuple()
    .reduce()
    .stop();
  refuses(t.bytes(), /tensors are not expected/);
  const intStride = new PickleBuilder()
    .proto(2)
    .global("torch._utils", "_rebuild_tensor_v2")
    .mark()
    .none()
    .int(0)
    .ints([1])
    .int(1)
    .bool(false)
    .none()
    .tuple()
    .reduce()
    .stop();
  refuses(intStride.bytes(), /tensor stride must be a tuple, got int/, { rebuildTensor: () => ({}) });
  const badStride = new PickleBuilder()
    .proto(2)
    .global("torch._utils", "_rebuild_tensor_v2")
    .mark()
    .none()
    .int(0)
    .ints([2, 2])
    .ints([1])
    .bool(false)
    .none()
    .tuple()
    .reduce()
    .stop();
  refuses(badStride.bytes(), /2 dims but stride has 1/, { rebuildTensor: () => ({}) });
  const param = new PickleBuilder()
    .proto(2)
    .global("torch._utils", "_rebuild_parameter")
    .mark()
    .str("not a tensor")
    .bool(true)
    .none()
    .tuple()
    .reduce()
    .stop();
  refuses(param.bytes(), /parameter data is a str, not a tensor/);
});

test("truncation anywhere in a valid pickle gives a clear error, never a crash", () => {
  const full = hex(PY[2]);
  for (let n = 0; n < full.length; n++) {
    refuses(full.subarray(0, n), /truncated|STOP|stack|MARK/);
  }
});

test("declared lengths past the end are refused before allocating", () => {
  refuses(
    new PickleBuilder().proto(2).raw(0x58, 0xff, 0xff, 0xff, 0x7f, 0x41).stop().bytes(),
    /truncated at byte 7 \(needs 2147483647 more bytes, 2 left\)/,
  );
  refuses(
    new PickleBuilder().proto(4).raw(0x8d, 0, 0, 0, 0, 0, 0, 0, 0x40, 0x41).stop().bytes(),
    /declared length 4611686018427387904 exceeds/,
  );
  refuses(
    new PickleBuilder().proto(4).raw(0x95, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff).stop().bytes(),
    /declared length .* exceeds/,
  );
  refuses(new PickleBuilder().proto(2).raw(0x8b, 0, 0, 0, 0x10).stop().bytes(), /LONG4 of 268435456 bytes refused/);
});

test("malformed streams: stack underflow, missing MARK, undefined memo, bad opcode, bad UTF-8, wrong protocol", () => {
  refuses(new PickleBuilder().proto(2).raw(0x52).stop().bytes(), /stack underflow/);
  refuses(new PickleBuilder().proto(2).raw(0x74).stop().bytes(), /no MARK/);
  refuses(new PickleBuilder().proto(2).raw(0x68, 5).stop().bytes(), /memo key 5 is not defined/);
  refuses(new PickleBuilder().proto(2).raw(0x69).stop().bytes(), /unsupported pickle opcode 0x69 'i'/); // INST
  refuses(new PickleBuilder().proto(2).raw(0x6f).stop().bytes(), /unsupported pickle opcode 0x6f 'o'/); // OBJ
  refuses(new PickleBuilder().proto(2).raw(0x82, 1).stop().bytes(), /unsupported pickle opcode 0x82/); // EXT1
  refuses(new PickleBuilder().proto(2).raw(0x58, 2, 0, 0, 0, 0xc3, 0x28).stop().bytes(), /not valid UTF-8/);
  refuses(new PickleBuilder().proto(9).int(1).stop().bytes(), /unsupported pickle protocol 9/);
  refuses(new PickleBuilder().proto(2).int(1).int(2).stop().bytes(), /STOP with 2 items/);
  refuses(new PickleBuilder().proto(2).raw(0x5d).int(1).int(2).raw(0x73).stop().bytes(), /cannot set an item on a list/);
  refuses(new PickleBuilder().proto(2).emptyTuple().int(1).raw(0x61).stop().bytes(), /cannot append to a tuple/);
  refuses(new PickleBuilder().proto(2).raw(0x7d).raw(0x5d).int(1).raw(0x73).stop().bytes(), /unhashable dict key of type list/);
  refuses(new PickleBuilder().proto(2).str("x").raw(0x7d).raw(0x62).stop().bytes(), /BUILD on a str/);
  // A mark hides what is below it: SETITEM cannot reach through it.
  refuses(new PickleBuilder().proto(2).raw(0x7d).mark().int(1).raw(0x73).stop().bytes(), /stack underflow/);
});

test("stack and memo are bounded", () => {
  const p = new PickleBuilder().proto(2);
  for (let i = 0; i < 101; i++) p.raw(0x4e);
  refuses(p.stop().bytes(), /stack deeper than 100 items/, { maxStack: 100 });
  const q = new PickleBuilder().proto(2).raw(0x4e);
  for (let i = 0; i < 11; i++) q.raw(0x71, i);
  refuses(q.stop().bytes(), /memo larger than 10 entries/, { maxMemo: 10 });
});

test("deeply nested and self-referencing structures load without recursion", () => {
  const depth = 200_000;
  const p = new PickleBuilder().proto(2);
  for (let i = 0; i < depth; i++) p.raw(0x5d);
  for (let i = 1; i < depth; i++) p.raw(0x61);
  let v = unpickle(p.stop().bytes()).value as unknown[];
  let d = 1;
  while (v.length) {
    v = v[0] as unknown[];
    d++;
  }
  assert.equal(d, depth);
  // l = []; l.append(l)
  const self = unpickle(new PickleBuilder().proto(2).raw(0x5d, 0x71, 0, 0x68, 0, 0x61).stop().bytes()).value as unknown[];
  assert.equal(self[0], self);
});
