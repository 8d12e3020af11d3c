/**
 * Finiteness of numbers that become model contents (weights, scales, folded factors, calibration statistics):
 * a NaN or ±Inf is never written silently; it is a NonFiniteError naming the tensor and the first bad index.
 * One helper for every stage: the input model's weights (verify, the quantizer's read), scales, folded factors
 * and calibration statistics.
 */
import { IrError } from './errors.js';

/** A NaN or ±Inf where the model needs a finite number: `what` names the tensor (and the stage). */
export class NonFiniteError extends IrError {
  constructor(
    readonly what: string,
    /** Flat index of the first non-finite element. */
    readonly index: number,
    readonly value: number,
  ) {
    super('non-finite', `${what} is not finite: element ${index} is ${value}`);
    this.name = 'NonFiniteError';
  }
}

/** Index of the first NaN or ±Inf in `values`, or −1. */
export function firstNonFinite(values: ArrayLike<number>): number {
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    // v − v is NaN exactly for NaN and ±Inf; one compare per element.
    if (v - v !== 0) return i;
  }
  return -1;
}

/** Throws NonFiniteError when `values` holds a NaN or ±Inf; `what` names the tensor for the message. */
export function assertFinite(values: ArrayLike<number>, what: string): void {
  const i = firstNonFinite(values);
  if (i >= 0) throw new NonFiniteError(what, i, values[i]!);
}
