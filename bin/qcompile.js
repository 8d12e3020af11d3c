#!/usr/bin/env node
// The installed entry point: runs the compiled CLI (npm's `prepare` builds dist/), relaunched once under the
// allocator settings a real-size compile needs (src/cli/relaunch.ts).
import { relaunchUnderAllocatorEnv } from '../dist/src/cli/relaunch.js';

const relaunched = await relaunchUnderAllocatorEnv();
if (relaunched !== undefined) process.exitCode = relaunched;
else {
  const { main } = await import('../dist/src/cli/main.js');
  process.exitCode = await main(process.argv.slice(2));
}
