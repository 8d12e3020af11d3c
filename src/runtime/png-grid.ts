/**
 * Image grids as PNG: [N, C, H, W] images in [−1, 1] (C = 1 gray or 3 RGB) laid out row-major in a rows × cols
 * grid, nearest-neighbour upscaled, with 1-px gutters. Same images, same bytes (pngjs with fixed settings).
 */
import { PNG } from 'pngjs';

/** Grid layout. */
export interface GridOptions {
  /** Columns (default: ceil(√N)). */
  cols?: number;
  /** Integer upscale factor (default 1). */
  scale?: number;
  /** Gutter gray level 0..255 (default 128). */
  gutter?: number;
}

/** An RGBA raster. */
interface Raster {
  width: number;
  height: number;
  rgba: Uint8Array;
}

/** Encodes images [N, C, H, W] as one PNG grid. */
export function imageGridPng(images: Float32Array, dims: number[], options: GridOptions = {}): Uint8Array {
  return encodePng(gridRaster(images, dims, options));
}

/**
 * What a grid can show of samples [N, C, H, W]: 1 or 3 channels as they are, else the first channel (2) or
 * the first three (a 4-channel latent, shown as RGB) with a note saying so.
 */
export function previewChannels(images: Float32Array, dims: number[]): { images: Float32Array; dims: number[]; note?: string } {
  const [n, channels, h, w] = dims as [number, number, number, number];
  if (dims.length !== 4 || channels === 1 || channels === 3) return { images, dims };
  const shown = channels === 2 ? 1 : 3;
  const plane = h * w;
  const out = new Float32Array(n * shown * plane);
  for (let s = 0; s < n; s++) out.set(images.subarray(s * channels * plane, (s * channels + shown) * plane), s * shown * plane);
  return { images: out, dims: [n, shown, h, w], note: `the grid shows channel${shown > 1 ? 's 0-2' : ' 0'} of ${channels} (raw latents, not decoded images)` };
}

/** Two image sets of equal shape side by side (left | right), e.g. FP | quantized, each its own grid. */
export function sideBySidePng(left: Float32Array, right: Float32Array, dims: number[], options: GridOptions = {}): Uint8Array {
  const a = gridRaster(left, dims, options);
  const b = gridRaster(right, dims, options);
  const separator = 4 * (options.scale ?? 1);
  const width = a.width + separator + b.width;
  const out = blank(width, a.height, options.gutter ?? 128);
  blit(a, out, 0, 0);
  blit(b, out, a.width + separator, 0);
  return encodePng(out);
}

function gridRaster(images: Float32Array, dims: number[], options: GridOptions): Raster {
  const [n, channels, h, w] = dims as [number, number, number, number];
  if (dims.length !== 4 || (channels !== 1 && channels !== 3)) throw new Error(`image grid: expected [N, 1|3, H, W], got [${dims.join(', ')}]`);
  if (images.length !== n * channels * h * w) throw new Error(`image grid: ${images.length} values for [${dims.join(', ')}]`);
  const scale = options.scale ?? 1;
  if (!(Number.isInteger(scale) && scale >= 1)) throw new Error(`image grid: scale must be a positive integer, got ${scale}`);
  const cols = Math.max(1, options.cols ?? Math.ceil(Math.sqrt(n)));
  const rows = Math.max(1, Math.ceil(n / cols));
  const cellW = w * scale;
  const cellH = h * scale;
  const out = blank(cols * cellW + (cols + 1), rows * cellH + (rows + 1), options.gutter ?? 128);
  const plane = h * w;
  for (let k = 0; k < n; k++) {
    const x0 = 1 + (k % cols) * (cellW + 1);
    const y0 = 1 + Math.floor(k / cols) * (cellH + 1);
    for (let py = 0; py < cellH; py++) {
      for (let px = 0; px < cellW; px++) {
        const src = Math.floor(py / scale) * w + Math.floor(px / scale);
        const o = ((y0 + py) * out.width + x0 + px) * 4;
        for (let c = 0; c < 3; c++) out.rgba[o + c] = toByte(images[(k * channels + (channels === 1 ? 0 : c)) * plane + src]!);
      }
    }
  }
  return out;
}

/** [−1, 1] → 0..255, clamped, round half up (NaN → 0). */
function toByte(v: number): number {
  const b = Math.floor(((v + 1) / 2) * 255 + 0.5);
  return b > 255 ? 255 : b >= 0 ? b : 0;
}

function blank(width: number, height: number, gray: number): Raster {
  const rgba = new Uint8Array(width * height * 4);
  for (let i = 0; i < rgba.length; i += 4) {
    rgba[i] = rgba[i + 1] = rgba[i + 2] = gray;
    rgba[i + 3] = 255;
  }
  return { width, height, rgba };
}

function blit(src: Raster, dst: Raster, x: number, y: number): void {
  for (let row = 0; row < src.height; row++) dst.rgba.set(src.rgba.subarray(row * src.width * 4, (row + 1) * src.width * 4), ((y + row) * dst.width + x) * 4);
}

function encodePng(raster: Raster): Uint8Array {
  const png = new PNG({ width: raster.width, height: raster.height });
  png.data = Buffer.from(raster.rgba.buffer, raster.rgba.byteOffset, raster.rgba.byteLength);
  return new Uint8Array(PNG.sync.write(png, { colorType: 6, deflateLevel: 9 }));
}
