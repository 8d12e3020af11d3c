import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkCommand } from '../../src/cli/commands/check.js';
import { fmtCommand } from '../../src/cli/commands/fmt.js';
import { schemaCommand } from '../../src/cli/commands/schema.js';
import type { CliIO, Command } from '../../src/cli/command.js';

/** Runs a command with captured streams, relative paths resolving against `cwd`. */
async function run(command: Command, argv: string[], cwd = process.cwd()) {
  let stdout = '';
  let stderr = '';
  const io: CliIO = { stdout: (s) => void (stdout += s), stderr: (s) => void (stderr += s), cwd };
  const code = await command.run(argv, io);
  return { code, stdout, stderr };
}

const FIXTURE = 'test/fixtures/dit-digits/model.onnx';
const scratch = mkdtempSync(join(tmpdir(), 'qcompile-recipe-cli-'));
/** A recipe whose second rule selects nothing in the fixture (an error, E045; a warning, W001, under --allow-empty). */
const UNMATCHED = join(scratch, 'unmatched.qrecipe');
writeFileSync(UNMATCHED, 'recipe "x" {\n  quantize op(Conv) { weight int8 }\n  quantize res.conv { weight int8 }\n}\n');
/** A recipe with a selector that matches nothing in a rule that selects other layers (a warning, W004). */
const IDLE_SELECTOR = join(scratch, 'idle-selector.qrecipe');
writeFileSync(IDLE_SELECTOR, 'recipe "x" {\n  quantize op(Conv), res.conv { weight int8 }\n}\n');

describe('qcompile check', () => {
  it('passes a shipped recipe and prints the rule → layers table with --model', async () => {
    const { code, stdout, stderr } = await run(checkCommand, ['recipes/qdit-w4a8.qrecipe', '--model', FIXTURE]);
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
    // Per rule: where it is, how many layers it takes, their roles and its first layer names.
    expect(stdout.split('\n').slice(0, 4)).toEqual([
      'recipes/qdit-w4a8.qrecipe:18:3: quantize attn, mlp, adaln: 31 layer(s) (adaln 7, attn.out 6, attn.qkv 6, mlp.fc1 6, mlp.fc2 6)',
      '  blocks.0.adaln, blocks.0.attn.qkv, blocks.0.attn.out, blocks.0.mlp.fc1 and 27 more',
      'recipes/qdit-w4a8.qrecipe:22:3: keep embed, final: 5 layer(s) (embed.label 1, embed.patch 1, embed.time 2, final 1)',
      '  embed.patch, embed.time.0, embed.time.1, embed.label and 1 more',
    ]);
    expect(stdout.trimEnd().split('\n').at(-1)).toBe('recipes/qdit-w4a8.qrecipe: ok (0 error(s), 0 warning(s))');
  });

  it('renders errors as file:line:col with the source line and a caret, exit 1', async () => {
    const { code, stderr } = await run(checkCommand, ['test/recipes/bad/unknown-role.qrecipe']);
    expect(code).toBe(1);
    expect(stderr.split('\n').slice(0, 3)).toEqual([
      "test/recipes/bad/unknown-role.qrecipe:3:12: error[E020]: unknown layer role or selector 'attn.qkvv' (did you mean 'attn.qkv'?)",
      '    quantize attn.qkvv { weight int8 }',
      '             ^~~~~~~~~',
    ]);
  });

  it('resolves relative paths against the working directory it is given', async () => {
    const { code, stdout } = await run(checkCommand, ['minmax-w8a8.qrecipe'], join(process.cwd(), 'recipes'));
    expect(code).toBe(0);
    expect(stdout).toContain('minmax-w8a8.qrecipe: ok');
  });

  it("asks the target's backend, under the lowering options compile would use (--allow-requantize)", async () => {
    const path = join(scratch, 'tensorrt-asym.qrecipe');
    writeFileSync(path, 'recipe "x" {\n  target tensorrt\n  quantize attn.qkv { weight int8 input int8 asym }\n}\n');
    const refused = await run(checkCommand, [path, '--model', FIXTURE]);
    expect(refused.code).toBe(1);
    // With a model: one diagnostic at the rule, a note per problem naming its layers (the lowering's grouping).
    expect(refused.stderr).toContain(`${path}:3:3: error[E040]: target tensorrt cannot execute what this rule plans for 6 layers`);
    expect(refused.stderr).toContain('  note: activation uint8 asym static on MatMul is not supported; --allow-requantize would lower it as int8 sym static');
    // Without one: the rule is refused on every op the target runs, said once at the rule.
    const bare = await run(checkCommand, [path]);
    expect(bare.code).toBe(1);
    expect(bare.stderr).toContain(`${path}:3:3: error[E040]: target tensorrt: activation uint8 asym static on MatMul is not supported`);
    expect((await run(checkCommand, [path, '--model', FIXTURE, '--allow-requantize'])).code).toBe(0);
  });

  it('refuses a quantize rule that selects nothing (E045), unless --allow-empty', async () => {
    const refused = await run(checkCommand, [UNMATCHED, '--model', FIXTURE]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`${UNMATCHED}:3:3: error[E045]: quantize rule 'res.conv' selects no layer of this model`);
    expect(refused.stderr).toContain("  note: this model's layers by role: adaln 7, attn.out 6, attn.qkv 6, embed.label 1, embed.patch 1, embed.time 2, final 1, mlp.fc1 6, mlp.fc2 6");
    const allowed = await run(checkCommand, [UNMATCHED, '--model', FIXTURE, '--allow-empty']);
    expect(allowed.code).toBe(0);
    expect(allowed.stderr).toContain(`${UNMATCHED}:3:3: warning[W001]: quantize rule 'res.conv' selects no layer of this model`);
  });

  it('lets warnings pass, unless --strict', async () => {
    const lenient = await run(checkCommand, [IDLE_SELECTOR, '--model', FIXTURE]);
    expect(lenient.code).toBe(0);
    expect(lenient.stderr).toContain("warning[W004]: selector 'res.conv' of quantize rule 'op(Conv), res.conv' matches no layer of this model");
    expect((await run(checkCommand, [IDLE_SELECTOR, '--model', FIXTURE, '--strict'])).code).toBe(1);
  });

  it('--json gives validity, diagnostics with byte spans, and the selection', async () => {
    const { code, stdout } = await run(checkCommand, [UNMATCHED, '--model', FIXTURE, '--json', '--allow-empty']);
    expect(code).toBe(0);
    const report = JSON.parse(stdout) as { valid: boolean; diagnostics: { code: string; span: { offset: number } }[]; selection: { rule: string; at: string; layers: string[]; roles: Record<string, number> }[] };
    expect(report.valid).toBe(true);
    expect(report.diagnostics.map((d) => d.code)).toEqual(['W001']);
    expect(readFileSync(UNMATCHED, 'utf8').slice(report.diagnostics[0]!.span.offset)).toMatch(/^quantize res\.conv/);
    expect(report.selection.find((row) => row.rule === 'quantize res.conv')).toEqual({ rule: 'quantize res.conv', at: `${UNMATCHED}:3:3`, layers: [], roles: {} });
    expect(report.selection.find((row) => row.rule === 'quantize op(Conv)')).toEqual({ rule: 'quantize op(Conv)', at: `${UNMATCHED}:2:3`, layers: ['embed.patch'], roles: { 'embed.patch': 1 } });
  });

  it('says why a model cannot be loaded instead of throwing', async () => {
    const { code, stderr } = await run(checkCommand, ['recipes/minmax-w8a8.qrecipe', '--model', join(scratch, 'missing.onnx')]);
    expect(code).toBe(1);
    expect(stderr).toMatch(/^qcompile check: cannot load model .*missing\.onnx: /);
  });

  it('is a usage error (2) without exactly one recipe', async () => {
    expect((await run(checkCommand, [])).code).toBe(2);
    expect((await run(checkCommand, ['a.qrecipe', 'b.qrecipe'])).code).toBe(2);
  });
});

