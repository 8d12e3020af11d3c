/**
 * GPTQ rounding at DiT-XL/2's real layer shapes: one `gptqRound` per shape (qkv/proj K=1152 N=1152, fc1 K=1152
 * N=6912 (the widest N in a block), fc2 K=4608 N=1152) on the Hessian of 2048 correlated random input rows, W4
 * symmetric groups of 128, block 128, damp 0.01. Times the rounding alone (not the Hessian) and prints a hash of
 * the codes, so two versions of the math can be checked for identical output at real size.
 * Run: `flock /tmp/heavy.lock npx tsx bench/gptq-math.ts [KxN …]` (default all three shapes; prints JSON as its
 * last line).
 */
import { HessianAccumulator, gptqRound, type WeightGrid } from '../src/passes/gptq.js';
import { seededNormal } from '../src/random.js';

const ROWS = 2048;
const GROUP = 128;
const shapes = (process.argv.length > 2 ? process.argv.slice(2) : ['1152x1152', '1152x6912', '4608x1152']).map((s) => {
  const [K, N] = s.split('x').map(Number);
  if (!K || !N || K % GROUP !== 0) throw new Error(`shape '${s}': expected KxN with K a multiple of ${GROUP}`);
  return { K, N };
});

/** Inputs with neighbouring channels correlated and uneven channel scales, stored channel-major (Xᵀ, [K, ROWS]). */
function inputsTransposed(K: number): Float64Array {
  const normal = seededNormal(1);
  const z = Float64Array.from({ length: K * ROWS }, normal);
  const xt = new Float64Array(K * ROWS);
  for (let k = 0; k < K; k++) {
    const scale = 1 + (k % 16) / 4;
    for (let r = 0; r < ROWS; r++) xt[k * ROWS + r] = scale * (z[k * ROWS + r]! + (k > 0 ? 0.7 * z[(k - 1) * ROWS + r]! : 0));
  }
  return xt;
}

/** XᵀX [K, K] from Xᵀ: contiguous dot products over the upper triangle, four rows of Xᵀ against each row (K % 4 = 0). */
function gram(xt: Float64Array, K: number): Float64Array {
  const out = new Float64Array(K * K);
  for (let i = 0; i < K; i += 4) {
    for (let j = i; j < K; j++) {
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      for (let r = 0; r < ROWS; r++) {
        const x = xt[j * ROWS + r]!;
        s0 += xt[i * ROWS + r]! * x;
        s1 += xt[(i + 1) * ROWS + r]! * x;
        s2 += xt[(i + 2) * ROWS + r]! * x;
        s3 += xt[(i + 3) * ROWS + r]! * x;
      }
      for (const [a, v] of [[i, s0], [i + 1, s1], [i + 2, s2], [i + 3, s3]] as const) {
        out[a * K + j] = v;
        out[j * K + a] = v;
      }
    }
  }
  return out;
}

function symmetricGrid(w: Float32Array, K: number, N: number): WeightGrid {
  const groups = K / GROUP;
  const qmax = 7;
  const scale = new Float32Array(groups * N);
  for (let g = 0; g < groups; g++) {
    for (let k = g * GROUP; k < (g + 1) * GROUP; k++) for (let n = 0; n < N; n++) scale[g * N + n] = Math.max(scale[g * N + n]!, Math.abs(w[k * N + n]!));
  }
  for (let i = 0; i < scale.length; i++) scale[i] = scale[i]! / qmax || 1;
  return { groupSize: GROUP, scale, zeroPoint: new Int32Array(groups * N), qmin: -qmax - 1, qmax };
}

/** FNV-1a over the codes. */
function hash(codes: Int32Array): string {
  let h = 0x811c9dc5;
  for (const c of codes) h = Math.imul(h ^ (c & 0xff), 0x01000193) >>> 0;
  return h.toString(16).padStart(8, '0');
}

const results = [];
const hessians = new Map<number, Float64Array>();
for (const { K, N } of shapes) {
  let hessian = hessians.get(K);
  if (!hessian) {
    const acc = new HessianAccumulator(K);
    acc.addGram(gram(inputsTransposed(K), K), ROWS);
    hessian = acc.result();
    hessians.set(K, hessian);
  }
  const normal = seededNormal(2);
  const w = Float32Array.from({ length: K * N }, () => 0.02 * normal());
  const grid = symmetricGrid(w, K, N);
  const t0 = performance.now();
  const codes = gptqRound(w, K, N, hessian, grid, { blockSize: 128, damp: 0.01 });
  const seconds = (performance.now() - t0) / 1000;
  const result = { K, N, seconds: Number(seconds.toFixed(2)), codesHash: hash(codes) };
  console.log(JSON.stringify(result));
  results.push(result);
}
console.log(JSON.stringify({ rows: ROWS, groupSize: GROUP, blockSize: 128, damp: 0.01, results }));
