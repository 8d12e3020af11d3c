/**
 * Layer identity: discovered once per model, then stamped on each layer's weight-applying node as node
 * metadata (`qcompile.layer`, `qcompile.role`, `qcompile.block`), which survives rewrites (a node that
 * replaces another takes its metadata) and save/load. Everything after the first ask reads the stamps, so a
 * layer keeps its name and role however the graph around it is quantized.
 */
import type { Model, Node } from '../ir/core.js';
import { IrError } from '../ir/errors.js';
import { LAYER_ROLES, RENAMED_ROLES, discoverLayers, layerGeometry, type Layer, type LayerRole } from './layers.js';

/** Node metadata keys of a layer's identity. */
export const LAYER_KEY = 'qcompile.layer';
export const ROLE_KEY = 'qcompile.role';
export const BLOCK_KEY = 'qcompile.block';

/** A layer's identity as stamped on its node. */
export interface LayerStamp {
  name: string;
  role: LayerRole;
  block?: number;
  /** The node carrying the stamp: the one that applies the weight (after lowering, the kernel that replaced it). */
  node: Node;
}

/** Stamps each layer's identity on its node. */
export function stampLayers(layers: readonly Layer[]): void {
  for (const layer of layers) {
    layer.node.metadata.set(LAYER_KEY, layer.name);
    layer.node.metadata.set(ROLE_KEY, layer.role);
    if (layer.block !== undefined) layer.node.metadata.set(BLOCK_KEY, String(layer.block));
  }
}

/** The stamped layers of `model`, in graph order (empty for a model never stamped). */
export function layerStamps(model: Model): LayerStamp[] {
  const stamps: LayerStamp[] = [];
  const seen = new Map<string, Node>();
  for (const node of model.graph.nodes) {
    const name = node.metadata.get(LAYER_KEY);
    if (name === undefined) continue;
    const other = seen.get(name);
    if (other) throw new IrError('malformed-model', `layer '${name}' is stamped on two nodes, '${other.name}' and '${node.name}' (a rewrite kept the node it replaced?)`);
    seen.set(name, node);
    const role = node.metadata.get(ROLE_KEY) as LayerRole | undefined;
    if (role === undefined || !LAYER_ROLES.includes(role)) {
      const renamed = role !== undefined && RENAMED_ROLES.get(role);
      const hint = renamed ? `, the old spelling of '${renamed}': compile the float model again` : '';
      throw new IrError('malformed-model', `layer '${name}' (node '${node.name}') has no valid ${ROLE_KEY} stamp (found ${role === undefined ? 'none' : `'${role}'`}${hint})`);
    }
    const block = node.metadata.get(BLOCK_KEY);
    stamps.push({ name, role, ...(block !== undefined ? { block: Number(block) } : {}), node });
  }
  return stamps;
}

/**
 * The layers of `model` with their current geometry (weight, DequantizeLinear, bias, shapes) read off the
 * stamped nodes. A model without stamps is discovered and stamped first: discovery runs once per model.
 */
export function layersOf(model: Model): Layer[] {
  return stamped(model).map((stamp, index) => {
    const geometry = layerGeometry(stamp.node);
    if (!geometry) throw new IrError('invalid-argument', `layer '${stamp.name}': node '${stamp.node.name}' (${stamp.node.opType}) no longer applies a constant weight (lowered already?)`);
    return { ...geometry, name: stamp.name, role: stamp.role, ...(stamp.block !== undefined ? { block: stamp.block } : {}), index };
  });
}

/** The class count of the label embedder (its table's rows), 0 for an unconditional model. */
export function labelClasses(model: Model): number {
  const label = stamped(model).find((s) => s.role === 'embed.label');
  return label ? (layerGeometry(label.node)?.outChannels ?? 0) : 0;
}

/** The stamps, discovering and stamping the layers of a model that has none. */
function stamped(model: Model): LayerStamp[] {
  const stamps = layerStamps(model);
  if (stamps.length > 0) return stamps;
  stampLayers(discoverLayers(model));
  return layerStamps(model);
}
