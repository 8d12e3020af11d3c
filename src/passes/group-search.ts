/**
 * Q-DiT's automatic granularity allocation: an evolutionary search over per-layer group sizes under a budget,
 * plus a greedy sensitivity baseline. Pure search: the caller supplies the fitness (lower is better) and the
 * search caches every scored allocation, so no candidate is ever measured twice.
 */
import { seededRandom } from '../random.js';

/** What the search allocates: per layer, one of its valid candidate group sizes. */
export interface SearchSpace {
  /** Layer names, in model order (the genome's gene order). */
  layers: string[];
  /** The group sizes tried per layer (the candidates below its input channels, and one that spans them), ascending. */
  candidates: number[][];
}

/** A budget on the allocation, as the search sees it. */
export interface SearchBudget {
  /** `mean group size >= 128`, for messages. */
  describe: string;
  /** True when the allocation stays within the budget. */
  allows(allocation: Allocation): boolean;
}

/** The mean group size over the layers stays at or above `min`. */
export function meanGroupSizeBudget(min: number): SearchBudget {
  return { describe: `mean group size >= ${min}`, allows: (a) => meanGroupSize(a) >= min };
}

/** The parameter-weighted average of `bitsPerWeight(layer, size)` stays at or below `max`. */
export function averageBitsBudget(max: number, parameters: number[], bitsPerWeight: (layer: number, size: number) => number): SearchBudget {
  const total = parameters.reduce((a, b) => a + b, 0);
  return { describe: `average bits <= ${max}`, allows: (a) => a.reduce((sum, size, i) => sum + parameters[i]! * bitsPerWeight(i, size), 0) / total <= max + 1e-9 };
}

/** Evolutionary search settings (Q-DiT defaults: population 50, top 10, 25 mutations, 25 crossovers). */
export interface EvolutionOptions {
  population: number;
  topK: number;
  mutations: number;
  crossovers: number;
  mutationRate: number;
  epochs: number;
  seed: number;
}

/** Group size per layer, in SearchSpace.layers order. */
export type Allocation = number[];

/** Scores an allocation: lower is better. */
export type Fitness = (allocation: Allocation) => Promise<number>;

/** The outcome of a search. */
export interface SearchResult {
  best: Allocation;
  bestScore: number;
  /** Best score after each epoch (for the report). */
  history: number[];
  /** Distinct allocations scored. */
  evaluations: number;
  /** The best distinct allocations, best first (the evolutionary search's final parents; the greedy result alone). */
  finalists: Allocation[];
}

/** Mean group size of an allocation (the budget's measure). */
export function meanGroupSize(allocation: Allocation): number {
  return allocation.reduce((a, b) => a + b, 0) / Math.max(allocation.length, 1);
}

/** A fitness wrapper that scores each distinct allocation once. */
export function cachedFitness(fitness: Fitness): { score: Fitness; evaluations: () => number } {
  const cache = new Map<string, Promise<number>>();
  return {
    score: (allocation) => {
      const key = allocation.join(',');
      let hit = cache.get(key);
      if (!hit) {
        hit = fitness(allocation);
        cache.set(key, hit);
      }
      return hit;
    },
    evaluations: () => cache.size,
  };
}

