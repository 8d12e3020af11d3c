/** `qcompile targets`: what each backend executes as low-bit kernels, printed from its capability table. */
import { OPT_IN_FLAGS, type CapabilityTable, type OptInOption } from '../../backends/backend.js';
import { backends, findBackend } from '../../backends/registry.js';
import type { CliIO, Command } from '../command.js';

export const targetsCommand: Command = {
  name: 'targets',
  summary: 'list the --target backends and the quantization each runs as low-bit kernels',
  usage: [
    'Usage: qcompile targets [TARGET] [--json]',
    '',
    'Lists every backend (cpu, webgpu, cuda, tensorrt): its runtime, the weight and activation forms it',
    'executes and what they lower to. Anything not listed is refused with the layer named, unless a',
    'recipe allows fallback. --json prints the capability tables themselves.',
  ].join('\n'),
  async run(argv: string[], io: CliIO): Promise<number> {
    const json = argv.includes('--json');
    const names = argv.filter((a) => a !== '--json');
    for (const name of names) {
      if (name.startsWith('-') || !findBackend(name)) {
        io.stderr(`qcompile targets: error: unknown ${name.startsWith('-') ? 'option' : 'target'} '${name}' (targets: ${Object.keys(backends).join(', ')})\n`);
        return 2;
      }
    }
    const selected = Object.values(backends).filter((b) => names.length === 0 || names.includes(b.name));
    if (json) {
      io.stdout(`${JSON.stringify(Object.fromEntries(selected.map((b) => [b.name, { runtime: b.runtime, ...b.capabilities }])), null, 2)}\n`);
      return 0;
    }
    const lines: string[] = [];
    for (const backend of selected) {
      lines.push(`${backend.name}  ${backend.summary}`, `    runtime: ${backend.runtime}`, `    compute: ${backend.capabilities.compute.join(', ')}`, ...describe(backend.capabilities), '');
    }
    io.stdout(lines.join('\n'));
    return 0;
  },
};

function describe(table: CapabilityTable): string[] {
  const sym = (asymmetric: boolean, signedOnly?: boolean): string => (asymmetric ? 'sym/asym' : signedOnly ? 'sym (signed, zero point 0)' : 'sym');
  const optIn = (option: OptInOption | undefined): string => (option ? `with ${OPT_IN_FLAGS[option]}: ` : '');
  return [
    ...table.weights.map((c) => {
      const granularity = c.granularity.map((g) => (g === 'group' && c.groupSizes?.length ? `group ${c.groupSizes.join('|')}` : g)).join(', ');
      return `    ${optIn(c.optIn)}weight int${c.bits.join('|')} ${sym(c.asymmetric, c.signedOnly)} ${granularity} on ${c.ops.join('/')} → ${c.form}`;
    }),
    ...table.activations.map((c) => `    ${optIn(c.optIn)}activation int${c.bits.join('|')} ${sym(c.asymmetric, c.signedOnly)} ${c.modes.join('/')} on ${c.ops.join('/')} → ${c.form}`),
    ...table.notes.map((n) => `    note: ${n}`),
  ];
}
