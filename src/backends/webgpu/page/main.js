// The qcompile WebGPU bundle page: loads manifest.json and model.onnx, runs one denoising step and a DDIM loop on
// onnxruntime-web's native WebGPU EP, draws the images and sets window.qcompileResult for tests.
// URL parameters ?steps=&count=&seed=&auto=0 override the form; the page samples on load unless auto=0.
import * as ort from './ort/ort.webgpu.min.mjs';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
for (const key of ['steps', 'count', 'seed']) if (params.has(key)) $(key).value = params.get(key);

// ONNX element types the page feeds (manifest inputs carry the ONNX enum).
const ONNX_DTYPES = { 1: 'float32', 7: 'int64', 6: 'int32' };

/** alphas_cumprod of the manifest's schedule (linear betas, float64 as in the fixture). */
function alphasCumprod(schedule) {
  const T = schedule.T;
  if ((schedule.beta_schedule ?? 'linear') !== 'linear') throw new Error(`unsupported beta schedule ${schedule.beta_schedule}`);
  const out = new Float64Array(T);
  let product = 1;
  for (let i = 0; i < T; i++) {
    const beta = T === 1 ? schedule.beta_start : schedule.beta_start + ((schedule.beta_end - schedule.beta_start) * i) / (T - 1);
    product *= 1 - beta;
    out[i] = product;
  }
  return out;
}

/** DDIM timesteps, high to low: (S-1)·T/S, …, T/S, 0 (for 100 of 1000: 990, 980, …, 0). */
function ddimTimesteps(T, steps) {
  const stride = Math.floor(T / steps);
  return Array.from({ length: steps }, (_, i) => (steps - 1 - i) * stride);
}

/** One deterministic DDIM update (eta 0) in place: x0 clipped to [-1, 1], ᾱ_prev = 1 after t = 0. */
function ddimUpdate(x, eps, abT, abPrev) {
  const sa = Math.sqrt(abT), s1a = Math.sqrt(1 - abT), sp = Math.sqrt(abPrev), s1p = Math.sqrt(1 - abPrev);
  for (let i = 0; i < x.length; i++) {
    const x0 = Math.min(1, Math.max(-1, (x[i] - s1a * eps[i]) / sa));
    x[i] = sp * x0 + s1p * eps[i];
  }
}

/** Seeded standard normal noise (mulberry32 + Box–Muller): the same seed gives the same x_T. */
function gaussian(n, seed) {
  let state = seed >>> 0;
  const uniform = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return ((z ^ (z >>> 14)) >>> 0) / 4294967296;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - uniform())), angle = 2 * Math.PI * uniform();
    out[i] = r * Math.cos(angle);
    if (i + 1 < n) out[i + 1] = r * Math.sin(angle);
  }
  return out;
}

/** Draws `count` images of [C=1, H, W] in [-1, 1] as a grid (scaled up, 2 px gutters). */
function drawGrid(x, count, height, width) {
  const scale = 4, gutter = 2, columns = Math.min(count, 10), rows = Math.ceil(count / columns);
  const canvas = $('grid');
  canvas.width = columns * (width * scale + gutter) + gutter;
  canvas.height = rows * (height * scale + gutter) + gutter;
  const context = canvas.getContext('2d');
  context.fillStyle = '#888';
  context.fillRect(0, 0, canvas.width, canvas.height);
  for (let n = 0; n < count; n++) {
    const left = gutter + (n % columns) * (width * scale + gutter), top = gutter + Math.floor(n / columns) * (height * scale + gutter);
    for (let h = 0; h < height; h++) {
      for (let w = 0; w < width; w++) {
        const v = Math.round(((x[n * height * width + h * width + w] + 1) / 2) * 255);
        context.fillStyle = `rgb(${v},${v},${v})`;
        context.fillRect(left + w * scale, top + h * scale, scale, scale);
      }
    }
  }
}

