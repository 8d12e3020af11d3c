/**
 * The backend contract: a backend declares what it executes as low-bit kernels (a capability table, the one
 * source of truth for `checkPlan`, `lower` and `qcompile targets`), rejects a plan it cannot run before
 * anything is compiled, and lowers a quantized IR into the form its runtime accelerates. Nothing silently
 * falls back to float: a fallback happens only under `allowFallback` and is listed in the result.
 */
import type { Diagnostic, Span } from '../diagnostics.js';
import type { Model } from '../ir/core.js';
import type { Layer } from '../quant/layers.js';
import type { ActivationQuantSpec, QuantPlan, WeightQuantSpec } from '../quant/plan.js';
import type { ActivationForm, ActivationModeKind, WeightForm, WeightGranularity } from '../quant/quantized-forms.js';

/** The targets `--target` accepts. */
export type TargetName = 'cpu' | 'webgpu' | 'cuda' | 'tensorrt';

/** One weight form a backend runs: the ops, bit widths, granularities and what it lowers to. */
export interface WeightCapability {
  ops: string[];
  bits: number[];
  granularity: WeightGranularity[];
  /** False when only symmetric (zero point 0) weights are accepted. */
  asymmetric: boolean;
  /** True when codes must be signed (int8/int4 with zero point 0; uint8 with 128 is refused). */
  signedOnly?: boolean;
  /** Group sizes accepted for `group` (empty: any). */
  groupSizes?: number[];
  /** True when a group size must divide the input channels (the runtime has no partial last group). */
  wholeGroupsOnly?: boolean;
  /** The executed form, for `qcompile targets` (e.g. `com.microsoft.MatMulNBits`). */
  form: string;
  /** The rewrite `lower` applies; absent: the DequantizeLinear form is what the runtime fuses. */
  rewrite?: 'matmul-nbits' | 'requantize-symmetric';
  /** Matched only when this lowering option is set (a rewrite that changes numerics must be asked for). */
  optIn?: OptInOption;
  /**
   * The MatMulNBits accuracy_level of a layer whose input the recipe quantizes to int8 (ORT's int8-activation
   * kernel); layers with float inputs keep accuracy_level 0 (float activations). Absent: 0 for every layer.
   */
  int8InputAccuracyLevel?: number;
  /**
   * True when that int8-activation kernel quantizes its input itself exactly as a dynamic symmetric int8
   * per-token-group input whose groups are the weight's blocks (ORT's MatMulNBits accuracy_level 4): the
   * lowering then drops the in-graph quantizer (`int8-group-input.ts`) and the kernel reads the float input.
   */
  quantizesInt8GroupInput?: boolean;
}

/** One activation form a backend runs. */
export interface ActivationCapability {
  ops: string[];
  bits: number[];
  modes: ActivationModeKind[];
  asymmetric: boolean;
  /** True when codes must be signed (int8 with zero point 0). */
  signedOnly?: boolean;
  form: string;
  /**
   * `fake-quant`: Q/DQ become Div/Round/Clip/Mul (for EPs without a QuantizeLinear kernel);
   * `requantize-symmetric`: an asymmetric pair becomes int8 zero point 0 covering its calibrated range.
   */
  rewrite?: 'fake-quant' | 'requantize-symmetric';
  /** Matched only when this lowering option is set. */
  optIn?: OptInOption;
}

/** Lowering options that unlock capabilities which change numerics. */
export type OptInOption = 'requantize';

/** The CLI flag that sets each opt-in option (diagnostics name it, so a refusal says how to proceed). */
export const OPT_IN_FLAGS: Record<OptInOption, string> = { requantize: '--allow-requantize' };

/** What a backend executes as low-bit kernels; anything else is unsupported. */
export interface CapabilityTable {
  weights: WeightCapability[];
  activations: ActivationCapability[];
  /** Float compute types the target runs (`fp32`, `fp16`). */
  compute: string[];
  /** Facts a user must know (shown by `qcompile targets`). */
  notes: string[];
}

/** A plan or graph combination the target cannot execute, naming the layer. */
export interface BackendIssue {
  layer: string;
  /** Stable code: `unsupported-weight`, `unsupported-activation`, `unsupported-layout`, `trt-placement`. */
  code: string;
  /** The problem, without the layer's name (issues with the same message and span are reported together). */
  message: string;
  /** A fact about this layer alone (a calibrated range), kept out of `message` so that issues group. */
  detail?: string;
  /** The recipe rule that planned the layer, when the plan came from a recipe. */
  span?: Span;
}

