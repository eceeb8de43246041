// The multi-process load world of the rig suites (test/rig/load-e2e.test.ts): `purselab emulate` with the purse
// card in a vpcd slot behind the real pcscd, `purselab serve load` with the issuer keys in a real HSM backend
// (SoftHSM2 token, or the serial simulator on a socat pty at 115200 baud), `purselab serve bank`, and the
// `purselab load` client, all as child processes on loopback HTTP. The load server can be SIGKILLed at a crash
// point (PURSELAB_LOAD_CRASH_AT) and restarted on the same port and database; the emulator can be restarted
// with extra options (e.g. `--power-cut 42:K`). `totals()` feeds conservation.ts, reading the bank's and the
// load server's SQLite files read-only and the card through pcscd.

import Database from 'better-sqlite3';
import { join } from 'node:path';
import { createTempTokens, SOFTHSM_MODULE, type TempTokens } from '../../../hsm-bridge/pkcs11/softhsm-temp.ts';
import { formatLine } from '../../../hsm-bridge/serial/backend.ts';
import { ptyHostLine, spawnSimulator, startPtyPair, type PtyPair, type SimulatorProcess } from '../../../hsm-bridge/serial/lab.ts';
import { readPurse } from '../../../src/terminal/purse.ts';
import { EmulatorChannel } from '../../../src/transport/emulator-channel.ts';
import { loadCardImage } from '../../../card-applet-sim/os/image.ts';
import { openPcscChannel } from '../../../src/transport/pcsc.ts';
import { readSettlementTotals } from '../../../src/server/load/settlement.ts';
import { freeSlots, purselab, runCli, startEmulator, tempDir, type Proc } from '../../rig/rig.ts';
import { ledgerTotals, type LedgerTotals } from './conservation.ts';
import { BANK_CONFIG } from './harness.ts';

export type Backend = 'pkcs11' | 'serial';
export const ALICE = ['--user', 'alice', '--password', 'alice-demo-pw'];

export interface E2EWorld {
  readonly reader: string;
  bankUrl: string;
  loadUrl: string;
  /** Start (or restart) the load server; `crashAt` makes it SIGKILL itself at that point. */
  startLoad(crashAt?: string): Promise<void>;
  stopLoad(signal?: NodeJS.Signals): Promise<void>;
  loadProc(): Proc | undefined;
  /** Stop the emulator (SIGTERM: it saves the card image) and start it again with `extra` options. */
  restartEmulator(extra?: string[]): Promise<Proc>;
  emulatorProc(): Proc;
  /** purselab load BANK --reader R --json ... */
  load(args: string[]): Promise<{ code: number | null; json: Record<string, unknown>; stderr: string }>;
  totals(): Promise<LedgerTotals & { captured: number; released: number }>;
  /** The purse balance in the card image file as saved last (not the live card). */
  imageBalance(): Promise<number>;
  /** Bank holds by txnId: state and the reason it was resolved (from bank.db, read-only). */
  holds(): Promise<Map<string, { state: string; reason: string | null }>>;
  close(): Promise<void>;
}

async function waitUrl(p: Proc, what: string): Promise<string> {
  await p.waitForOutput(new RegExp(`${what} listening on http://\\S+`), 30_000);
  return new RegExp(`${what} listening on (http://\\S+)`).exec(p.stdout)![1]!;
}

