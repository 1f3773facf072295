import { inFile } from "../errors.js";
import type { StateDict } from "../tensor.js";
import type { VggModel } from "../zoo/model.js";
import { loadStateDict } from "./index.js";
import { matchStateDict } from "./match.js";

/** Read a .pth or .safetensors file and fit it to the model (keys, shapes, dtypes). */
export async function loadWeights(m: VggModel, path: string): Promise<StateDict> {
  let sd: StateDict;
  try {
    sd = await loadStateDict(path);
  } catch (err) {
    throw inFile(path, err);
  }
  return matchStateDict(m, sd, path);
}