/** Runs the evolutionary search; `progress(epoch, epochs, bestScore)` after each epoch. */
export async function evolutionarySearch(
  space: SearchSpace,
  budget: SearchBudget,
  options: EvolutionOptions,
  fitness: Fitness,
  progress: (epoch: number, epochs: number, best: number) => void = () => {},
): Promise<SearchResult> {
  const random = seededRandom(options.seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const feasible = (a: Allocation) => budget.allows(a);
  const { score, evaluations } = cachedFitness(fitness);
  const maxTries = 200;

  const randomAllocation = (): Allocation | undefined => {
    for (let t = 0; t < maxTries; t++) {
      const a = space.candidates.map((c) => pick(c));
      if (feasible(a)) return a;
    }
    return undefined;
  };
  // The all-largest allocation is the cheapest: it seeds the population so a feasible member always exists.
  const largest = space.candidates.map((c) => c[c.length - 1]!);
  if (!feasible(largest)) throw new Error(`no allocation meets the budget (${budget.describe}): not even the largest groups`);

  // Every feasible uniform allocation joins too, so the search never returns worse (on its fitness) than the
  // best single group size the budget allows — the baseline it has to beat.
  let population: Allocation[] = [largest, ...uniformAllocations(space).filter((a) => feasible(a) && a.join(',') !== largest.join(','))].slice(0, options.population);
  while (population.length < options.population) population.push(randomAllocation() ?? largest);
  let scored = await scoreAll(population, score);
  const history: number[] = [];

  for (let epoch = 0; epoch < options.epochs; epoch++) {
    const parents = scored.slice(0, options.topK).map((s) => s.allocation);
    const children: Allocation[] = [];
    for (let i = 0; i < options.mutations; i++) {
      for (let t = 0; t < maxTries; t++) {
        const child = pick(parents).map((g, gene) => (random() < options.mutationRate ? pick(space.candidates[gene]!) : g));
        if (feasible(child)) {
          children.push(child);
          break;
        }
      }
    }
    for (let i = 0; i < options.crossovers; i++) {
      for (let t = 0; t < maxTries; t++) {
        const a = pick(parents);
        const b = pick(parents);
        const child = a.map((g, gene) => (random() < 0.5 ? g : b[gene]!));
        if (feasible(child)) {
          children.push(child);
          break;
        }
      }
    }
    population = [...parents, ...children];
    scored = await scoreAll(population, score);
    history.push(scored[0]!.score);
    progress(epoch + 1, options.epochs, scored[0]!.score);
  }
  return { best: scored[0]!.allocation, bestScore: scored[0]!.score, history, evaluations: evaluations(), finalists: scored.slice(0, options.topK).map((s) => s.allocation) };
}

/** One allocation per group size that every layer accepts: all layers at that size. */
export function uniformAllocations(space: SearchSpace): Allocation[] {
  const shared = space.candidates[0]?.filter((size) => space.candidates.every((c) => c.includes(size))) ?? [];
  return shared.map((size) => space.candidates.map(() => size));
}

async function scoreAll(population: Allocation[], score: Fitness): Promise<{ allocation: Allocation; score: number }[]> {
  const unique = new Map<string, Allocation>();
  for (const a of population) unique.set(a.join(','), a);
  const scored = [];
  for (const allocation of unique.values()) scored.push({ allocation, score: await score(allocation) });
  // Ties break on the allocation text so the ranking never depends on evaluation order.
  return scored.sort((x, y) => x.score - y.score || (x.allocation.join(',') < y.allocation.join(',') ? -1 : 1));
}

/**
 * The greedy baseline: measure each layer's sensitivity (fitness gain when only it gets its smallest group),
 * then give the smallest groups to the most sensitive layers while the budget holds.
 */
export async function greedySearch(space: SearchSpace, budget: SearchBudget, fitness: Fitness): Promise<SearchResult> {
  const { score, evaluations } = cachedFitness(fitness);
  const largest = space.candidates.map((c) => c[c.length - 1]!);
  if (!budget.allows(largest)) throw new Error(`no allocation meets the budget (${budget.describe}): not even the largest groups`);
  const baseScore = await score(largest);
  const gains: { gene: number; gain: number }[] = [];
  for (let gene = 0; gene < largest.length; gene++) {
    const trial = [...largest];
    trial[gene] = space.candidates[gene]![0]!;
    gains.push({ gene, gain: baseScore - (await score(trial)) });
  }
  gains.sort((a, b) => b.gain - a.gain || a.gene - b.gene);
  const allocation = [...largest];
  for (const { gene, gain } of gains) {
    if (gain <= 0) break;
    for (const size of space.candidates[gene]!) {
      const trial = [...allocation];
      trial[gene] = size;
      if (budget.allows(trial)) {
        allocation[gene] = size;
        break;
      }
    }
  }
  const bestScore = await score(allocation);
  return { best: allocation, bestScore, history: [bestScore], evaluations: evaluations(), finalists: [allocation] };
}
