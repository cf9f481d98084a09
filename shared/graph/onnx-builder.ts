import onnxProto from 'onnx-proto';
import type { onnx as OnnxNs } from 'onnx-proto';

/** The generated onnx protobuf namespace (onnx-proto ships CommonJS; this interop works in Node and Vite). */
export const onnx = (onnxProto as unknown as { onnx: typeof OnnxNs }).onnx;
const DT = onnx.TensorProto.DataType;
const AT = onnx.AttributeProto.AttributeType;

/** Element types used by the graphs we emit. */
export type ElemType = 'float32' | 'int64' | 'uint8' | 'int32';
const ELEM: Record<ElemType, number> = {
  float32: DT.FLOAT,
  int64: DT.INT64,
  uint8: DT.UINT8,
  int32: DT.INT32,
};

/** A dimension: a fixed size or a symbolic name such as `"seq"`. */
export type Dim = number | string;

/** Attribute values accepted by {@link GraphBuilder.node}. */
export type AttrValue = number | string | number[] | { float: number };

/** One external-data blob: ORT-web receives these through `SessionOptions.externalData`. */
export interface ExternalBlob {
  path: string;
  data: Uint8Array;
}

/**
 * A tiny, typed wrapper over onnx-proto for emitting ModelProtos from TypeScript. Big weights go
 * to ONNX external data (one blob per tensor) so they are never copied through protobuf encoding
 * and a multi-GB shard never needs one contiguous buffer.
 */
export class GraphBuilder {
  private readonly nodes: OnnxNs.INodeProto[] = [];
  private readonly initializers: OnnxNs.ITensorProto[] = [];
  private readonly inputs: OnnxNs.IValueInfoProto[] = [];
  private readonly outputs: OnnxNs.IValueInfoProto[] = [];
  readonly external: ExternalBlob[] = [];
  private counter = 0;
  /** Bytes of weights held as initializers (inline or external). */
  weightBytes = 0;

  /** A fresh, unique value name with a readable prefix. */
  fresh(prefix: string): string {
    return `${prefix}_${this.counter++}`;
  }

  input(name: string, elem: ElemType, dims: Dim[]): string {
    this.inputs.push(valueInfo(name, elem, dims));
    return name;
  }

  output(name: string, elem: ElemType, dims: Dim[]): string {
    this.outputs.push(valueInfo(name, elem, dims));
    return name;
  }

  /** Adds a node; returns its first output name. */
  node(
    opType: string,
    inputs: string[],
    opts: { outputs?: string[]; attrs?: Record<string, AttrValue>; domain?: string; name?: string } = {},
  ): string {
    const outputs = opts.outputs ?? [this.fresh(opts.name ?? opType.toLowerCase())];
    const attribute = Object.entries(opts.attrs ?? {}).map(([name, v]) => attr(name, v));
    this.nodes.push({
      opType,
      input: inputs,
      output: outputs,
      attribute,
      domain: opts.domain ?? '',
      name: this.fresh(`n_${opType}`),
    });
    return outputs[0]!;
  }

  /** A small constant stored inline in the model. */
  constInt64(values: number[], dims: number[] = [values.length], name = this.fresh('c_i64')): string {
    const raw = new BigInt64Array(values.map((v) => BigInt(v)));
    this.initializers.push({ name, dims, dataType: DT.INT64, rawData: new Uint8Array(raw.buffer) });
    return name;
  }

  constFloat(
    values: number[] | Float32Array,
    dims: number[] = [values.length],
    name = this.fresh('c_f32'),
  ): string {
    const raw = values instanceof Float32Array ? values : new Float32Array(values);
    this.initializers.push({
      name,
      dims,
      dataType: DT.FLOAT,
      rawData: new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength),
    });
    return name;
  }

  /** A weight: large ones go to external data, small ones inline. */
  weight(name: string, elem: ElemType, dims: number[], data: Uint8Array): string {
    this.weightBytes += data.byteLength;
    if (data.byteLength < 1024) {
      this.initializers.push({ name, dims, dataType: ELEM[elem], rawData: data });
      return name;
    }
    const path = `w${this.external.length}.bin`;
    this.external.push({ path, data });
    this.initializers.push({
      name,
      dims,
      dataType: ELEM[elem],
      dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
      externalData: [
        { key: 'location', value: path },
        { key: 'offset', value: '0' },
        { key: 'length', value: String(data.byteLength) },
      ],
    });
    return name;
  }

  /** Serialises the model (weights stay in {@link external}). */
  build(graphName: string, opsets: Record<string, number>): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: 'ringwork',
      opsetImport: Object.entries(opsets).map(([domain, version]) => ({ domain, version })),
      graph: {
        name: graphName,
        node: this.nodes,
        input: this.inputs,
        output: this.outputs,
        initializer: this.initializers,
      },
    });
    return onnx.ModelProto.encode(model).finish();
  }
}

function valueInfo(name: string, elem: ElemType, dims: Dim[]): OnnxNs.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: ELEM[elem],
        shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) },
      },
    },
  };
}

function attr(name: string, v: AttrValue): OnnxNs.IAttributeProto {
  if (typeof v === 'string') return { name, type: AT.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) return { name, type: AT.INTS, ints: v };
  if (typeof v === 'object') return { name, type: AT.FLOAT, f: v.float };
  if (Number.isInteger(v)) return { name, type: AT.INT, i: v };
  return { name, type: AT.FLOAT, f: v };
}
