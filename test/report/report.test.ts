import { describe, expect, it } from 'vitest';
import { decodeLayerChoices, decodePassTimings, encodeLayerChoices, summarizeScaling } from '../../src/report/compile-record.js';
import { renderReportHtml, type QualityReport } from '../../src/report/report.js';

const facts = { path: 'm.onnx', fileBytes: 1 << 20, bytesByDtype: { f32: 1 << 20 }, parameters: 1 << 18 };

function report(extra: Partial<QualityReport>): QualityReport {
  return { title: 't', generator: 'test', fp: facts, quant: facts, settings: { sampler: 'ddim', steps: 10, samples: 20, seed: 0 }, ...extra };
}

describe('compile record', () => {
  it('summarizes factors as min / median / max / count at 6 significant digits', () => {
    expect(summarizeScaling('smooth-quant', Float32Array.of(4, 1, 3, 2))).toEqual({ pass: 'smooth-quant', min: 1, median: 2.5, max: 4, count: 4 });
    expect(summarizeScaling('weight-dilation', [1, 1.0034123456, 7])).toEqual({ pass: 'weight-dilation', min: 1, median: 1.00341, max: 7, count: 3 });
  });

  it('round-trips the layer choices in a fixed key order, and rejects what is not one', () => {
    const text = encodeLayerChoices(new Map([['b.attn.qkv', { scaling: [summarizeScaling('smooth-quant', [2])], searched: true, groupSize: 64, bits: 4 }]]));
    expect(text).toBe('{"b.attn.qkv":{"bits":4,"groupSize":64,"searched":true,"scaling":[{"pass":"smooth-quant","min":2,"median":2,"max":2,"count":1}]}}');
    expect(decodeLayerChoices(text)!.get('b.attn.qkv')!.groupSize).toBe(64);
    expect(decodeLayerChoices('[1]')).toBeUndefined();
    expect(decodeLayerChoices('{')).toBeUndefined();
    expect(decodeLayerChoices(undefined)).toBeUndefined();
  });

  it('reads a pass-timings sidecar and rejects other JSON', () => {
    expect(decodePassTimings('{"pipeline":"a","passes":[{"pass":"a","step":"a","modified":true,"milliseconds":1.5,"statistics":{}}]}')!.passes[0]!.milliseconds).toBe(1.5);
    expect(decodePassTimings('{"passes":[{"pass":"a"}]}')).toBeUndefined();
    expect(decodePassTimings('not json')).toBeUndefined();
  });
});

describe('report.html', () => {
  it('renders the layer table with group sizes and scaling, and a pass-timing chart with statistics', () => {
    const html = renderReportHtml(
      report({
        layers: [
          { name: 'blocks.0.attn.qkv', role: 'attn.qkv', weight: 'int4 asym group 64 (MatMulNBits)', input: 'int8 sym dynamic', bits: 4, groupSize: 64, searched: true, scaling: [summarizeScaling('smooth-quant', [0.5, 1, 8])] },
          { name: 'blocks.0.mlp.fc2', role: 'mlp.fc2', weight: 'int4 asym group 128', input: 'float', bits: 4, groupSize: 128 },
          { name: 'embed.label', role: 'embed.label', weight: 'float', input: 'float' },
        ],
        passes: [
          { name: 'search-group-sizes', ms: 1234.5, modified: false, statistics: { group_64: 1, group_128: 1 } },
          { name: 'quantize-weights', ms: 80, modified: true, statistics: { layers_quantized: 2 } },
        ],
        passesSource: 'q.onnx.passes.json',
      }),
    );
    expect(html).toContain('<table class="layers">');
    expect(html).toContain('<td>64 <span class="muted">(searched)</span></td><td class="text">int8 sym dynamic</td>');
    expect(html).toContain('smooth-quant: 0.5 … 1 … 8');
    expect(html).toContain('Group sizes: <b>64</b> × 1, <b>128</b> × 1');
    expect(html).toContain('aria-label="time per pass"');
    expect(html).toContain('<td>search-group-sizes</td><td>1234.5 ms</td><td class="text">no</td><td class="text stats">group_64=1 group_128=1</td>');
    expect(html).toContain('from q.onnx.passes.json; total 1.31 s');
    expect(html).not.toMatch(/<script|https?:\/\/(?!www\.w3\.org)/);
  });

  it('escapes layer and pass names', () => {
    const html = renderReportHtml(report({ layers: [{ name: '<x>', role: 'r', weight: 'float', input: 'float' }], passes: [{ name: 'a&b', ms: 1, statistics: { k: '<v>' } }] }));
    expect(html).toContain('&lt;x&gt;');
    expect(html).toContain('a&amp;b');
    expect(html).toContain('k=&lt;v&gt;');
  });
});
