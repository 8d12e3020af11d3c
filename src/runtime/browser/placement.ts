/** Node placement read from ORT's verbose session log ("Node(s) placed on [EP]" blocks). */

/** One node as the log names it. */
export interface PlacedNode {
  opType: string;
  name: string;
}

/** Which nodes ran on WebGPU and which fell back to the CPU provider. */
export interface Placement {
  webgpuNodes: PlacedNode[];
  cpuNodes: PlacedNode[];
  /** Node name → provider, for every node listed in the log. */
  nodeToProvider: Record<string, string>;
  /** Node counts per provider as the log states them (also set by "All nodes placed on"). */
  counts: Record<string, number>;
  /** Set when ORT logs "All nodes placed on [EP]" (it then lists no node names). */
  allNodesOn?: string;
}

/** Ops that only compute shapes or indices: ORT keeps these on CPU on purpose, so they are not compute fallbacks. */
export const SHAPE_OPS: ReadonlySet<string> = new Set(['Shape', 'Slice', 'Concat', 'Gather', 'Unsqueeze', 'Squeeze', 'Reshape', 'Cast', 'Range', 'ConstantOfShape', 'Size', 'Expand', 'Identity']);

const HEADER = /(?:Node\(s\)|All nodes) placed on \[(\w+)\]\. Number of nodes: (\d+)/;
const NODE_LINE = /VerifyEachNodeIsAssignedToAnEp\]\s{2,}(\S+) \((.*)\)\s*$/;

/** Parses ORT's verbose "Node placements" block out of console lines. */
export function parsePlacement(log: readonly string[]): Placement {
  const placement: Placement = { webgpuNodes: [], cpuNodes: [], nodeToProvider: {}, counts: {} };
  let provider: string | undefined;
  for (const line of log) {
    const header = HEADER.exec(line);
    if (header) {
      provider = header[1]!;
      placement.counts[provider] = Number(header[2]);
      if (header[0].startsWith('All')) placement.allNodesOn = provider;
      continue;
    }
    const node = provider === undefined ? null : NODE_LINE.exec(line);
    if (!node) continue;
    const placed = { opType: node[1]!, name: node[2]! };
    placement.nodeToProvider[placed.name] = provider!;
    if (provider === 'WebGpuExecutionProvider') placement.webgpuNodes.push(placed);
    else if (provider === 'CPUExecutionProvider') placement.cpuNodes.push(placed);
  }
  return placement;
}

/** CPU-placed nodes that do real arithmetic (not shape/index bookkeeping). */
export function cpuComputeNodes(placement: Placement): PlacedNode[] {
  return placement.cpuNodes.filter((node) => !SHAPE_OPS.has(node.opType));
}
