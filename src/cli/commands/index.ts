/** Every `qcompile` subcommand, in `--help` order. One explicit list: no registration by import side effects. */
import type { Command } from '../command.js';
import { checkCommand } from './check.js';
import { compileCommand } from './compile.js';
import { diffCommand } from './diff.js';
import { evalCommand } from './eval.js';
import { fmtCommand } from './fmt.js';
import { inspectCommand } from './inspect.js';
import { passesCommand } from './passes.js';
import { sampleCommand } from './sample.js';
import { schemaCommand } from './schema.js';
import { synthCommand } from './synth.js';
import { targetsCommand } from './targets.js';

export const commands: Command[] = [compileCommand, checkCommand, fmtCommand, schemaCommand, inspectCommand, synthCommand, passesCommand, targetsCommand, diffCommand, evalCommand, sampleCommand];
