/** Errors raised by the IR layer: always with a stable code and a message that names the offending thing. */
export type IrErrorCode =
  | 'io'
  | 'malformed-model'
  | 'unsupported-version'
  | 'external-data-escape'
  | 'external-data-missing'
  | 'external-data-range'
  | 'unknown-op'
  | 'verify'
  | 'shape-inference'
  | 'non-finite'
  | 'unsupported'
  | 'invalid-argument';

/** A typed IR error: `code` for programs, `message` for people. */
export class IrError extends Error {
  constructor(
    readonly code: IrErrorCode,
    message: string,
    /** The file the error is about, when there is one. */
    readonly file?: string,
  ) {
    super(file ? `${file}: ${message}` : message);
    this.name = 'IrError';
  }
}
