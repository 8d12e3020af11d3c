/** Every `qcompile` subcommand, in `--help` order. One explicit list: no registration by import side effects. */
import type { Command } from '../command.js';
import { compileCommand } from './compile.js';
import { diffCommand } from './diff.js';
import { inspectCommand } from './inspect.js';
import { passesCommand } from './passes.js';
import { synthCommand } from './synth.js';

export const commands: Command[] = [compileCommand, passesCommand, diffCommand, inspectCommand, synthCommand];
