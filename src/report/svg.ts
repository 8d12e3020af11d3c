/** Small, dependency-free SVG charts for the quality report: deterministic markup, no scripts, no network. */

/** Escapes text for XML/HTML. */
export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

function fmt(v: number): string {
  return Number.isFinite(v) ? Number(v.toPrecision(4)).toString() : String(v);
}

/** One line of a line chart. */
export interface Series {
  label: string;
  x: number[];
  y: number[];
  color?: string;
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b'];

/** A line chart with axes, ticks and a legend. */
export function lineChart(title: string, xLabel: string, yLabel: string, series: Series[], width = 560, height = 300): string {
  const margin = { left: 60, right: 16, top: 28, bottom: 44 };
  const xs = series.flatMap((s) => s.x).filter(Number.isFinite);
  const ys = series.flatMap((s) => s.y).filter(Number.isFinite);
  const [x0, x1] = extent(xs);
  const [y0, y1] = extent(ys);
  const px = (x: number) => margin.left + ((x - x0) / (x1 - x0 || 1)) * (width - margin.left - margin.right);
  const py = (y: number) => height - margin.bottom - ((y - y0) / (y1 - y0 || 1)) * (height - margin.top - margin.bottom);
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeXml(title)}">`);
  parts.push(`<text x="${width / 2}" y="16" text-anchor="middle" class="title">${escapeXml(title)}</text>`);
  parts.push(axes(margin, width, height));
  for (const t of ticks(x0, x1, 6)) parts.push(`<text x="${fmt(px(t))}" y="${height - margin.bottom + 16}" text-anchor="middle" class="tick">${fmt(t)}</text>`);
  for (const t of ticks(y0, y1, 5)) {
    parts.push(`<line x1="${margin.left}" x2="${width - margin.right}" y1="${fmt(py(t))}" y2="${fmt(py(t))}" class="grid"/>`);
    parts.push(`<text x="${margin.left - 6}" y="${fmt(py(t) + 4)}" text-anchor="end" class="tick">${fmt(t)}</text>`);
  }
  parts.push(`<text x="${width / 2}" y="${height - 6}" text-anchor="middle" class="label">${escapeXml(xLabel)}</text>`);
  parts.push(`<text transform="translate(14 ${height / 2}) rotate(-90)" text-anchor="middle" class="label">${escapeXml(yLabel)}</text>`);
  series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length]!;
    const points = s.x.map((x, j) => `${fmt(px(x))},${fmt(py(s.y[j]!))}`).join(' ');
    parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${points}"/>`);
    for (let j = 0; j < s.x.length; j++) parts.push(`<circle cx="${fmt(px(s.x[j]!))}" cy="${fmt(py(s.y[j]!))}" r="2.5" fill="${color}"><title>${escapeXml(`${s.label}: ${fmt(s.x[j]!)} → ${fmt(s.y[j]!)}`)}</title></circle>`);
    parts.push(`<rect x="${width - margin.right - 150}" y="${margin.top + 4 + i * 16}" width="10" height="10" fill="${color}"/>`);
    parts.push(`<text x="${width - margin.right - 136}" y="${margin.top + 13 + i * 16}" class="tick">${escapeXml(s.label)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('');
}

/** A heatmap of `values[row][col]` (e.g. layer × timestep SQNR), colour from low (red) to high (blue). */
export function heatmap(title: string, rows: string[], cols: string[], values: number[][], unit: string): string {
  const cell = { w: Math.max(14, Math.min(40, Math.floor(560 / Math.max(cols.length, 1)))), h: 14 };
  const left = Math.min(220, 8 + 7 * Math.max(...rows.map((r) => r.length), 4));
  const top = 44;
  const width = left + cols.length * cell.w + 90;
  const height = top + rows.length * cell.h + 30;
  const finite = values.flat().filter(Number.isFinite);
  const [lo, hi] = extent(finite);
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" class="chart heatmap" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeXml(title)}">`);
  parts.push(`<text x="${left}" y="16" class="title">${escapeXml(title)}</text>`);
  cols.forEach((c, j) => parts.push(`<text x="${left + j * cell.w + cell.w / 2}" y="${top - 6}" text-anchor="middle" class="tick">${escapeXml(c)}</text>`));
  rows.forEach((r, i) => {
    parts.push(`<text x="${left - 6}" y="${top + i * cell.h + 11}" text-anchor="end" class="tick">${escapeXml(r)}</text>`);
    cols.forEach((c, j) => {
      const v = values[i]?.[j] ?? NaN;
      parts.push(`<rect x="${left + j * cell.w}" y="${top + i * cell.h}" width="${cell.w - 1}" height="${cell.h - 1}" fill="${colorScale(v, lo, hi)}"><title>${escapeXml(`${r} @ ${c}: ${fmt(v)} ${unit}`)}</title></rect>`);
    });
  });
  // Legend: the colour ramp with its end values.
  for (let k = 0; k < 10; k++) {
    const v = lo + ((hi - lo) * k) / 9;
    parts.push(`<rect x="${left + cols.length * cell.w + 20}" y="${top + (9 - k) * 12}" width="14" height="12" fill="${colorScale(v, lo, hi)}"/>`);
  }
  parts.push(`<text x="${left + cols.length * cell.w + 38}" y="${top + 10}" class="tick">${fmt(hi)} ${escapeXml(unit)}</text>`);
  parts.push(`<text x="${left + cols.length * cell.w + 38}" y="${top + 118}" class="tick">${fmt(lo)}</text>`);
  parts.push('</svg>');
  return parts.join('');
}

