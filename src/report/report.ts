/**
 * The quality report: what quantization did to a model, as data (`report.json`) and as a self-contained page
 * (`report.html`, inline SVG charts and PNG images, no scripts, no network).
 */
import type { ScalingSummary } from './compile-record.js';
import { barChart, escapeXml, heatmap, lineChart } from './svg.js';

/** Size facts of one model. */
export interface ModelFacts {
  path: string;
  fileBytes: number;
  /** Parameter bytes by element type (`f32`, `i8`, `i4`, …). */
  bytesByDtype: Record<string, number>;
  parameters: number;
}

/** What the compiled model does with one layer: forms read off its graph, choices from its metadata. */
export interface LayerRow {
  name: string;
  role: string;
  /** `int4 asym group 128 (MatMulNBits)`, `uint8 asym per-channel`, or `float`. */
  weight: string;
  /** `int8 sym dynamic`, `uint8 asym static`, `int8 sym fake-quant`, or `float`. */
  input: string;
  bits?: number;
  groupSize?: number;
  /** True when `search-group-sizes` chose the group size. */
  searched?: boolean;
  /** Per scaling pass (SmoothQuant, Weight Dilation): the per-input-channel factors s. */
  scaling?: ScalingSummary[];
}

/** One compiler pass: wall time and its statistics (from the compile's `<out>.passes.json`). */
export interface PassRow {
  name: string;
  ms: number;
  modified?: boolean;
  statistics: Record<string, number | string>;
}

/** Everything the report shows; every field but the header is optional so partial evaluations still render. */
export interface QualityReport {
  title: string;
  generator: string;
  fp: ModelFacts;
  quant: ModelFacts;
  settings: { sampler: string; steps: number; samples: number; seed: number; guidance?: number; conditioning?: string };
  recipe?: { name: string; text: string };
  /** Paired and distribution metrics of the sampled images. */
  metrics?: {
    /** Over the paired samples; `se` its standard error (the page shows mean ± 2 SE). */
    psnrDb?: { mean: number; min: number; se?: number };
    labelAgreement?: number;
    /** With the 95% bootstrap intervals (same resampled indices for both models). */
    fd?: { fp: number; quant: number; samples: number; fpCi?: [number, number]; quantCi?: [number, number] };
    /** Classifier label == the sample's class label. */
    labelAccuracy?: { fp: number; quant: number };
    /** Classifier label == the class of the sample's prompt. */
    promptAdherence?: { fp: number; quant: number };
  };
  /** Eps-prediction error of the quantized model against FP, by timestep. */
  epsByTimestep?: { timesteps: number[]; sqnrDb: number[] };
  /** Under CFG: SQNR of the guidance signal eps(cond) − eps(uncond), quantized vs FP on the same inputs, by timestep. */
  guidanceSignal?: { timesteps: number[]; sqnrDb: number[]; guidance: number };
  /** Layer output SQNR (dB) by layer and timestep. */
  layerSqnr?: { layers: string[]; timesteps: number[]; sqnrDb: number[][] };
  /** Sample grids from the same seeds, as PNG bytes in base64. */
  grids?: { fpPngBase64: string; quantPngBase64: string; caption: string };
  /** Chosen per-layer settings (group sizes, bits, scaling factors). */
  layers?: LayerRow[];
  /** The compile's passes in order, with wall times in milliseconds. */
  passes?: PassRow[];
  /** Where `passes` came from. */
  passesSource?: string;
}

const STYLE = `
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.chart text.title{font-weight:600;font-size:13px}.chart text.tick{font-size:10px;fill:#444}
.chart text.label{font-size:11px}.chart .axis{stroke:#333}.chart .grid{stroke:#eee}
.grids{display:flex;gap:16px;flex-wrap:wrap}.grids figure{margin:0}.grids img{image-rendering:pixelated;border:1px solid #ccc}
pre{background:#f7f7f7;padding:8px;overflow:auto}.muted{color:#666}td.text,th.text{text-align:left}table.layers td,table.passes td{white-space:nowrap}table.passes td.stats{white-space:normal}
`;

