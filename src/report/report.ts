/**
 * The quality report: what quantization did to a model, as data (`report.json`) and as a self-contained page
 * (`report.html`, inline SVG charts and PNG images, no scripts, no network).
 */
import { barChart, escapeXml, heatmap, lineChart } from './svg.js';

/** Size facts of one model. */
export interface ModelFacts {
  path: string;
  fileBytes: number;
  /** Parameter bytes by element type (`f32`, `i8`, `i4`, …). */
  bytesByDtype: Record<string, number>;
  parameters: number;
}

/** Everything the report shows; every field but the header is optional so partial evaluations still render. */
export interface QualityReport {
  title: string;
  generator: string;
  fp: ModelFacts;
  quant: ModelFacts;
  settings: { sampler: string; steps: number; samples: number; seed: number };
  recipe?: { name: string; text: string };
  /** Paired and distribution metrics of the sampled images. */
  metrics?: {
    psnrDb?: { mean: number; min: number };
    labelAgreement?: number;
    fd?: { fp: number; quant: number; samples: number };
    labelAccuracy?: { fp: number; quant: number };
  };
  /** Eps-prediction error of the quantized model against FP, by timestep. */
  epsByTimestep?: { timesteps: number[]; sqnrDb: number[] };
  /** Layer output SQNR (dB) by layer and timestep. */
  layerSqnr?: { layers: string[]; timesteps: number[]; sqnrDb: number[][] };
  /** Sample grids from the same seeds, as PNG bytes in base64. */
  grids?: { fpPngBase64: string; quantPngBase64: string; caption: string };
  /** Chosen per-layer settings (group sizes, bits, scaling factors). */
  layers?: { name: string; role: string; weight: string; input: string; groupSize?: number }[];
  /** Pass timings in milliseconds. */
  passes?: { name: string; ms: number; statistics: Record<string, number | string> }[];
}

const STYLE = `
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.chart text.title{font-weight:600;font-size:13px}.chart text.tick{font-size:10px;fill:#444}
.chart text.label{font-size:11px}.chart .axis{stroke:#333}.chart .grid{stroke:#eee}
.grids{display:flex;gap:16px;flex-wrap:wrap}.grids figure{margin:0}.grids img{image-rendering:pixelated;border:1px solid #ccc}
pre{background:#f7f7f7;padding:8px;overflow:auto}.muted{color:#666}
`;

/** Renders the report page. Deterministic for the same report. */
export function renderReportHtml(report: QualityReport): string {
  const sections: string[] = [];
  sections.push(`<h1>${escapeXml(report.title)}</h1>`);
  sections.push(
    `<p class="muted">${escapeXml(report.generator)} · ${escapeXml(report.settings.sampler)}, ${report.settings.steps} steps, ` +
      `${report.settings.samples} samples, seed ${report.settings.seed}</p>`,
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
    sections.push(`<h2>Eps error by timestep</h2>${lineChart('eps SQNR vs FP', 'timestep t', 'SQNR (dB)', [{ label: 'SQNR', x: e.timesteps, y: e.sqnrDb }])}`);
  }
  if (report.layerSqnr) {
    const l = report.layerSqnr;
    sections.push(`<h2>Layer output SQNR</h2>${heatmap('layer × timestep SQNR', l.layers, l.timesteps.map(String), l.sqnrDb, 'dB')}`);
  }
  if (report.layers) sections.push(layersSection(report.layers));
  if (report.passes) {
    sections.push(`<h2>Passes</h2>${barChart('time per pass', report.passes.map((p) => p.name), report.passes.map((p) => p.ms), 'ms')}`);
  }
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
  if (metrics.psnrDb) rows.push(`<tr><td>paired PSNR vs FP (mean / min)</td><td>${metrics.psnrDb.mean.toFixed(2)} dB / ${metrics.psnrDb.min.toFixed(2)} dB</td></tr>`);
  if (metrics.labelAgreement !== undefined) rows.push(`<tr><td>label agreement with FP</td><td>${(100 * metrics.labelAgreement).toFixed(1)}%</td></tr>`);
  if (metrics.labelAccuracy) rows.push(`<tr><td>label accuracy (FP / quantized)</td><td>${(100 * metrics.labelAccuracy.fp).toFixed(1)}% / ${(100 * metrics.labelAccuracy.quant).toFixed(1)}%</td></tr>`);
  if (metrics.fd) rows.push(`<tr><td>Fréchet distance to real (${metrics.fd.samples} samples; FP / quantized)</td><td>${metrics.fd.fp.toFixed(2)} / ${metrics.fd.quant.toFixed(2)}</td></tr>`);
  return `<h2>Image quality</h2><table><tr><th>metric</th><th>value</th></tr>${rows.join('')}</table>`;
}

function layersSection(layers: NonNullable<QualityReport['layers']>): string {
  const rows = layers
    .map((l) => `<tr><td>${escapeXml(l.name)}</td><td>${escapeXml(l.role)}</td><td>${escapeXml(l.weight)}</td><td>${escapeXml(l.input)}</td><td>${l.groupSize ?? ''}</td></tr>`)
    .join('');
  return `<h2>Layers</h2><table><tr><th>layer</th><th>role</th><th>weight</th><th>input</th><th>group</th></tr>${rows}</table>`;
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(2)} MiB`;
}
