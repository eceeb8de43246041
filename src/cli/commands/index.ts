// Registry of every CLI subcommand. Add a command by importing it and listing it here (one line each).

import type { CliCommand } from '../command.ts';
import { benchCommand } from './bench.ts';
import { cardIssueCommand } from './card-issue.ts';
import { hsmSimCommand } from './hsm-sim.ts';
import { hsmCommand } from './hsm.ts';
import { hsmInitCommand } from './hsm-init.ts';
import { hsmKeysCommand } from './hsm-keys.ts';
import { hsmHealthCommand } from './hsm-health.ts';
import { atrCommand } from './atr.ts';
import { swCommand } from './sw.ts';
import { purchaseCommand } from './purchase.ts';
import { cardInfoCommand } from './card-info.ts';
import { psamIssueCommand } from './psam-issue.ts';
import { apduCommand } from './apdu.ts';
import { scriptCommand } from './script.ts';
import { readersCommand } from './readers.ts';
import { emulateCommand } from './emulate.ts';

export const commands: CliCommand[] = [
  benchCommand,
  cardIssueCommand,
  hsmSimCommand,
  hsmCommand,
  hsmInitCommand,
  hsmKeysCommand,
  hsmHealthCommand,
  atrCommand,
  swCommand,
  purchaseCommand,
  cardInfoCommand,
  psamIssueCommand,
  apduCommand,
  scriptCommand,
  readersCommand,
  emulateCommand,
];
