import { createHash } from 'node:crypto';
import { PNG } from 'pngjs';
import { describe, expect, it } from 'vitest';
import { imageGridPng, sideBySidePng } from '../../src/runtime/png-grid.js';

const decode = (bytes: Uint8Array) => PNG.sync.read(Buffer.from(bytes));

describe('PNG grids', () => {
  // Three 2×2 images: all −1, all +1, and a ramp.
  const images = Float32Array.from([-1, -1, -1, -1, 1, 1, 1, 1, -1, -1 / 3, 1 / 3, 1]);
  const dims = [3, 1, 2, 2];

  it('lays out cells with 1-px gutters and nearest upscaling', () => {
    const png = decode(imageGridPng(images, dims, { cols: 2, scale: 3 }));
    expect([png.width, png.height]).toEqual([2 * 6 + 3, 2 * 6 + 3]);
    const gray = (x: number, y: number) => png.data[(y * png.width + x) * 4]!;
    expect(gray(0, 0)).toBe(128); // gutter
    expect(gray(1, 1)).toBe(0); // image 0
    expect(gray(8, 6)).toBe(255); // image 1, last pixel of its cell
    expect([gray(7, 1), gray(13, 1), gray(14, 1)]).toEqual([128, 255, 128]); // gutter, image 1, outer gutter
    expect([gray(1, 8), gray(4, 8), gray(1, 11), gray(4, 11)]).toEqual([0, 85, 170, 255]); // image 2 ramp
    expect(gray(10, 10)).toBe(128); // empty 4th cell
  });

  it('is byte-deterministic', () => {
    const a = createHash('sha256').update(imageGridPng(images, dims, { scale: 2 })).digest('hex');
    const b = createHash('sha256').update(imageGridPng(Float32Array.from(images), dims, { scale: 2 })).digest('hex');
    expect(a).toBe(b);
  });

  it('side by side puts the two grids left and right of a separator', () => {
    const png = decode(sideBySidePng(images, images.map((v) => -v), dims, { cols: 3 }));
    const single = decode(imageGridPng(images, dims, { cols: 3 }));
    expect(png.width).toBe(2 * single.width + 4);
    expect(png.data[(1 * png.width + 1) * 4]).toBe(0);
    expect(png.data[(1 * png.width + single.width + 4 + 1) * 4]).toBe(255);
  });

  it('rejects a shape that does not match the data', () => {
    expect(() => imageGridPng(images, [4, 1, 2, 2])).toThrow(/values/);
  });
});
