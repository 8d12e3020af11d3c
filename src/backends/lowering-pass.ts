/**
 * lower-<target>: rewrites the quantized Q/DQ graph into the form one target's runtime accelerates, through
 * that backend's `lower` (its capability table and the shared driver). It is the last step of a pipeline, so
 * dumps, `--verify-each`, `--print-ir-after` and reproducers see the target rewrite like any other pass.
 * Layers kept float (`allowFallback`) or requantized (`allowRequantize`) are reported as diagnostics located
 * at the recipe rule that planned them; a refusal fails the pass with a BackendError carrying those spans.
 */
import type { Pass, PassContext } from '../passes/pass.js';
import { renderDiagnostic, type Diagnostic } from '../diagnostics.js';
import { BackendError, issueDiagnostics, type Backend, type BackendIssue } from './backend.js';

/** The lowering pass of `backend`, named `lower-<target>`. */
export function loweringPass(backend: Backend): Pass {
  return {
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
        result = backend.lower(model, { allowFallback: options.allowFallback === true, requantize: options.allowRequantize === true });
      } catch (error) {
        throw error instanceof BackendError ? new BackendError(error.target, located(error.issues)) : error;
      }
      const diagnostics = [...issueDiagnostics(backend.name, located(result.fallbacks), 'fallback'), ...issueDiagnostics(backend.name, located(result.requantized), 'requantized')];
      for (const diagnostic of diagnostics) report(context, diagnostic);
      for (const issue of [...result.fallbacks, ...result.requantized]) context.log(`lower-${backend.name}: ${issue.layer}: ${issue.message}${issue.detail ? ` (${issue.detail})` : ''}`);
      return { modified: result.modified, statistics: result.statistics };
    },
  };
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
