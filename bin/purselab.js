#!/usr/bin/env node
// purselab launcher: runs the TypeScript CLI through tsx's ESM loader (no build step).
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
