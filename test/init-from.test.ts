import assert from "node:assert/strict";
import { test } from "node:test";
import { VggError } from "../src/errors.js";
import { initWeights } from "../src/weights/init.js";
import { COPIED_CONVS, initFrom, paperConvs } from "../src/weights/init-from.js";
import { buildModel } from "../src/zoo/model.js";

const same = (a: { data: ArrayLike<number | bigint> }, b: { data: ArrayLike<number | bigint> }) =>
  a.data.length === b.data.length && Array.from(a.data).every((v, k) => v === b.data[k]);

test("init-from: D gets A's first four convs (by position, with BN) and FC layers; the rest stays fresh", () => {
  for (const bn of [false, true]) {
    const o = { widthDivisor: 16, numClasses: 10, inputSize: 32 };
    const a = buildModel(bn ? "vgg11_bn" : "vgg11", o);
    const d = buildModel(bn ? "vgg16_bn" : "vgg16", o);
    const wa = initWeights(a, "torchvision", 1);
    const fresh = initWeights(d, "glorot", 2);
    const r = initFrom(d, fresh, wa);
    const convA = paperConvs(a);
    const copiedNames = ["conv1_1", "conv2_1", "conv3_1", "conv3_2"];
    assert.deepEqual(
      convA.slice(0, COPIED_CONVS).map((c) => c.paper),
      copiedNames,
    );
    for (const c of paperConvs(d)) {
      const got = r.weights.get(`${c.name}.weight`)!;
      const fromA = convA.find((x) => x.paper === c.paper);
      if (copiedNames.includes(c.paper)) assert.ok(same(got, wa.get(`${fromA!.name}.weight`)!), `${c.paper} copied`);
      else assert.ok(same(got, fresh.get(`${c.name}.weight`)!), `${c.paper} fresh`);
    }
    // A's conv3_1 is features.6 while D's is features.10: matched by the paper's names.
    assert.ok(r.copied.some((c) => c.key !== c.from));
    for (const k of ["classifier.0.weight", "classifier.3.bias", "classifier.6.weight"]) assert.ok(same(r.weights.get(k)!, wa.get(k)!), k);
    const bnKeys = r.copied.filter((c) => c.key.endsWith("running_var"));
    assert.equal(bnKeys.length, bn ? COPIED_CONVS : 0);
    assert.match(r.summary, /conv1_1, conv2_1, conv3_1, conv3_2.*3 FC layers/);
    assert.equal(r.weights.size, fresh.size);
  }
});

test("init-from: shapes and BN must agree, with a message naming both tensors", () => {
  const a = buildModel("vgg11", { widthDivisor: 8, numClasses: 10 });
  const d = buildModel("vgg16", { widthDivisor: 16, numClasses: 10 });
  assert.throws(
    () => initFrom(d, initWeights(d, "glorot", 0), initWeights(a, "torchvision", 0), "a.safetensors"),
    (e: unknown) => {
      assert.ok(e instanceof VggError);
      assert.match(e.message, /^a\.safetensors: not a zoo VGG at vgg16's width \/16/);
      return true;
    },
  );
  const abn = buildModel("vgg11_bn", { widthDivisor: 16, numClasses: 10 });
  assert.throws(() => initFrom(d, initWeights(d, "glorot", 0), initWeights(abn, "torchvision", 0)), /batch norm after conv1_1/);
});