/** Renders the report page. Deterministic for the same report. */
export function renderReportHtml(report: QualityReport): string {
  const sections: string[] = [];
  sections.push(`<h1>${escapeXml(report.title)}</h1>`);
  sections.push(
    `<p class="muted">${escapeXml(report.generator)} · ${escapeXml(report.settings.sampler)}, ${report.settings.steps} steps, ` +
      `${report.settings.samples} samples, seed ${report.settings.seed}` +
      `${report.settings.guidance !== undefined && report.settings.guidance !== 1 ? `, guidance ${report.settings.guidance}` : ''}${report.settings.conditioning ? `; ${escapeXml(report.settings.conditioning)}` : ''}</p>`,
  );
  sections.push(sizeSection(report));
  if (report.metrics) sections.push(metricsSection(report.metrics));
  if (report.grids) {
    sections.push(
      `<h2>Samples from the same seeds</h2><p class="muted">${escapeXml(report.grids.caption)}</p><div class="grids">` +
        `<figure><img alt="FP samples" src="data:image/png;base64,${report.grids.fpPngBase64}"><figcaption>FP</figcaption></figure>` +
        `<figure><img alt="quantized samples" src="data:image/png;base64,${report.grids.quantPngBase64}"><figcaption>quantized</figcaption></figure></div>`,
    );
  }
  if (report.epsByTimestep) {
    const e = report.epsByTimestep;
    const g = report.guidanceSignal;
    const series = [{ label: 'eps SQNR', x: e.timesteps, y: e.sqnrDb }, ...(g ? [{ label: `guidance signal (×${g.guidance})`, x: g.timesteps, y: g.sqnrDb }] : [])];
    sections.push(`<h2>Eps error by timestep</h2>${lineChart(g ? 'eps and guidance-signal SQNR vs FP' : 'eps SQNR vs FP', 'timestep t', 'SQNR (dB)', series)}`);
  }
  if (report.layerSqnr) {
    const l = report.layerSqnr;
    sections.push(`<h2>Layer output SQNR</h2>${heatmap('layer × timestep SQNR', l.layers, l.timesteps.map(String), l.sqnrDb, 'dB')}`);
  }
  if (report.layers) sections.push(layersSection(report.layers));
  if (report.passes) sections.push(passesSection(report.passes, report.passesSource));
  if (report.recipe) sections.push(`<h2>Recipe: ${escapeXml(report.recipe.name)}</h2><pre>${escapeXml(report.recipe.text)}</pre>`);
  return `<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>${escapeXml(report.title)}</title><style>${STYLE}</style></head>\n<body>\n${sections.join('\n')}\n</body></html>\n`;
}

function sizeSection(report: QualityReport): string {
  const dtypes = [...new Set([...Object.keys(report.fp.bytesByDtype), ...Object.keys(report.quant.bytesByDtype)])].sort();
  const row = (name: string, m: ModelFacts) =>
    `<tr><td>${name}</td><td>${mib(m.fileBytes)}</td><td>${m.parameters.toLocaleString('en-US')}</td>${dtypes.map((d) => `<td>${mib(m.bytesByDtype[d] ?? 0)}</td>`).join('')}</tr>`;
  return (
    `<h2>Size</h2><table><tr><th>model</th><th>file</th><th>parameters</th>${dtypes.map((d) => `<th>${escapeXml(d)}</th>`).join('')}</tr>` +
    row('FP', report.fp) +
    row('quantized', report.quant) +
    `</table><p>Compression: <b>${(report.fp.fileBytes / Math.max(report.quant.fileBytes, 1)).toFixed(2)}×</b></p>`
  );
}