/** Options of `Backend.lower`. */
export interface LowerOptions {
  /** Dequantize unsupported layers to float instead of failing; each is listed in `fallbacks`. */
  allowFallback?: boolean;
  /**
   * MatMulNBits accuracy_level for every layer (0: float activations, exact; 4: int8 activations, faster on
   * CPU); absent: per layer, the capability's `int8InputAccuracyLevel` where the recipe quantizes the layer's
   * input to int8, else 0.
   */
  accuracyLevel?: number;
  /**
   * Re-express asymmetric 8-bit forms the target only runs symmetrically (capabilities with `optIn:
   * 'requantize'`): weights from their dequantized values, activations from their calibrated range. Each
   * rewritten layer is listed in `requantized`.
   */
  requantize?: boolean;
}

/** What `lower` did. */
export interface LowerResult {
  /** True when the graph changed (a rewrite, a requantization or a fallback). */
  modified: boolean;
  statistics: Record<string, number | string>;
  /** Layers that were dequantized to float because the target cannot run them (only with allowFallback). */
  fallbacks: BackendIssue[];
  /** Layers whose quantization was re-expressed in a form the target runs (only with `requantize`). */
  requantized: BackendIssue[];
  /** The kernel the target's runtime is expected to run for each quantized layer, grouped (targets that know it). */
  kernels?: KernelGroup[];
}

/** Lowered layers that the runtime runs with one kernel. */
export interface KernelGroup {
  /** `MatMulNBits(4b, acc 0)`, `MatMulIntegerToFloat`, `DequantizeLinear + Conv (float)`. */
  kernel: string;
  layers: string[];
  /** Why this form runs slower than the float layer it replaces; set: the compile summary warns (W042). */
  slowerThanFloat?: string;
  /** Where this kernel's arithmetic departs from the quantized graph's, and how to avoid it; set: the compile summary warns (W043). */
  inexactOn?: string;
}

/** A lowering target. */
export interface Backend {
  name: TargetName;
  /** One line for `qcompile targets`. */
  summary: string;
  /** The runtime (and execution provider) the lowered model is for. */
  runtime: string;
  capabilities: CapabilityTable;
  /** Issues for every planned layer whose quantization the target cannot execute (empty: plan accepted). */
  checkPlan(plan: QuantPlan, layers: readonly Layer[], options?: LowerOptions): BackendIssue[];
  /** Rewrites `model` in place into the target's executable form; throws BackendError on unsupported layers. */
  lower(model: Model, options?: LowerOptions): LowerResult;
}

/** A lowering failure: lists every offending layer and combination. */
export class BackendError extends Error {
  constructor(
    readonly target: TargetName,
    readonly issues: BackendIssue[],
  ) {
    super(`target ${target} cannot execute:\n${issues.map((i) => `  ${i.layer}: ${i.message}`).join('\n')}`);
    this.name = 'BackendError';
  }
}

/** What happened to the layers a group of issues names: refused (an error), kept float, or requantized. */
export type IssueOutcome = 'refused' | 'fallback' | 'requantized';

const OUTCOMES: Record<IssueOutcome, { severity: Diagnostic['severity']; code: string; says: (target: TargetName, layers: string, ofRule: boolean) => string }> = {
  refused: { severity: 'error', code: 'E040', says: (target, layers, ofRule) => `target ${target} cannot execute ${ofRule ? 'what this rule plans for' : 'the quantization of'} ${layers}` },
  fallback: { severity: 'warning', code: 'W040', says: (target, layers, ofRule) => `target ${target} cannot execute ${ofRule ? 'what this rule plans for' : 'the quantization of'} ${layers}: they stay float (--allow-fallback)` },
  requantized: { severity: 'note', code: 'W041', says: (target, layers, ofRule) => `target ${target} requantized ${layers}${ofRule ? ' of this rule' : ''} (--allow-requantize)` },
};

/** Layer names a note lists before `… and N more`. */
const LISTED_LAYERS = 4;

/**
 * `issues` as diagnostics, one per recipe rule (issues without a span form one unlocated group): located at
 * the rule, with one note per distinct problem giving its layer count and first layer names.
 */