describe('qcompile fmt', () => {
  it('--write rewrites a file into canonical form, and formatting that again changes nothing', async () => {
    const file = join(scratch, 'fmt.qrecipe');
    writeFileSync(file, readFileSync('recipes/qdit-w6a8.qrecipe', 'utf8'));
    const printed = await run(fmtCommand, [file]);
    expect(printed.code).toBe(0);
    expect(await run(fmtCommand, [file, '--write'])).toEqual({ code: 0, stdout: '', stderr: '' });
    expect(readFileSync(file, 'utf8')).toBe(printed.stdout);
    expect((await run(fmtCommand, [file])).stdout).toBe(printed.stdout);
  });

  it('refuses a recipe with syntax errors, exit 1, leaving it untouched', async () => {
    const file = join(scratch, 'broken.qrecipe');
    const broken = 'recipe "x" {\n  quantize all { weight int8 \n';
    writeFileSync(file, broken);
    const { code, stdout, stderr } = await run(fmtCommand, [file, '--write']);
    expect({ code, stdout }).toEqual({ code: 1, stdout: '' });
    expect(stderr).toContain('error[E002]');
    expect(readFileSync(file, 'utf8')).toBe(broken);
  });
});

describe('qcompile schema', () => {
  it('prints the committed schema', async () => {
    const { code, stdout } = await run(schemaCommand, []);
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toEqual(JSON.parse(readFileSync('grammar/qrecipe.schema.json', 'utf8')));
    expect((await run(schemaCommand, ['extra'])).code).toBe(2);
  });
});
