/**
 * Every pass, by name, in one explicit list: `qcompile passes` lists it and textual pipelines resolve names
 * against it. Passes register nothing themselves (no import side effects).
 */
import { calibrate } from './calibrate.js';
import { cleanup } from './cleanup.js';
import { loweringPasses } from './lower-target.js';
import { collectHessians } from './collect-hessians.js';
import { convertFloat16 } from './convert-float16.js';
import type { Pass } from './pass.js';
import { quantizeActivations } from './quantize-activations.js';
import { quantizeWeights } from './quantize-weights.js';
import { searchGroupSizes } from './search-group-sizes.js';
import { selectLayers } from './select-layers.js';
import { smoothQuant } from './smooth-quant.js';
import { upgradeOpset } from './upgrade-opset.js';
import { weightDilation } from './weight-dilation.js';

/** All registered passes, in listing order: the transforms, then one `lower-<target>` per backend. */
export const passRegistry: readonly Pass[] = [selectLayers, upgradeOpset, calibrate, smoothQuant, weightDilation, searchGroupSizes, collectHessians, quantizeWeights, quantizeActivations, convertFloat16, cleanup, ...loweringPasses];

/** The registered pass named `name`, or undefined. */
export function findPass(name: string): Pass | undefined {
  return passRegistry.find((p) => p.name === name);
}
