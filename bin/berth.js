#!/usr/bin/env -S node --max-semi-space-size=1
// --max-semi-space-size=1 (here, in `npm start` and in the benchmark): a small young generation
// frees the socket buffers of a streaming push at the next scavenge instead of letting them pile
// up as external memory (measured on a 1 GiB push: peak RSS 150 MiB instead of 174 MiB, same
// throughput). It cannot be set from inside the process once the heap exists.
// The `berth` command. Node 24 runs the TypeScript sources directly (type stripping). The compile
// cache keeps the stripped and compiled modules between runs: later starts skip the TypeScript
// stripper entirely, which saves about 25 MiB of resident memory and some start-up time.
import module from 'node:module';
module.enableCompileCache?.();
await import('../src/main.ts');
