/** Graph construction: fresh names, typed attributes, constants. The ops emit through this. */
import { type DType, numel, type Tensor } from "../tensor.js";
import { type AttrValue, encodeModel, type ModelSpec, type NodeSpec, type ValueSpec } from "./encode.js";

export const i = (v: number): AttrValue => ({ i: v });
export const f = (v: number): AttrValue => ({ f: v });
export const ints = (v: number[]): AttrValue => ({ ints: v });
export const floats = (v: number[]): AttrValue => ({ floats: v });
export const s = (v: string): AttrValue => ({ s: v });

export class GraphBuilder {
  readonly nodes: NodeSpec[] = [];
  readonly initializers: { name: string; tensor: Tensor }[] = [];
  readonly inputs: ValueSpec[] = [];
  readonly outputs: ValueSpec[] = [];
  private readonly used = new Set<string>();
  private readonly consts = new Map<string, string>();
  readonly opsets = new Map<string, number>([["", 17]]);

  /** A name not used before, derived from `base`. */
  fresh(base: string): string {
    let name = base;
    for (let k = 1; this.used.has(name); k++) name = `${base}_${k}`;
    this.used.add(name);
    return name;
  }

  /** Add a node; returns its output names (fresh, from `out` or the op type). */
  op(
    opType: string,
    inputs: string[],
    attrs?: Record<string, AttrValue>,
    opts: { outputs?: number | string[]; domain?: string; name?: string } = {},
  ): string[] {
    const outs = Array.isArray(opts.outputs)
      ? opts.outputs.map((o) => (o === "" ? "" : this.fresh(o)))
      : Array.from({ length: opts.outputs ?? 1 }, () => this.fresh(opts.name ?? opType));
    this.nodes.push({ opType, inputs, outputs: outs, attrs, domain: opts.domain, name: this.fresh(`n_${opts.name ?? opType}`) });
    return outs;
  }

  /** Add a single-output node. */
  op1(opType: string, inputs: string[], attrs?: Record<string, AttrValue>, name?: string): string {
    return this.op(opType, inputs, attrs, { name })[0];
  }

  initializer(name: string, tensor: Tensor): string {
    const n = this.fresh(name);
    this.initializers.push({ name: n, tensor });
    return n;
  }

  /** A small constant initializer, shared between identical requests. */
  constant(dtype: DType, shape: number[], values: number[]): string {
    const key = `${dtype}|${shape.join(",")}|${values.join(",")}`;
    const hit = this.consts.get(key);
    if (hit) return hit;
    if (numel(shape) !== values.length) throw new Error(`constant: ${values.length} values for shape ${shape}`);
    const data =
      dtype === "int64"
        ? BigInt64Array.from(values.map((v) => BigInt(v)))
        : dtype === "int32"
          ? Int32Array.from(values)
          : dtype === "bool" || dtype === "uint8"
            ? Uint8Array.from(values)
            : Float32Array.from(values);
    const name = this.initializer("const", { dtype, shape, data });
    this.consts.set(key, name);
    return name;
  }

  shapeConst(values: number[]): string {
    return this.constant("int64", [values.length], values);
  }

  scalar(v: number): string {
    return this.constant("float32", [], [v]);
  }

  input(name: string, dtype: DType, dims: (number | string)[]): string {
    this.used.add(name);
    this.inputs.push({ name, dtype, dims });
    return name;
  }

  /** Declare `value` a graph output called `name` (an Identity if the names differ). */
  output(value: string, name: string, dtype: DType, dims: (number | string)[]): void {
    if (value !== name) {
      this.used.add(name);
      this.nodes.push({ opType: "Identity", inputs: [value], outputs: [name], name: this.fresh(`n_out_${name}`) });
    }
    this.outputs.push({ name, dtype, dims });
  }

  spec(meta?: Record<string, string>): ModelSpec {
    return {
      nodes: this.nodes,
      initializers: this.initializers,
      inputs: this.inputs,
      outputs: this.outputs,
      opsets: [...this.opsets].map(([domain, version]) => ({ domain, version })),
      metadata: meta,
    };
  }

  encode(meta?: Record<string, string>): Uint8Array {
    return encodeModel(this.spec(meta));
  }
}
