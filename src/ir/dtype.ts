/** ONNX tensor element types (TensorProto.DataType numbering) and their sizes. */
export enum DataType {
  UNDEFINED = 0,
  FLOAT = 1,
  UINT8 = 2,
  INT8 = 3,
  UINT16 = 4,
  INT16 = 5,
  INT32 = 6,
  INT64 = 7,
  STRING = 8,
  BOOL = 9,
  FLOAT16 = 10,
  DOUBLE = 11,
  UINT32 = 12,
  UINT64 = 13,
  COMPLEX64 = 14,
  COMPLEX128 = 15,
  BFLOAT16 = 16,
  FLOAT8E4M3FN = 17,
  FLOAT8E4M3FNUZ = 18,
  FLOAT8E5M2 = 19,
  FLOAT8E5M2FNUZ = 20,
  UINT4 = 21,
  INT4 = 22,
}

interface DataTypeInfo {
  /** Short name used by the text IR (`f32`, `i4`, …). */
  short: string;
  /** Storage bits per element; 0 where elements have no fixed size (strings). */
  bits: number;
}

const INFO: Record<DataType, DataTypeInfo> = {
  [DataType.UNDEFINED]: { short: 'undef', bits: 0 },
  [DataType.FLOAT]: { short: 'f32', bits: 32 },
  [DataType.UINT8]: { short: 'u8', bits: 8 },
  [DataType.INT8]: { short: 'i8', bits: 8 },
  [DataType.UINT16]: { short: 'u16', bits: 16 },
  [DataType.INT16]: { short: 'i16', bits: 16 },
  [DataType.INT32]: { short: 'i32', bits: 32 },
  [DataType.INT64]: { short: 'i64', bits: 64 },
  [DataType.STRING]: { short: 'str', bits: 0 },
  [DataType.BOOL]: { short: 'bool', bits: 8 },
  [DataType.FLOAT16]: { short: 'f16', bits: 16 },
  [DataType.DOUBLE]: { short: 'f64', bits: 64 },
  [DataType.UINT32]: { short: 'u32', bits: 32 },
  [DataType.UINT64]: { short: 'u64', bits: 64 },
  [DataType.COMPLEX64]: { short: 'c64', bits: 64 },
  [DataType.COMPLEX128]: { short: 'c128', bits: 128 },
  [DataType.BFLOAT16]: { short: 'bf16', bits: 16 },
  [DataType.FLOAT8E4M3FN]: { short: 'f8e4m3fn', bits: 8 },
  [DataType.FLOAT8E4M3FNUZ]: { short: 'f8e4m3fnuz', bits: 8 },
  [DataType.FLOAT8E5M2]: { short: 'f8e5m2', bits: 8 },
  [DataType.FLOAT8E5M2FNUZ]: { short: 'f8e5m2fnuz', bits: 8 },
  [DataType.UINT4]: { short: 'u4', bits: 4 },
  [DataType.INT4]: { short: 'i4', bits: 4 },
};

/** True for the element types this IR knows. */
export function isKnownDataType(value: number): value is DataType {
  return Object.prototype.hasOwnProperty.call(INFO, value);
}

/** The text-IR short name of an element type (`f32`). */
export function dataTypeName(dtype: DataType): string {
  return INFO[dtype]?.short ?? `dtype${dtype as number}`;
}

/** Parses a short name back to its element type. */
export function dataTypeFromName(name: string): DataType | undefined {
  for (const [key, info] of Object.entries(INFO)) if (info.short === name) return Number(key) as DataType;
  return undefined;
}

/** Storage bits per element (4 for int4, which ONNX packs two to a byte). */
export function bitsOf(dtype: DataType): number {
  return INFO[dtype]?.bits ?? 0;
}

/** Bytes that `count` packed elements of `dtype` occupy. */
export function byteLengthOf(dtype: DataType, count: number): number {
  return Math.ceil((count * bitsOf(dtype)) / 8);
}

/** Element types that hold floating-point values. */
export function isFloatType(dtype: DataType): boolean {
  return dtype === DataType.FLOAT || dtype === DataType.FLOAT16 || dtype === DataType.DOUBLE || dtype === DataType.BFLOAT16;
}
