/** Every `qcompile` subcommand, in `--help` order. One explicit list: no registration by import side effects. */
import type { Command } from '../command.js';

export const commands: Command[] = [];
