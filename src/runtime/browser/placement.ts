/** Node placement read from ORT's verbose session log ("Node(s) placed on [EP]" blocks). */

/** Which nodes ran on WebGPU and which fell back to the CPU provider. */
export interface Placement {
  /** Names of the nodes listed under WebGpuExecutionProvider (empty when ORT logs only "All nodes placed"). */
  webgpuNodes: string[];
  /** Names of the nodes listed under CPUExecutionProvider. */
  cpuNodes: string[];
  /** Node name → op type, for every node listed. */
  opTypes: Record<string, string>;
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
  const placement: Placement = { webgpuNodes: [], cpuNodes: [], opTypes: {}, nodeToProvider: {}, counts: {} };
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
    const name = node[2]!;
    placement.opTypes[name] = node[1]!;
    placement.nodeToProvider[name] = provider!;
    if (provider === 'WebGpuExecutionProvider') placement.webgpuNodes.push(name);
    else if (provider === 'CPUExecutionProvider') placement.cpuNodes.push(name);
  }
  return placement;
}

/** Names of CPU-placed nodes that do real arithmetic (not shape/index bookkeeping). */
export function cpuComputeNodes(placement: Placement): string[] {
  return placement.cpuNodes.filter((name) => !SHAPE_OPS.has(placement.opTypes[name]!));
}