function metricsSection(metrics: NonNullable<QualityReport['metrics']>): string {
  const rows: string[] = [];
  if (metrics.psnrDb) {
    const se = metrics.psnrDb.se !== undefined ? ` ± ${(2 * metrics.psnrDb.se).toFixed(2)}` : '';
    rows.push(`<tr><td>paired PSNR vs FP (mean${se ? ' ± 2 SE' : ''} / min)</td><td>${metrics.psnrDb.mean.toFixed(2)}${se} dB / ${metrics.psnrDb.min.toFixed(2)} dB</td></tr>`);
  }
  if (metrics.labelAgreement !== undefined) rows.push(`<tr><td>label agreement with FP</td><td>${(100 * metrics.labelAgreement).toFixed(1)}%</td></tr>`);
  if (metrics.labelAccuracy) rows.push(`<tr><td>label accuracy (FP / quantized)</td><td>${(100 * metrics.labelAccuracy.fp).toFixed(1)}% / ${(100 * metrics.labelAccuracy.quant).toFixed(1)}%</td></tr>`);
  if (metrics.promptAdherence) rows.push(`<tr><td>prompt adherence (FP / quantized)</td><td>${(100 * metrics.promptAdherence.fp).toFixed(1)}% / ${(100 * metrics.promptAdherence.quant).toFixed(1)}%</td></tr>`);
  if (metrics.fd) {
    const ci = (range?: [number, number]) => (range ? ` <span class="muted">[${range[0].toFixed(1)}, ${range[1].toFixed(1)}]</span>` : '');
    rows.push(`<tr><td>Fréchet distance to real (${metrics.fd.samples} samples; FP / quantized${metrics.fd.fpCi ? ', 95% bootstrap' : ''})</td><td>${metrics.fd.fp.toFixed(2)}${ci(metrics.fd.fpCi)} / ${metrics.fd.quant.toFixed(2)}${ci(metrics.fd.quantCi)}</td></tr>`);
  }
  return `<h2>Image quality</h2><table><tr><th>metric</th><th>value</th></tr>${rows.join('')}</table>`;
}

function layersSection(layers: LayerRow[]): string {
  const rows = layers
    .map(
      (l) =>
        `<tr><td>${escapeXml(l.name)}</td><td class="text">${escapeXml(l.role)}</td><td class="text">${escapeXml(l.weight)}</td>` +
        `<td>${l.groupSize ?? ''}${l.searched ? ' <span class="muted">(searched)</span>' : ''}</td><td class="text">${escapeXml(l.input)}</td>` +
        `<td class="text">${(l.scaling ?? []).map(scalingText).join('<br>')}</td></tr>`,
    )
    .join('');
  const sizes = new Map<number, number>();
  for (const l of layers) if (l.groupSize !== undefined) sizes.set(l.groupSize, (sizes.get(l.groupSize) ?? 0) + 1);
  const histogram = [...sizes.entries()].sort((a, b) => a[0] - b[0]);
  const summary = histogram.length ? `<p>Group sizes: ${histogram.map(([size, n]) => `<b>${size}</b> × ${n}`).join(', ')}</p>` : '';
  return (
    `<h2>Layers</h2>${summary}<table class="layers"><tr><th>layer</th><th class="text">role</th><th class="text">weight</th><th>group</th><th class="text">input</th><th class="text">scaling s</th></tr>${rows}</table>`
  );
}

function scalingText(s: ScalingSummary): string {
  return `${escapeXml(s.pass)}: ${fmt(s.min)} … ${fmt(s.median)} … ${fmt(s.max)} <span class="muted">(min … median … max, ${s.count} ch)</span>`;
}

function passesSection(passes: PassRow[], source: string | undefined): string {
  const chart = barChart('time per pass', passes.map((p) => p.name), passes.map((p) => p.ms), 'ms');
  const rows = passes
    .map((p) => {
      const stats = Object.entries(p.statistics)
        .map(([k, v]) => `${escapeXml(k)}=${escapeXml(String(v))}`)
        .join(' ');
      return `<tr><td>${escapeXml(p.name)}</td><td>${p.ms.toFixed(1)} ms</td><td class="text">${p.modified === undefined ? '' : p.modified ? 'yes' : 'no'}</td><td class="text stats">${stats}</td></tr>`;
    })
    .join('');
  const total = passes.reduce((n, p) => n + p.ms, 0);
  return (
    `<h2>Passes</h2>${source ? `<p class="muted">from ${escapeXml(source)}; total ${(total / 1000).toFixed(2)} s</p>` : ''}${chart}` +
    `<table class="passes"><tr><th>pass</th><th>time</th><th class="text">changed</th><th class="text">statistics</th></tr>${rows}</table>`
  );
}

function fmt(v: number): string {
  return Number.isFinite(v) ? Number(v.toPrecision(4)).toString() : String(v);
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(2)} MiB`;
}
