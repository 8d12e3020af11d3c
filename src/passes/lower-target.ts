/**
 * lower-<target>: rewrites the quantized Q/DQ graph into the form one target's runtime accelerates, through
 * that backend's `lower` (its capability table and the shared driver). It is the last step of a pipeline, so
 * dumps, `--verify-each`, `--print-ir-after` and reproducers see the target rewrite like any other pass.
 * Layers kept float (`allowFallback`) or requantized (`allowRequantize`) are reported as diagnostics located
 * at the recipe rule that planned them; a refusal fails the pass with a BackendError carrying those spans.
 * The kernels the runtime is expected to run go into the statistics (`kernels=`); forms it runs slower than
 * float (W042) and kernels inexact on some CPUs (W043) are warnings.
 * One file makes the four passes (one per backend of the registry), since they differ only in the backend.
 */
import { BackendError, issueDiagnostics, kernelSummary, kernelDiagnostics, type Backend, type BackendIssue, type TargetName } from '../backends/backend.js';
import { backends } from '../backends/registry.js';
import { renderDiagnostic, type Diagnostic } from '../diagnostics.js';
import { definePass, type Pass, type PassContext } from './pass.js';

/** The lowering pass of `backend`, named `lower-<target>`. */
function loweringPass(backend: Backend): Pass {
  return definePass({
    name: `lower-${backend.name}`,
    summary: `lower for ${backend.runtime}: ${backend.summary.replace(/^[^:]*: /, '')}`,
    options: {
      allowFallback: { type: 'boolean', default: false, description: 'dequantize layers the target cannot run to float instead of failing (each is reported)' },
      allowRequantize: { type: 'boolean', default: false, description: 're-express asymmetric int8 the target runs only symmetrically (numerics change; each is reported)' },
    },
    run(model, options, context) {
      const located = (issues: readonly BackendIssue[]) => issues.map((issue) => withRuleSpan(issue, context));
      let result;
      try {
        result = backend.lower(model, { allowFallback: options.allowFallback, requantize: options.allowRequantize });
      } catch (error) {
        throw error instanceof BackendError ? new BackendError(error.target, located(error.issues)) : error;
      }
      const kernels = result.kernels ?? [];
      const diagnostics = [...issueDiagnostics(backend.name, located(result.fallbacks), 'fallback'), ...issueDiagnostics(backend.name, located(result.requantized), 'requantized'), ...kernelDiagnostics(backend.name, kernels)];
      for (const diagnostic of diagnostics) report(context, diagnostic);
      for (const issue of [...result.fallbacks, ...result.requantized]) context.log(`lower-${backend.name}: ${issue.layer}: ${issue.message}${issue.detail ? ` (${issue.detail})` : ''}`);
      return { modified: result.modified, statistics: kernels.length > 0 ? { ...result.statistics, kernels: kernelSummary(kernels) } : result.statistics };
    },
  });
}

/** The issue with the span of the plan entry of its layer (graph-level issues name the layer the plan does). */
function withRuleSpan(issue: BackendIssue, context: PassContext): BackendIssue {
  const span = issue.span ?? context.plan.get(issue.layer)?.span;
  return span ? { ...issue, span } : issue;
}

/** Sends `diagnostic` to the context's diagnostics, or to its log when the caller collects none. */
function report(context: PassContext, diagnostic: Diagnostic): void {
  if (context.report) context.report(diagnostic);
  else context.log(renderDiagnostic(diagnostic));
}

const loweringPassByTarget = new Map(Object.values(backends).map((backend) => [backend.name, loweringPass(backend)]));

/** One `lower-<target>` pass per backend, in the order of `backends`. */
export const loweringPasses: readonly Pass[] = [...loweringPassByTarget.values()];

/** The `lower-<target>` pass of `target`. */
export function loweringPassOf(target: TargetName): Pass {
  return loweringPassByTarget.get(target)!;
}

/** The target a pipeline step lowers for, or undefined when `pass` is not a lowering pass. */
export function loweringTargetOf(pass: Pass): TargetName | undefined {
  for (const [target, lowering] of loweringPassByTarget) if (lowering === pass) return target;
  return undefined;
}
