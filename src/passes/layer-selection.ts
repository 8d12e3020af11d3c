/** Selecting discovered layers by role for passes driven by pipeline text (`roles=attn.qkv|mlp`). */
import { IrError } from '../ir/errors.js';
import type { Layer } from '../quant/layers.js';

/** True when `role` is selected by `selector`: an exact role, or a group prefix (`attn` selects `attn.qkv`). */
export function roleMatches(role: string, selector: string): boolean {
  return selector === '*' || role === selector || role.startsWith(`${selector}.`);
}

/** The layers whose role any of `selectors` matches, in model order. */
export function selectLayersByRole(layers: Layer[], selectors: string[]): Layer[] {
  return layers.filter((layer) => selectors.some((s) => roleMatches(layer.role, s)));
}

/** The layers a transform pass's options name: `layers` (names) when given, else `roles`. */
export function selectLayers(layers: Layer[], options: { readonly layers?: string[] | undefined; readonly roles?: string[] | undefined }): Layer[] {
  const names = options.layers;
  if (names && names.length > 0) {
    const missing = names.filter((n) => !layers.some((l) => l.name === n));
    if (missing.length > 0) throw new IrError('invalid-argument', `no layer named ${missing.map((n) => `'${n}'`).join(', ')}`);
    return layers.filter((l) => names.includes(l.name));
  }
  return selectLayersByRole(layers, options.roles ?? []);
}

/** Groups layers that read the same input value (separate q/k/v projections share one scaling). */
export function groupBySharedInput(layers: Layer[]): Layer[][] {
  const groups = new Map<unknown, Layer[]>();
  for (const layer of layers) {
    const key = layer.node.inputs[0];
    const group = groups.get(key);
    if (group) group.push(layer);
    else groups.set(key, [layer]);
  }
  return [...groups.values()];
}