async function main() {
  const manifest = await (await fetch('./manifest.json')).json();
  if (!navigator.gpu) throw new Error('WebGPU is not available in this browser');
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new Error('no WebGPU adapter');
  const info = adapter.info ?? {};
  const adapterInfo = { vendor: info.vendor ?? '', architecture: info.architecture ?? '', isFallbackAdapter: Boolean(info.isFallbackAdapter) };
  $('adapter').textContent = `adapter: ${adapterInfo.vendor} ${adapterInfo.architecture}${adapterInfo.isFallbackAdapter ? ' (fallback/software)' : ''}`;
  $('quantization').textContent = JSON.stringify(manifest.quantization ?? {}, null, 2);

  ort.env.wasm.wasmPaths = new URL('./ort/', location.href).href;
  const externalData = manifest.externalData ? [{ path: manifest.externalData, data: `./${manifest.externalData}` }] : undefined;
  let start = performance.now();
  const session = await ort.InferenceSession.create(`./${manifest.model}`, { executionProviders: ['webgpu'], externalData });
  const createMs = performance.now() - start;

  const [xInput, tInput, yInput] = manifest.inputs;
  const [, channels, height, width] = xInput.shape;
  const steps = Number($('steps').value), count = Number($('count').value), seed = Number($('seed').value);
  const classes = Array.from({ length: count }, (_, i) => i % manifest.classes);
  const schedule = manifest.schedule;
  if ((schedule.prediction_type ?? 'epsilon') !== 'epsilon') throw new Error(`unsupported prediction ${schedule.prediction_type}`);
  const ab = alphasCumprod(schedule);
  const size = count * channels * height * width;
  const tDtype = ONNX_DTYPES[tInput.elemType] ?? 'int64', yDtype = ONNX_DTYPES[yInput.elemType] ?? 'int64';
  const integers = (dtype, values) => (dtype === 'int64' ? BigInt64Array.from(values, BigInt) : Int32Array.from(values));
  const outputName = manifest.outputs?.[0] ?? session.outputNames[0];
  const denoise = async (x, t) => {
    const feeds = {
      [xInput.name]: new ort.Tensor('float32', x, [count, channels, height, width]),
      [tInput.name]: new ort.Tensor(tDtype, integers(tDtype, classes.map(() => t)), [count]),
      [yInput.name]: new ort.Tensor(yDtype, integers(yDtype, classes), [count]),
    };
    const out = await session.run(feeds, [outputName]);
    return out[outputName].getData();
  };

  // (1) One denoising step on seeded noise at the middle timestep.
  const noise = gaussian(size, seed);
  const tOne = Math.floor(schedule.T / 2);
  $('status').textContent = 'one denoising step…';
  start = performance.now();
  const epsOne = await denoise(noise, tOne);
  const oneStepMs = performance.now() - start;

  // (2) The DDIM loop from the same noise.
  const x = Float32Array.from(noise);
  const timesteps = ddimTimesteps(schedule.T, steps);
  const stepMs = [];
  for (let i = 0; i < timesteps.length; i++) {
    $('status').textContent = `DDIM step ${i + 1}/${steps}…`;
    start = performance.now();
    const eps = await denoise(x, timesteps[i]);
    ddimUpdate(x, eps, ab[timesteps[i]], i + 1 < timesteps.length ? ab[timesteps[i + 1]] : 1);
    stepMs.push(performance.now() - start);
    $('timing').textContent = stepMs.map((ms, j) => `t=${timesteps[j]}: ${ms.toFixed(1)} ms`).join('\n');
  }
  drawGrid(x, count, height, width);
  await session.release();
  $('status').textContent = `done: ${count} images, ${steps} DDIM steps`;
  return {
    ok: true,
    adapterInfo,
    createMs,
    oneStep: { t: tOne, classes, x: Array.from(noise), eps: Array.from(epsOne), ms: oneStepMs },
    ddim: { steps, timesteps, classes, shape: [count, channels, height, width], images: Array.from(x), stepMs },
  };
}

async function sample() {
  try {
    window.qcompileResult = await main();
  } catch (error) {
    $('status').innerHTML = '';
    $('status').append(Object.assign(document.createElement('span'), { className: 'error', textContent: String(error) }));
    window.qcompileResult = { ok: false, error: String(error && error.stack || error) };
  }
}

$('run').addEventListener('click', () => {
  window.qcompileResult = undefined;
  sample();
});
if (params.get('auto') !== '0') sample();
