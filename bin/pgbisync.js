#!/usr/bin/env node
// Runs the CLI from its TypeScript sources (Node 24 strips types natively), or from dist/
// when the package was built and published without sources.
import { existsSync } from 'node:fs';
const src = new URL('../src/cli/main.ts', import.meta.url);
const { main } = await import(existsSync(src) ? src.href : new URL('../dist/cli/main.js', import.meta.url).href);
await main(process.argv);
