// Registry of benchmark suites run by `purselab bench [SUITE...]`. Add a suite with one import and one list entry.

import { emulatorBench } from './emulator.ts';
import { purchaseBench } from './purchase.ts';
import { paymentBench } from './payment.ts';
import { hsmBench } from './hsm.ts';
import { transportBench } from './transport.ts';
import { opalBench } from './opal.ts';
import { loadBench } from './load.ts';
import type { BenchSuite } from './suite.ts';

export const benchSuites: BenchSuite[] = [
  hsmBench,
  emulatorBench,
  transportBench,
  purchaseBench,
  paymentBench,
  opalBench,
  loadBench,
];