export async function startE2E(backend: Backend): Promise<E2EWorld> {
  const tmp = tempDir('purselab-load-e2e-');
  const dir = tmp.path;
  const cardImg = join(dir, 'card.img');
  const issue = await runCli(['card', 'issue', '--profile', 'fixtures/profiles/demo-aes.json', '--keys', 'fixtures/keys/demo-issuer.json', '--out', cardImg, '--balance', '10.00']);
  if (issue.code !== 0) throw new Error(`card issue: ${issue.stderr}`);
  const [slot] = await freeSlots(1);
  const emuArgs = ['--vpcd', `127.0.0.1:${slot!.port}`, '--card', cardImg];
  let emu = await startEmulator(emuArgs, [slot!.reader]);

  let tokens: TempTokens | undefined;
  let pty: PtyPair | undefined;
  let sim: SimulatorProcess | undefined;
  let spec: string;
  const env: NodeJS.ProcessEnv = {};
  if (backend === 'pkcs11') {
    tokens = createTempTokens(['purselab-issuer']);
    env.PURSELAB_HSM_PIN = tokens.token('purselab-issuer').pin;
    env.SOFTHSM2_CONF = process.env.SOFTHSM2_CONF;
    // Single DES for SoftHSM2 inside Node, in this process itself (no relaunched child that a signal would miss).
    env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} --openssl-legacy-provider`.trim();
    const init = await runCli(['hsm', 'init', '--pkcs11', SOFTHSM_MODULE, '--token', 'purselab-issuer', '--no-record-keys'], { env, timeoutMs: 120_000 });
    if (init.code !== 0) throw new Error(`hsm init (pkcs11): ${init.stderr}`);
    spec = `pkcs11:${SOFTHSM_MODULE}#purselab-issuer`;
  } else {
    pty = await startPtyPair(dir);
    sim = await spawnSimulator({ serial: pty.simPath, baud: 115200, keystore: join(dir, 'sim.store'), master: 'load-e2e-lab-only' });
    const line = formatLine(ptyHostLine(pty, 115200));
    const init = await runCli(['hsm', 'init', '--serial', line, '--no-record-keys'], { timeoutMs: 120_000 });
    if (init.code !== 0) throw new Error(`hsm init (serial): ${init.stderr}`);
    spec = `serial:${line}`;
  }

  let loadProc: Proc | undefined;
  let port = 0;
  const w: E2EWorld = {
    reader: slot!.reader,
    bankUrl: '',
    loadUrl: '',
    loadProc: () => loadProc,
    emulatorProc: () => emu,
    async restartEmulator(extra = []) {
      const exit = await emu.stop('SIGTERM');
      if (exit.code !== 0) throw new Error(`emulate exited with ${exit.code ?? exit.signal}: ${emu.stderr}`);
      emu = await startEmulator([...emuArgs, ...extra], [slot!.reader]);
      return emu;
    },
    async startLoad(crashAt) {
      loadProc = purselab(['serve', 'load', '--config', 'fixtures/load/demo-load.json', '--hsm', spec, '--port', String(port), '--db', join(dir, 'load.db'), '--log-level', 'warn'], {
        env: { ...env, ...(crashAt ? { PURSELAB_LOAD_CRASH_AT: crashAt } : { PURSELAB_LOAD_CRASH_AT: '' }) },
      });
      w.loadUrl = await waitUrl(loadProc, 'load server');
      port = Number(new URL(w.loadUrl).port);
    },
    async stopLoad(signal = 'SIGTERM') {
      await loadProc?.stop(signal);
      loadProc = undefined;
    },
    async load(args) {
      const r = await runCli(['load', w.bankUrl, '--reader', w.reader, '--json', ...ALICE, ...args], { timeoutMs: 60_000 });
      let json: Record<string, unknown> = {};
      try {
        json = JSON.parse(r.stdout) as Record<string, unknown>;
      } catch {
        json = { unparsed: r.stdout };
      }
      return { code: r.code, json, stderr: r.stderr };
    },
    async totals() {
      const db = new Database(join(dir, 'bank.db'), { readonly: true, fileMustExist: true });
      try {
        const c = db.prepare(`SELECT COALESCE(SUM(balance), 0) AS s FROM bank_accounts WHERE kind = 'customer'`).get() as { s: number };
        const f = db.prepare(`SELECT COALESCE(SUM(balance), 0) AS s FROM bank_accounts WHERE kind = 'float'`).get() as { s: number };
        const holds = Object.fromEntries((db.prepare('SELECT state, COUNT(*) AS n FROM bank_holds GROUP BY state').all() as { state: string; n: number }[]).map((r) => [r.state, r.n]));
        const settlements = readSettlementTotals(join(dir, 'load.db'));
        const ch = await openPcscChannel(slot!.reader);
        let card: number;
        try {
          card = (await readPurse(ch)).balance;
        } finally {
          await ch.close();
        }
        const t = ledgerTotals({ customers: c.s, float: f.s, card, settlements, bankId: BANK_CONFIG.bankId, currency: BANK_CONFIG.currency, held: holds.held ?? 0 });
        return { ...t, captured: holds.captured ?? 0, released: holds.released ?? 0 };
      } finally {
        db.close();
      }
    },
    async imageBalance() {
      const ch = new EmulatorChannel(loadCardImage(cardImg));
      try {
        return (await readPurse(ch)).balance;
      } finally {
        await ch.close();
      }
    },
    async holds() {
      const db = new Database(join(dir, 'bank.db'), { readonly: true, fileMustExist: true });
      try {
        const rows = db.prepare('SELECT txn_id, state, reason FROM bank_holds ORDER BY created_at').all() as { txn_id: string; state: string; reason: string | null }[];
        return new Map(rows.map((r) => [r.txn_id, { state: r.state, reason: r.reason }]));
      } finally {
        db.close();
      }
    },
    async close() {
      await loadProc?.stop('SIGKILL');
      await bank.stop('SIGTERM');
      await emu.stop();
      await sim?.stop('SIGKILL');
      await pty?.kill();
      tokens?.remove();
      tmp.remove();
    },
  };
  await w.startLoad();
  const bank = purselab(['serve', 'bank', '--config', 'fixtures/bank/demo-bank.json', '--port', '0', '--db', join(dir, 'bank.db'), '--load-server', w.loadUrl, '--log-level', 'warn']);
  w.bankUrl = await waitUrl(bank, 'bank server');
  return w;
}