export function issueDiagnostics(target: TargetName, issues: readonly BackendIssue[], outcome: IssueOutcome): Diagnostic[] {
  const groups = new Map<string, { span: Span | undefined; layers: Set<string>; problems: Map<string, string[]> }>();
  for (const issue of issues) {
    const key = issue.span ? `${issue.span.file}:${issue.span.offset}:${issue.span.length}` : '';
    let group = groups.get(key);
    if (!group) groups.set(key, (group = { span: issue.span, layers: new Set(), problems: new Map() }));
    group.layers.add(issue.layer);
    const layers = group.problems.get(issue.message) ?? [];
    if (!layers.includes(issue.layer)) layers.push(issue.layer);
    group.problems.set(issue.message, layers);
  }
  const { severity, code, says } = OUTCOMES[outcome];
  return [...groups.values()].map(({ span, layers, problems }) => ({
    severity,
    code,
    message: says(target, countLayers(layers.size), span !== undefined),
    ...(span ? { span } : {}),
    notes: [...problems].map(([problem, names]) => `${problem}: ${countLayers(names.length)} (${listLayers(names)})`),
  }));
}

/** `MatMulNBits(4b, acc 0) × 112, MatMulIntegerToFloat × 4`: the expected kernels, as the pass statistics show them. */
export function kernelSummary(kernels: readonly KernelGroup[]): string {
  return kernels.map((k) => `${k.kernel} × ${k.layers.length}`).join(', ');
}

/**
 * The warnings of the expected kernels: one W042 per kernel the target runs slower than the float layer it
 * replaces, one W043 per kernel whose arithmetic departs from the quantized graph's on some machines.
 */
export function kernelDiagnostics(target: TargetName, kernels: readonly KernelGroup[]): Diagnostic[] {
  const diagnostics: Diagnostic[] = [];
  for (const k of kernels) {
    if (k.slowerThanFloat !== undefined) diagnostics.push({ severity: 'warning', code: 'W042', message: `target ${target} runs ${countLayers(k.layers.length)} as ${k.kernel}, slower than float`, notes: [`${k.slowerThanFloat}: ${listLayers(k.layers)}`] });
    if (k.inexactOn !== undefined) diagnostics.push({ severity: 'warning', code: 'W043', message: `target ${target} runs ${countLayers(k.layers.length)} as ${k.kernel}, inexact on some CPUs`, notes: [`${k.inexactOn}: ${listLayers(k.layers)}`] });
  }
  return diagnostics;
}

function countLayers(count: number): string {
  return `${count} layer${count === 1 ? '' : 's'}`;
}

/** `a, b, c, d and 3 more`: the first layer names of a list, as diagnostics and tables show them. */
export function listLayers(names: readonly string[]): string {
  const listed = names.slice(0, LISTED_LAYERS).join(', ');
  return names.length > LISTED_LAYERS ? `${listed} and ${names.length - LISTED_LAYERS} more` : listed;
}

/** True when `capability` is usable under `options` (no opt-in, or its option is set). */
function unlocked(capability: { optIn?: OptInOption }, options: LowerOptions): boolean {
  return capability.optIn === undefined || options[capability.optIn] === true;
}

/** The weight capability that runs `form`, if any (opt-in capabilities only when `options` unlocks them). */
export function findWeightCapability(table: CapabilityTable, form: WeightForm, options: LowerOptions = {}): WeightCapability | undefined {
  return table.weights.find(
    (c) =>
      unlocked(c, options) &&
      c.ops.includes(form.op) &&
      c.bits.includes(form.bits) &&
      c.granularity.includes(form.granularity) &&
      (form.symmetric || c.asymmetric) &&
      (form.signed || !c.signedOnly) &&
      (form.granularity !== 'group' || !c.groupSizes?.length || (form.groupSize !== undefined && c.groupSizes.includes(form.groupSize))) &&
      !(form.partialLastGroup && c.wholeGroupsOnly),
  );
}

/**
 * Why `form` is refused, after `is not supported`: that the target needs whole groups (when it would run the
 * form with a dividing group size), or the opt-in flag that would lower it; '' when neither.
 */
export function weightRefusalHint(table: CapabilityTable, form: WeightForm, options: LowerOptions = {}): string {
  if (form.partialLastGroup && findWeightCapability(table, { ...form, partialLastGroup: false }, options)) {
    return `: the target needs the group size to divide the input channels (this layer's last group is partial)`;
  }
  return optInHint(lockedWeightCapability(table, form));
}

/** The activation capability that runs `form`, if any (opt-in capabilities only when `options` unlocks them). */
export function findActivationCapability(table: CapabilityTable, form: ActivationForm, options: LowerOptions = {}): ActivationCapability | undefined {
  return table.activations.find((c) => unlocked(c, options) && c.ops.includes(form.op) && c.bits.includes(form.bits) && c.modes.includes(form.mode) && (form.symmetric || c.asymmetric) && (form.signed || !c.signedOnly));
}

