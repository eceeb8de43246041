// Registry of every CLI subcommand, in the order `purselab --help` lists them. Add a command by importing it
// and listing it here (one line each).

import type { CliCommand } from '../command.ts';
import { apduCommand } from './apdu.ts';
import { atrCommand } from './atr.ts';
import { benchCommand } from './bench.ts';
import { cardInfoCommand } from './card-info.ts';
import { cardIssueCommand } from './card-issue.ts';
import { demoCommand } from './demo.ts';
import { emulateCommand } from './emulate.ts';
import { hsmHealthCommand } from './hsm-health.ts';
import { hsmInitCommand } from './hsm-init.ts';
import { hsmKeysCommand } from './hsm-keys.ts';
import { hsmSimCommand } from './hsm-sim.ts';
import { hsmCommand } from './hsm.ts';
import { psamIssueCommand } from './psam-issue.ts';
import { purchaseCommand } from './purchase.ts';
import { payCommand } from './pay.ts';
import { loadCommand } from './load.ts';
import { serveBankCommand } from './serve-bank.ts';
import { serveLoadCommand } from './serve-load.ts';
import { serveMerchantCommand } from './serve-merchant.ts';
import { serveOpalCommand } from './serve-opal.ts';
import { servePaymentCommand } from './serve-payment.ts';
import { paymentBatchCommand, paymentRecreditCommand, paymentReportCommand } from './payment-admin.ts';
import { readersCommand } from './readers.ts';
import { scriptCommand } from './script.ts';
import { swCommand } from './sw.ts';

export const commands: CliCommand[] = [
  // whole-stack
  demoCommand,
  benchCommand,
  // PC/SC and APDUs
  readersCommand,
  apduCommand,
  scriptCommand,
  atrCommand,
  swCommand,
  // the emulator and card issuing
  emulateCommand,
  cardIssueCommand,
  psamIssueCommand,
  // purse protocols
  cardInfoCommand,
  purchaseCommand,
  payCommand,
  loadCommand,
  serveBankCommand,
  serveLoadCommand,
  serveMerchantCommand,
  serveOpalCommand,
  servePaymentCommand,
  paymentReportCommand,
  paymentRecreditCommand,
  paymentBatchCommand,
  // HSM bridge
  hsmCommand,
  hsmInitCommand,
  hsmKeysCommand,
  hsmHealthCommand,
  hsmSimCommand,
];
