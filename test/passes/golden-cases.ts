/**
 * The golden cases: an input model in text IR (`golden/<input>.in.ir`), the pipeline run on it, and the
 * expected result (`golden/<name>.out.ir`). Inputs are written by hand or printed with `tensors: 'literal'`
 * (every value exact); they start with `//` lines that say what the model is.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderDiagnostic } from '../../src/diagnostics.js';
import type { Model } from '../../src/ir/core.js';
import { parseModelText } from '../../src/ir/parser.js';

/** The folder of the golden files. */
export const GOLDEN_DIR = join(import.meta.dirname, 'golden');

/** The text and model of `file` in golden/; a parse error throws with the rendered diagnostic. */
export function readGoldenModel(file: string): { text: string; model: Model } {
  const text = readFileSync(join(GOLDEN_DIR, file), 'utf8');
  const parsed = parseModelText(text, file);
  if (!parsed.model) throw new Error(parsed.diagnostics.map((d) => renderDiagnostic(d, new Map([[file, text]]))).join('\n'));
  return { text, model: parsed.model };
}

/** One golden case. */
export interface GoldenCase {
  name: string;
  /** The input's file name in `golden/`, without `.in.ir`. */
  input: string;
  pipeline: string;
}

export const goldenCases: GoldenCase[] = [
  { name: 'quantize-weights-w8-per-channel', input: 'dit-block', pipeline: 'select-layers{roles=attn|mlp|adaln,bits=8},quantize-weights' },
  { name: 'quantize-weights-w4-group16-upgrades-opset', input: 'dit-block', pipeline: 'select-layers{roles=attn.qkv|mlp.fc1,bits=4,group=16},quantize-weights,cleanup' },
  { name: 'quantize-weights-uint8-asym-per-tensor', input: 'dit-block', pipeline: 'select-layers{bits=8,granularity=per-tensor,roles=mlp,signed=false,symmetric=false},quantize-weights' },
  { name: 'quantize-weights-adaln-gemm-uint4-lp', input: 'dit-block', pipeline: 'select-layers{bits=4,group=16,range=lp,roles=adaln,signed=false,symmetric=false},quantize-weights' },
  { name: 'quantize-weights-conv-kernel-falls-back-per-channel', input: 'patch-embed', pipeline: 'select-layers{bits=4,group=4,roles=embed.patch},quantize-weights' },
  { name: 'upgrade-opset-reduce-split-squeeze', input: 'opset-11-reduce-split-squeeze', pipeline: 'upgrade-opset' },
  { name: 'cleanup-identity-duplicates-dead', input: 'identity-duplicates-dead', pipeline: 'cleanup' },
];
