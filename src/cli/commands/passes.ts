/** `qcompile passes`: lists the registered passes with their options, as pipeline text would spell them, and the artifacts each requires, reads and produces. */
import { passRegistry } from '../../passes/registry.js';
import type { ArtifactKey } from '../../passes/artifacts.js';
import type { OptionSpec } from '../../passes/pass.js';
import type { CliIO, Command } from '../command.js';

export const passesCommand: Command = {
  name: 'passes',
  summary: 'list the registered passes and their options',
  usage: [
    'Usage: qcompile passes',
    '',
    'Lists every pass a --passes pipeline can name, with its options and defaults, and the artifacts it',
    'requires (a pipeline where no earlier step produces one is rejected), reads when the plan asks, and produces.',
    "Pipeline text: NAME{key=value,list=a|b},NAME,... e.g. 'select-layers{roles=attn|mlp,bits=4,group=128},quantize-weights,cleanup'",
  ].join('\n'),
  async run(argv: string[], io: CliIO): Promise<number> {
    if (argv.length > 0) {
      io.stderr(`qcompile passes: error: unexpected argument '${argv[0]}'\n`);
      return 2;
    }
    const lines: string[] = [];
    for (const pass of passRegistry) {
      lines.push(`${pass.name}  ${pass.summary}`);
      for (const [name, spec] of Object.entries(pass.options)) lines.push(`    ${name}=${typeLabel(spec)}  ${spec.description}${defaultLabel(spec)}`);
      for (const [label, keys] of [['requires', pass.requires], ['reads', pass.reads], ['produces', pass.produces]] as const) if (keys.length > 0) lines.push(`    ${label}: ${artifactList(keys)}`);
    }
    io.stdout(lines.join('\n') + '\n');
    return 0;
  },
};

function typeLabel(spec: OptionSpec): string {
  if (spec.choices) return spec.choices.join('|');
  return spec.type === 'string-list' ? 'a|b|…' : `<${spec.type}>`;
}

function defaultLabel(spec: OptionSpec): string {
  if (spec.default === undefined) return '';
  return ` (default ${Array.isArray(spec.default) ? spec.default.join('|') : String(spec.default)})`;
}

function artifactList(keys: readonly ArtifactKey<unknown>[]): string {
  return keys.map((k) => k.name).join(', ');
}
