/**
 * scripts/torch_eval_fashion_mnist.py, the PyTorch oracle that bench/results/fashion-mnist.md uses to confirm a run's
 * test top-1: on a checkpoint the real binary trains on Fashion-MNIST, its single-crop and dense scores equal the ones
 * `vgg train` reports (the 10,000 test images, the same pixels, the same softmax average of image and mirror).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { ROOT, hasTorch, tmp, vggAsync } from "./helpers.js";

const FMNIST = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
const skip = (!hasTorch() && "needs /usr/bin/python3 with torch") || (!existsSync(FMNIST) && "needs dataset-fashion-mnist");
const dir = tmp("vgg-torch-eval-");
after(() => rmSync(dir, { recursive: true, force: true }));

test("the PyTorch oracle scores a trained Fashion-MNIST checkpoint as vgg train does (single-crop and dense)", {
  skip,
  timeout: 300_000,
}, async () => {
  const out = join(dir, "run");
  const r = await vggAsync([
    ...["train", "--arch", "vgg11_bn", "--head", "compact", "--width-divisor", "16", "--data", "fashion-mnist"],
    ...["--epochs", "1", "--steps", "30", "--val", "0", "--batch-size", "64", "--augment", "crop,flip,erase"],
    ...["--test-protocol", "dense", "--no-progress", "--out", out],
  ]);
  assert.equal(r.status, 0, r.stderr);
  const result = JSON.parse(readFileSync(join(out, "result.json"), "utf8"));
  const py = spawnSync("/usr/bin/python3", [join(ROOT, "scripts", "torch_eval_fashion_mnist.py"), join(out, "best.safetensors")], {
    encoding: "utf8",
  });
  assert.equal(py.status, 0, py.stderr);
  const torch = JSON.parse(py.stdout);
  assert.equal(torch.n, 10000);
  // 30 steps leave a net well above chance (10%) and below 99%, so agreement is not a coincidence of a trivial model.
  assert.ok(torch.top1 > 0.15 && torch.top1 < 0.99, `top-1 ${torch.top1}`);
  assert.equal(result.test.n, 10000);
  assert.ok(Math.abs(torch.top1 - result.test.top1) <= 2e-4, `single-crop: torch ${torch.top1}, vgg ${result.test.top1}`);
  assert.ok(Math.abs(torch.denseTop1 - result.testProtocol.top1) <= 2e-4, `dense: torch ${torch.denseTop1}, vgg ${result.testProtocol.top1}`);
});
