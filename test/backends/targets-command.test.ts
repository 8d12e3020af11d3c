import { describe, expect, it } from 'vitest';
import { backends } from '../../src/backends/registry.js';
import type { CliIO } from '../../src/cli/command.js';
import { targetsCommand } from '../../src/cli/commands/targets.js';

async function run(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const io: CliIO = { stdout: (t) => void (stdout += t), stderr: (t) => void (stderr += t), cwd: process.cwd() };
  return { code: await targetsCommand.run(argv, io), stdout, stderr };
}

describe('qcompile targets', () => {
  it('lists every backend from its capability table', async () => {
    const { code, stdout } = await run([]);
    expect(code).toBe(0);
    for (const name of Object.keys(backends)) expect(stdout).toMatch(new RegExp(`^${name}  `, 'm'));
    expect(stdout).toContain('weight int4 sym/asym group 16|32|64|128|256 on MatMul/Gemm → com.microsoft.MatMulNBits (bits 4)');
    expect(stdout).toContain('activation int8 sym (signed, zero point 0) static on MatMul/Gemm/Conv');
    // Opt-in capabilities say which flag unlocks them.
    expect(stdout).toContain('with --allow-requantize: weight int8 sym/asym per-tensor, per-channel on MatMul/Gemm/Conv → int8 sym per-channel on the output axis (requantized: scale max|w|/127)');
    expect(stdout).toContain('with --allow-requantize: activation int8 sym/asym static on MatMul/Gemm/Conv → int8 sym static (requantized: scale max(|lo|, |hi|)/127 of the calibrated range)');
  });

  it('--json is the tables themselves; an unknown target is an error', async () => {
    const { stdout } = await run(['webgpu', '--json']);
    expect(JSON.parse(stdout)).toEqual({ webgpu: { runtime: backends.webgpu.runtime, ...backends.webgpu.capabilities } });
    const bad = await run(['vulkan']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("unknown target 'vulkan' (targets: cpu, webgpu, cuda, tensorrt)");
  });
});