const ALL_OPT_INS: LowerOptions = Object.fromEntries(Object.keys(OPT_IN_FLAGS).map((k) => [k, true]));

/** ` (--allow-requantize re-expresses it …)` when an opt-in capability would accept the refused form, else ''. */
export function optInHint(capability: WeightCapability | ActivationCapability | undefined): string {
  if (!capability?.optIn) return '';
  return `; ${OPT_IN_FLAGS[capability.optIn]} would lower it as ${capability.form}`;
}

/** The opt-in weight capability that would accept `form` if its option were set. */
export function lockedWeightCapability(table: CapabilityTable, form: WeightForm): WeightCapability | undefined {
  const capability = findWeightCapability(table, form, ALL_OPT_INS);
  return capability?.optIn ? capability : undefined;
}

/** The opt-in activation capability that would accept `form` if its option were set. */
export function lockedActivationCapability(table: CapabilityTable, form: ActivationForm): ActivationCapability | undefined {
  const capability = findActivationCapability(table, form, ALL_OPT_INS);
  return capability?.optIn ? capability : undefined;
}

/** `int4 sym group 128 on MatMul` — the combination as a diagnostic names it. */
export function describeWeight(form: WeightForm): string {
  const granularity = form.granularity === 'group' ? `group ${form.groupSize ?? '?'}${form.partialLastGroup ? ' (partial last group)' : ''}` : form.granularity;
  return `weight ${form.signed ? 'int' : 'uint'}${form.bits} ${form.symmetric ? 'sym' : 'asym'} ${granularity} on ${form.op}`;
}

/** `activation int4 sym static on MatMul`. */
export function describeActivation(form: ActivationForm): string {
  return `activation ${form.signed ? 'int' : 'uint'}${form.bits} ${form.symmetric ? 'sym' : 'asym'} ${form.mode} on ${form.op}`;
}

/**
 * The plan's weight spec in capability terms; `auto` group sizes are checked against every candidate. With the
 * layer's input channels known, a group size that does not divide them is marked `partialLastGroup`.
 */
export function weightFormsOfSpec(op: string, spec: WeightQuantSpec, inChannels?: number): WeightForm[] {
  const base = { op, bits: spec.bits, symmetric: spec.symmetric, signed: spec.signed ?? true };
  const group = (size: number): WeightForm => ({ ...base, granularity: 'group', groupSize: size, ...(inChannels !== undefined && inChannels % size !== 0 ? { partialLastGroup: true } : {}) });
  const g = spec.granularity;
  if (g.kind === 'group') return [group(g.size)];
  if (g.kind === 'auto') return g.candidates.map(group);
  return [{ ...base, granularity: g.kind }];
}

/** The plan's activation spec in capability terms. */
export function activationFormOfSpec(op: string, spec: ActivationQuantSpec): ActivationForm {
  return { op, bits: spec.bits, mode: spec.mode.kind, symmetric: spec.symmetric, signed: spec.symmetric };
}

/** Checks every planned layer against `table`; the shared `checkPlan` of all backends. */
export function checkPlanAgainst(table: CapabilityTable, plan: QuantPlan, layers: readonly Layer[], options: LowerOptions = {}): BackendIssue[] {
  const byName = new Map(layers.map((l) => [l.name, l]));
  const issues: BackendIssue[] = [];
  for (const entry of plan.values()) {
    const layer = byName.get(entry.layer);
    if (!layer) continue; // the planner reports unknown layers; the target only judges real ones
    const span = entry.span ? { span: entry.span } : {};
    if (entry.weight) {
      for (const form of weightFormsOfSpec(layer.opType, entry.weight, layer.inChannels)) {
        if (!findWeightCapability(table, form, options)) issues.push({ layer: entry.layer, code: 'unsupported-weight', message: `${describeWeight(form)} is not supported${weightRefusalHint(table, form, options)}`, ...span });
      }
    }
    if (entry.input) {
      const form = activationFormOfSpec(layer.opType, entry.input);
      if (!findActivationCapability(table, form, options)) issues.push({ layer: entry.layer, code: 'unsupported-activation', message: `${describeActivation(form)} is not supported${optInHint(lockedActivationCapability(table, form))}`, ...span });
    }
  }
  return issues;
}