/** A horizontal bar chart of labelled values. */
export function barChart(title: string, labels: string[], values: number[], unit: string): string {
  const left = Math.min(240, 8 + 7 * Math.max(...labels.map((l) => l.length), 4));
  const barArea = 320;
  const rowHeight = 16;
  const width = left + barArea + 80;
  const height = 30 + labels.length * rowHeight + 8;
  const max = Math.max(...values.filter(Number.isFinite), 1e-12);
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeXml(title)}">`];
  parts.push(`<text x="${left}" y="16" class="title">${escapeXml(title)}</text>`);
  labels.forEach((label, i) => {
    const y = 26 + i * rowHeight;
    const w = Math.max(0, (values[i]! / max) * barArea);
    parts.push(`<text x="${left - 6}" y="${y + 11}" text-anchor="end" class="tick">${escapeXml(label)}</text>`);
    parts.push(`<rect x="${left}" y="${y}" width="${fmt(w)}" height="${rowHeight - 3}" fill="#1f77b4"/>`);
    parts.push(`<text x="${fmt(left + w + 4)}" y="${y + 11}" class="tick">${fmt(values[i]!)} ${escapeXml(unit)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('');
}

function axes(margin: { left: number; right: number; top: number; bottom: number }, width: number, height: number): string {
  return (
    `<line x1="${margin.left}" y1="${height - margin.bottom}" x2="${width - margin.right}" y2="${height - margin.bottom}" class="axis"/>` +
    `<line x1="${margin.left}" y1="${margin.top}" x2="${margin.left}" y2="${height - margin.bottom}" class="axis"/>`
  );
}

function extent(values: number[]): [number, number] {
  if (values.length === 0) return [0, 1];
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return lo === hi ? [lo - 1, hi + 1] : [lo, hi];
}

function ticks(lo: number, hi: number, count: number): number[] {
  const step = niceStep((hi - lo) / count);
  const out: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(Number(t.toPrecision(12)));
  return out;
}

function niceStep(raw: number): number {
  const power = 10 ** Math.floor(Math.log10(raw || 1));
  const f = raw / power;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * power;
}

function colorScale(v: number, lo: number, hi: number): string {
  if (!Number.isFinite(v)) return '#cccccc';
  const t = Math.min(1, Math.max(0, (v - lo) / (hi - lo || 1)));
  // Red (poor) → yellow → blue (good).
  const r = Math.round(t < 0.5 ? 215 : 215 - (t - 0.5) * 2 * 170);
  const g = Math.round(t < 0.5 ? 48 + t * 2 * 170 : 218 - (t - 0.5) * 2 * 98);
  const b = Math.round(t < 0.5 ? 39 + t * 2 * 60 : 99 + (t - 0.5) * 2 * 121);
  return `rgb(${r},${g},${b})`;
}
