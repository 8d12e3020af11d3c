/**
 * Every pass a textual pipeline can name: the transform passes of `src/passes`, then one `lower-<target>`
 * pass per backend. The lists are joined here, above both layers, because passes never depend on backends.
 */
import { loweringPasses } from '../backends/registry.js';
import type { Pass } from '../passes/pass.js';
import { passRegistry } from '../passes/registry.js';

/** The registry `--passes` text and `qcompile passes` use. */
export const pipelinePasses: readonly Pass[] = [...passRegistry, ...loweringPasses];
