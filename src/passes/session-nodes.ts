/**
 * Nodes a pass adds to the graph for one ONNX Runtime session only (calibrate's observers, collect-hessians'
 * Gram products): each named under its tensor's prefix, and removed with the constants only they read once the
 * session is open, so the model leaves the pass as it came.
 */
import type { Attribute, Graph, Node, Value } from '../ir/core.js';
import type { Tensor } from '../ir/tensor.js';

/** The session-only nodes of one pass run. */
export class SessionNodes {
  private readonly added: Node[] = [];

  constructor(private readonly graph: Graph) {}

  /** Adds an `opType` node reading `inputs`; it and its one output are named `${base}/${suffix}`. */
  add(base: string, opType: string, inputs: Value[], suffix: string, attributes?: Record<string, Attribute>): Value {
    const node = this.graph.addNode({ opType, inputs, outputs: [`${base}/${suffix}`], name: `${base}/${suffix}`, ...(attributes ? { attributes } : {}) });
    this.added.push(node);
    return node.outputs[0]!;
  }

  /** A constant input for the added nodes, named `${base}.${suffix}`. */
  constant(base: string, suffix: string, tensor: Tensor): Value {
    return this.graph.addInitializer(`${base}.${suffix}`, tensor);
  }

  /** Removes every added node, last first, and the constants no other node reads. */
  removeAll(): void {
    for (const node of this.added.reverse()) {
      const constants = node.inputs.filter((v): v is Value => !!v?.initializer && v.uses.length === 1);
      this.graph.removeNode(node);
      for (const c of constants) this.graph.removeInitializer(c);
    }
    this.added.length = 0;
  }
}
