import { describe, expect, it } from 'vitest';
import { averageBitsBudget, evolutionarySearch, greedySearch, meanGroupSize, meanGroupSizeBudget, type SearchSpace } from '../../src/passes/group-search.js';

// A synthetic allocation problem with a known optimum: layer i's error falls with smaller groups, weighted by
// a sensitivity; the budget forbids giving every layer the smallest group.
const layers = 24;
const candidates = [32, 64, 128, 192, 288];
const sensitivity = Array.from({ length: layers }, (_, i) => (i % 6 === 0 ? 10 : 1 + (i % 3)));
const space: SearchSpace = { layers: sensitivity.map((_, i) => `l${i}`), candidates: sensitivity.map(() => candidates) };
const error = async (allocation: number[]) => allocation.reduce((sum, g, i) => sum + sensitivity[i]! * g * g, 0);
const options = { population: 50, topK: 10, mutations: 25, crossovers: 25, mutationRate: 0.1, epochs: 15, seed: 7 };

describe('group-size search', () => {
  it('respects the budget and beats the uniform allocation', async () => {
    const result = await evolutionarySearch(space, meanGroupSizeBudget(128), options, error);
    expect(meanGroupSize(result.best)).toBeGreaterThanOrEqual(128);
    const uniform = await error(Array(layers).fill(128));
    expect(result.bestScore).toBeLessThan(0.8 * uniform);
    // Sensitive layers end up with the finer groups.
    const sensitiveMean = meanGroupSize(result.best.filter((_, i) => sensitivity[i] === 10));
    expect(sensitiveMean).toBeLessThan(meanGroupSize(result.best));
    expect(result.history).toHaveLength(options.epochs);
    expect(result.history.every((v, i) => i === 0 || v <= result.history[i - 1]!)).toBe(true);
  });

  it('never ends worse than the best uniform allocation the budget allows, even where random members are poor', async () => {
    // Uniform 128 is optimal here (error grows away from 128 both ways); one epoch of a tiny population cannot find it by chance.
    const valley = async (allocation: number[]) => allocation.reduce((sum, g) => sum + Math.abs(Math.log2(g / 128)), 0);
    const result = await evolutionarySearch(space, meanGroupSizeBudget(128), { ...options, population: 6, epochs: 1, mutations: 2, crossovers: 2 }, valley);
    expect(result.best).toEqual(Array(layers).fill(128));
    expect(result.bestScore).toBe(0);
  });

  it('is deterministic for a seed and caches repeated allocations', async () => {
    let calls = 0;
    const counting = async (a: number[]) => {
      calls++;
      return error(a);
    };
    const a = await evolutionarySearch(space, meanGroupSizeBudget(128), options, counting);
    const b = await evolutionarySearch(space, meanGroupSizeBudget(128), options, error);
    expect(a.best).toEqual(b.best);
    expect(calls).toBe(a.evaluations);
    expect(calls).toBeLessThan(options.population + options.epochs * (options.mutations + options.crossovers));
  });

  it('greedy baseline gives the finest groups to the most sensitive layers within budget', async () => {
    const result = await greedySearch(space, meanGroupSizeBudget(128), error);
    expect(meanGroupSize(result.best)).toBeGreaterThanOrEqual(128);
    expect(result.best[0]).toBe(32);
    expect(result.bestScore).toBeLessThan(await error(Array(layers).fill(288)));
  });

  it('an average-bits budget weighs each layer by its parameters: big layers pay for the small layers\' fine groups', async () => {
    // Layer i has 1 or 16 units of parameters; 4-bit codes plus a 32-bit scale per group.
    const parameters = sensitivity.map((_, i) => (i % 2 === 0 ? 16 : 1));
    const bits = (_: number, g: number) => 4 + 32 / g;
    const budget = averageBitsBudget(4 + 32 / 128, parameters, bits);
    expect(budget.allows(Array(layers).fill(128))).toBe(true);
    expect(budget.allows(Array(layers).fill(64))).toBe(false);
    const result = await evolutionarySearch(space, budget, options, error);
    expect(budget.allows(result.best)).toBe(true);
    expect(result.bestScore).toBeLessThan(await error(Array(layers).fill(128)));
    // The small layers get finer groups than the big ones: that is what the weighting buys.
    expect(meanGroupSize(result.best.filter((_, i) => i % 2 === 1))).toBeLessThan(meanGroupSize(result.best.filter((_, i) => i % 2 === 0)));
  });

  it('refuses a budget no allocation meets', async () => {
    await expect(evolutionarySearch(space, meanGroupSizeBudget(300), options, error)).rejects.toThrow(/no allocation meets the budget/);
  });
});
