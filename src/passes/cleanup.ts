/**
 * cleanup: removes Identity nodes, merges identical small initializers (same type, shape and bytes), and
 * deletes whatever no longer reaches a graph output. Graph input and output names are never changed.
 */
import { createHash } from 'node:crypto';
import type { Value } from '../ir/core.js';
import { dataTypeName } from '../ir/dtype.js';
import { Op, isOp } from '../ir/ops.js';
import { definePass } from './pass.js';

/** The cleanup pass. */
export const cleanup = definePass({
  name: 'cleanup',
  summary: 'remove Identity nodes, merge identical small constants, delete dead nodes and initializers',
  options: {
    'dedupe-max-bytes': { type: 'int', description: 'largest initializer (bytes) compared for deduplication', default: 65536 },
  },
  run(model, options) {
    const graph = model.graph;
    let identities = 0;
    for (const node of [...graph.nodes]) {
      if (!isOp(node, Op.Identity)) continue;
      const input = node.inputs[0];
      const output = node.outputs[0]!;
      // Renaming a graph output would change the model's interface.
      if (!input || output.isGraphOutput) continue;
      output.replaceAllUsesWith(input);
      graph.removeNode(node);
      identities++;
    }

    let duplicates = 0;
    const maxBytes = options['dedupe-max-bytes'];
    const byContent = new Map<string, Value>();
    const names = [...graph.initializers.keys()].sort();
    for (const name of names) {
      const value = graph.initializers.get(name)!;
      const tensor = value.initializer!;
      if (tensor.isDeferred || tensor.byteLength > maxBytes || value.isGraphOutput || graph.inputs.includes(value)) continue;
      const key = `${dataTypeName(tensor.dtype)}[${tensor.dims.join('x')}]:${createHash('sha1').update(tensor.bytes()).digest('hex')}`;
      const kept = byContent.get(key);
      if (!kept) {
        byContent.set(key, value);
        continue;
      }
      if (value.uses.some((u) => u.index < 0)) continue;
      value.replaceAllUsesWith(kept);
      graph.removeInitializer(value);
      duplicates++;
    }

    const dead = graph.removeDeadCode();
    return {
      modified: identities + duplicates + dead.nodes + dead.initializers > 0,
      statistics: { identities_removed: identities, constants_merged: duplicates, dead_nodes: dead.nodes, dead_initializers: dead.initializers },
    };
  },
});
