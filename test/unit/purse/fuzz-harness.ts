// Fuzz harness (used by fuzz.test.ts; run one seed by hand with
//   npx tsx -e "import('./test/unit/purse/fuzz-harness.ts').then(m => m.runFuzz(0x5eed0001, 60000, 'points')).then(console.log)"):
// seeded random and mutated APDUs to the purse applet through EmulatorChannel.transmitRaw (the same
// CardChannel as PC/SC, raw bytes so that malformed APDUs reach the card). Each seed is reproducible (the seed is
// in the test name; a failure prints the iteration and the APDU). Invariants after every APDU:
//   - no exception escapes the applet (no applet-exception / invalid-status-word / os-error event, never 6F00);
//   - the SW is one of the purse's or the card OS's status words;
//   - the persistent state changes only for a command equal (header + data) to a genuine one the harness made
//     with the right key (a valid MAC), or, for VERIFY, only the PIN try counter;
//   - the counter never moves by more than one, and value never moves without it.
// Genuine commands (valid S2 / MAC for the card's current session) are mixed in, so the mutations hit the deep
// paths (MAC verification, value checks, commits) and not only the header checks.

import { parseCommand, encodeCommand, command, type CommandApdu } from '../../../src/apdu/command.ts';
import { issuePurseCard } from '../../../card-applet-sim/applets/purse/issuing.ts';
import type { CardEvent } from '../../../card-applet-sim/index.ts';
import { A, KEYS, M, PIN, POINTS, PROFILES, attach, hex, prng, snapshot, variant, type TestCard } from './helpers.ts';

const PURSE_SWS = new Set([
  0x9000, 0x6700, 0x6982, 0x6983, 0x6985, 0x6a80, 0x6a86, 0x6a88, 0x6d00, 0x6e00,
  0x9401, 0x9402, 0x9403, 0x9404, 0x9405, 0x9406, 0x9407, 0x9408,
]);
/** Answers of the card OS itself (docs/card-os.md): chaining, channels, SELECT, GET RESPONSE. */
const OS_SWS = new Set([0x6881, 0x6883, 0x6884, 0x6a82, 0x6999]);
const validSw = (sw: number): boolean => PURSE_SWS.has(sw) || OS_SWS.has(sw) || (sw & 0xfff0) === 0x63c0 || sw >> 8 === 0x61 || sw >> 8 === 0x6c;

const INS = [0x20, 0x40, 0x42, 0x50, 0x54, 0x58, 0x5c, 0x84, 0xa4, 0xc0, 0x70, 0xca, 0x00, 0xff];
const CLAS = [0x00, 0x80, 0x84, 0x90, 0x81, 0x0c, 0x10, 0xa0, 0xff, 0x8c, 0xe0];

interface Generated {
  apdu: Buffer;
  /** The genuine command this APDU was made from (a valid MAC), if any. */
  genuine?: CommandApdu;
}

class Fuzzer {
  readonly rng;
  /** Latest session material seen in the card's answers (what a real host would have). */
  private startup: { p1: number; data: A.StartupData } | undefined;
  private loadSession: { p1: number; p2: number; cmd: A.InitLoadCommand; res: A.InitLoadResponse } | undefined;
  private challenge: Buffer | undefined;
  stats = { apdus: 0, genuine: 0, mutated: 0, random: 0, changes: 0, ok: 0, sws: new Map<number, number>() };

  constructor(
    readonly seed: number,
    readonly tc: TestCard,
  ) {
    this.rng = prng(seed);
  }

  private get pin(): string | undefined {
    return this.tc.applet.params.pin?.pin;
  }

  // ---- genuine commands for the current state (the PSAM / issuer roles, with the right keys)

  private date(): string {
    return this.rng.next() < 0.9 ? '20260115' : this.rng.pick(['20281231', '20290101', '20991231', '20000229']);
  }

  private amount(): number {
    const r = this.rng.next();
    return r < 0.1 ? 0 : r < 0.8 ? 1 + this.rng.int(2000) : this.rng.int(0x7fffffff);
  }

  /** A genuine command, and (mostly, for the MACed follow-ups) the genuine opener of its session to send first. */
  plan(): { opener?: CommandApdu; make: () => CommandApdu } {
    const r = this.rng;
    const withOpener = r.next() < 0.85;
    const k = r.int(10);
    const points = this.tc.applet.params.points !== undefined && r.next() < 0.3;
    if (k === 2 || k === 3) {
      return { ...(withOpener ? { opener: command(0x80, A.IepIns.INITIALIZE_FOR_PURCHASE, points ? 1 : 0, 0, undefined, 256) } : {}), make: () => this.genuine(k) };
    }
    if (k === 6 || k === 7) {
      return { ...(withOpener ? { opener: this.genuine(4, { points, enquiry: r.next() < 0.1 }) } : {}), make: () => this.genuine(k) };
    }
    if (k === 8) return { ...(withOpener ? { opener: command(0x00, A.IepIns.GET_CHALLENGE, 0, 0, undefined, 8) } : {}), make: () => this.genuine(k) };
    return { make: () => this.genuine(k) };
  }

  genuine(k: number, opts: { points?: boolean; enquiry?: boolean } = {}): CommandApdu {
    const { applet } = this.tc;
    const r = this.rng;
    switch (k) {
      case 0:
        return command(0x80, A.IepIns.READ_PURSE_DATA, 0, 0, undefined, 256);
      case 1:
        return command(0x80, A.IepIns.INITIALIZE_FOR_PURCHASE, r.next() < 0.7 ? 0 : 1, 0, undefined, 256);
      case 2:
      case 3: {
        // DEBIT with a valid S2 for the last start-up data (a stale one if the session is gone)
        const su = this.startup?.data;
        const p1 = this.startup?.p1 ?? 0;
        const txType = p1 === 1 ? 3 : r.next() < 0.7 ? 1 : 2;
        const points = applet.params.points;
        const [currency, exponent] =
          txType === 2 ? [M.AUTH_CURRENCY, 0] : txType === 3 ? [points?.programme ?? 7001, 0] : [applet.currency.get(), applet.exponent.get()];
        const f: M.PurchaseS2Fields = {
          txType,
          alg: applet.alg,
          keyVersion: applet.params.keys.purchase.version,
          cardId: applet.cardId,
          counter: su?.counter ?? applet.counter.get(),
          psamId: '9990029000000001',
          psamTxn: r.int(100000),
          amount:
            txType === 2
              ? r.next() < 0.9 ? 0 : 1
              : r.next() < 0.1
                ? (txType === 3 ? applet.pointsBalance.get() : applet.balance.get()) + 1 + r.int(100) // more than the purse holds
                : this.amount() % 3000,
          currency: r.next() < 0.9 ? currency : 840,
          exponent,
          date: this.date(),
          time: '120000',
          location: Buffer.from('FUZZLOC1'),
        };
        const s2 = M.purchaseS2(this.tc.kP, f);
        const { txType: _t, alg: _a, keyVersion: _k, cardId: _c, counter: _n, ...rest } = f;
        return command(0x80, A.IepIns.DEBIT, txType, 0, A.encodeDebitCommand({ ...rest, s2 }), 256);
      }
      case 4:
      case 5: {
        const points = opts.points ?? (r.next() < 0.3 && applet.params.points !== undefined);
        const enquiry = opts.enquiry ?? r.next() < 0.2;
        const cmd: A.InitLoadCommand = {
          amount: enquiry ? 0 : this.amount() % 20000,
          currency: points ? applet.params.points!.programme : applet.currency.get(),
          exponent: points ? 0 : applet.exponent.get(),
          date: this.date(),
          time: '091500',
          loadTxnId: r.bytes(8),
        };
        return command(0x80, A.IepIns.INITIALIZE_FOR_LOAD, points ? 1 : 0, enquiry ? 1 : 0, A.encodeInitLoadCommand(cmd), 256);
      }
      case 6:
      case 7: {
        // CREDIT with the issuer's S2 for the last load session (a stale or random one otherwise)
        const s = this.loadSession;
        if (!s) return command(0x80, A.IepIns.CREDIT_FOR_LOAD, 0, 0, r.bytes(8), 256);
        const f: M.LoadS1Fields = {
          loadType: s.p1 === 1 ? M.LoadType.POINTS_LOAD : M.LoadType.LOAD,
          alg: s.res.alg, keyVersion: s.res.keyVersion, cardId: s.res.cardId, counter: s.res.counter, amount: s.cmd.amount,
          currency: s.res.currency, exponent: s.res.exponent, balance: s.res.balance, maxBalance: s.res.maxBalance, expiry: s.res.expiry,
          date: s.cmd.date, time: s.cmd.time, loadTxnId: s.cmd.loadTxnId, cardChallenge: s.res.cardChallenge,
          lastLoadTxnId: s.res.lastLoadTxnId, lastLoadCounter: s.res.lastLoadCounter, lastLoadAmount: s.res.lastLoadAmount,
        };
        return command(0x80, A.IepIns.CREDIT_FOR_LOAD, s.p1, 0, M.loadS2(this.tc.kL, M.loadS2FieldsFromS1(f)), 256);
      }
      case 8: {
        if (!this.challenge) return command(0x00, A.IepIns.GET_CHALLENGE, 0, 0, undefined, 8);
        const flags = r.pick([0x01, 0x02, 0x08, 0x10, 0x20, 0x20, 0x03, 0x04, 0x30, 0x40, 0x00]);
        const f: M.UpdateParametersFields = {
          alg: applet.alg, keyVersion: applet.params.keys.update.version, cardId: applet.cardId, counter: applet.counter.get(),
          challenge: this.challenge, flags, maxBalance: 40000 + r.int(100000), expiry: r.pick(['20281231', '20301231', '20260301']),
          currency: 978, exponent: 2,
        };
        const mac = M.updateParametersMac(this.tc.kU, f);
        return command(0x80, A.IepIns.UPDATE_PARAMETERS, 0, 0, A.encodeUpdateCommand({ ...f, mac }));
      }
      default: {
        const pin = this.pin ?? '1234';
        const which = r.int(4);
        const data = which === 0 ? undefined : which === 1 ? A.encodePinBlock(pin) : A.encodePinBlock(r.next() < 0.5 ? '0000' : pin + '9');
        return command(0x00, A.IepIns.VERIFY, 0, 0x80, data);
      }
    }
  }

  // ---- mutations

  mutate(apdu: Buffer): Buffer {
    const r = this.rng;
    let b: Buffer = Buffer.from(apdu);
    const n = 1 + (r.next() < 0.3 ? r.int(3) : 0);
    for (let i = 0; i < n; i++) {
      switch (r.int(11)) {
        case 0: // flip a bit
          if (b.length > 0) b[r.int(b.length)]! ^= 1 << r.int(8);
          break;
        case 1: // replace a byte
          if (b.length > 0) b[r.int(b.length)] = r.int(256);
          break;
        case 2: // truncate
          b = b.subarray(0, r.int(b.length + 1));
          break;
        case 3: // extend
          b = Buffer.concat([b, r.bytes(1 + r.int(8))]);
          break;
        case 4: // CLA
          if (b.length > 0) b[0] = r.next() < 0.7 ? r.pick(CLAS) : r.int(256);
          break;
        case 5: // INS
          if (b.length > 1) b[1] = r.next() < 0.7 ? r.pick(INS) : r.int(256);
          break;
        case 6: // P1 / P2
          if (b.length > 3) b[2 + r.int(2)] = r.next() < 0.5 ? r.int(4) : r.int(256);
          break;
        case 7: // Lc
          if (b.length > 4) b[4] = r.next() < 0.5 ? (b[4]! + r.pick([-1, 1, 2, -2])) & 0xff : r.int(256);
          break;
        case 8: // Le: remove, add or change
          if (b.length > 4) {
            const c = r.int(3);
            if (c === 0) b = b.subarray(0, b.length - 1);
            else if (c === 1) b = Buffer.concat([b, Buffer.from([r.int(256)])]);
            else b[b.length - 1] = r.int(256);
          }
          break;
        case 9: // data bytes only (keep the header and lengths)
          if (b.length > 5) b[5 + r.int(b.length - 5)]! ^= 1 + r.int(255);
          break;
        default: // extended-length re-encoding of the same command (valid, or with a broken length)
          try {
            const c = parseCommand(b);
            b = encodeCommand(c, { extended: true });
            if (r.next() < 0.5 && b.length > 6) b[5 + r.int(2)]! ^= 1 << r.int(8);
          } catch {
            /* not parseable: leave it */
          }
      }
    }
    return b;
  }

  /** The APDUs of one step: purely random bytes, or [a genuine opener,] a genuine command, mutated or not. */
  *steps(): Generator<Generated, void, void> {
    const r = this.rng.next();
    if (r < 0.12) {
      this.stats.random++;
      const len = this.rng.next() < 0.5 ? this.rng.int(12) : this.rng.int(300);
      const b = this.rng.bytes(len);
      if (len > 0 && this.rng.next() < 0.5) b[0] = this.rng.pick([0x00, 0x80]);
      yield { apdu: b };
      return;
    }
    const p = this.plan();
    if (p.opener) yield { apdu: encodeCommand(p.opener), genuine: p.opener };
    const g = p.make(); // after the opener's answer was observed
    const enc = encodeCommand(g);
    if (r < 0.4) {
      this.stats.genuine++;
      yield { apdu: enc, genuine: g };
      return;
    }
    this.stats.mutated++;
    yield { apdu: this.mutate(enc), genuine: g };
  }

  /** Record the session material of a successful answer (what a host would keep). */
  observe(apdu: Buffer, resp: Buffer): void {
    const sw = resp.readUInt16BE(resp.length - 2);
    if (sw !== 0x9000) return;
    const data = resp.subarray(0, resp.length - 2);
    let c: CommandApdu;
    try {
      c = parseCommand(apdu);
    } catch {
      return;
    }
    if (c.ins === A.IepIns.INITIALIZE_FOR_PURCHASE && data.length === 27) this.startup = { p1: c.p1, data: A.decodeStartupData(data) };
    if (c.ins === A.IepIns.INITIALIZE_FOR_LOAD && data.length === 61 && c.data.length === 22) {
      this.loadSession = { p1: c.p1, p2: c.p2, cmd: A.decodeInitLoadCommand(c.data), res: A.decodeInitLoadResponse(data) };
    }
    if (c.ins === A.IepIns.GET_CHALLENGE && data.length === 8) this.challenge = Buffer.from(data);
  }
}

/** Same header and data as the genuine command (Le and the length encoding may differ): the MAC is valid. */
function sameCommand(apdu: Buffer, genuine: CommandApdu | undefined): boolean {
  if (!genuine) return false;
  try {
    const c = parseCommand(apdu);
    return c.cla === genuine.cla && c.ins === genuine.ins && c.p1 === genuine.p1 && c.p2 === genuine.p2 && c.data.equals(genuine.data);
  } catch {
    return false;
  }
}

type State = Record<string, { n?: number; b?: string }>;

export type FuzzProfile = 'points' | 'pin-points' | 't0-plain';

export async function runFuzz(seed: number, count: number, profileName: FuzzProfile): Promise<Fuzzer['stats']> {
  const bad: CardEvent[] = [];
  const profile =
    profileName === 'points'
      ? variant(PROFILES.des, { points: { ...POINTS, balance: 5000 } })
      : profileName === 'pin-points'
        ? variant(PROFILES.aes, { points: { ...POINTS, balance: 5000 }, pin: PIN })
        : PROFILES.des;
  const { card } = issuePurseCard(profile, KEYS, {
    balance: 20000,
    card: {
      protocol: profileName === 't0-plain' ? 'T=0' : 'T=1',
      serial: Buffer.alloc(8, 0x24),
      randomSeed: `purse fuzz ${seed}`,
      onEvent: (e) => {
        if (e.type === 'applet-exception' || e.type === 'invalid-status-word' || e.type === 'os-error' || e.type === 'hook-exception') bad.push(e);
      },
    },
  });
  const tc = await attach(card);
  const fz = new Fuzzer(seed, tc);
  let before = snapshot(tc);
  let writes = card.persistentWrites;
  let n = 0;

  /** Send one APDU and check every invariant. */
  const send = async (apdu: Buffer, genuine: CommandApdu | undefined): Promise<void> => {
    n++;
    const where = `seed 0x${seed.toString(16)} APDU #${n}: ${hex(apdu)}`;
    const resp = await tc.ch.transmitRaw(apdu);
    fz.stats.apdus++;
    if (resp.length < 2) throw new Error(`${where}: no status word`);
    const sw = resp.readUInt16BE(resp.length - 2);
    fz.stats.sws.set(sw, (fz.stats.sws.get(sw) ?? 0) + 1);
    if (sw === 0x6f00 || !validSw(sw)) throw new Error(`${where}: SW ${sw.toString(16)}`);
    if (bad.length > 0) throw new Error(`${where}: ${bad[0]!.type}: ${bad[0]!.message}`);
    fz.observe(apdu, resp);

    if (card.persistentWrites === writes) return; // no persistent write point at all: nothing changed
    writes = card.persistentWrites;
    const after = snapshot(tc);
    if (after === before) return;
    fz.stats.changes++;
    const a = JSON.parse(before) as State;
    const b = JSON.parse(after) as State;
    const changed = Object.keys(b).filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]));
    const isVerify = apdu.length >= 2 && apdu[0] === 0x00 && apdu[1] === A.IepIns.VERIFY;
    const pinOnly = changed.length === 1 && changed[0] === 'pintries';
    if (!(isVerify && pinOnly) && !sameCommand(apdu, genuine)) throw new Error(`${where}: state changed without a valid MAC (${changed.join(', ')})`);
    const dCtr = b.ctr!.n! - a.ctr!.n!;
    if (dCtr !== 0 && dCtr !== 1) throw new Error(`${where}: counter moved by ${dCtr}`);
    if ((a.bal!.n !== b.bal!.n || a.ptbal!.n !== b.ptbal!.n) && dCtr !== 1) throw new Error(`${where}: value moved without the counter`);
    if (b.bal!.n! > b.maxbal!.n! || b.ptbal!.n! > (tc.applet.params.points?.max ?? 0)) throw new Error(`${where}: balance above the maximum`);
    before = after;
  };

  // Most APDUs end in an IsoException; capturing a stack trace for each would dominate the run time.
  const stackTraceLimit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    for (let step = 1; n < count; step++) {
      if (step % 997 === 0) {
        await tc.ch.reset(); // a power cycle now and then clears sessions and the PIN state
        await tc.host.select();
      }
      for (const { apdu, genuine } of fz.steps()) {
        if (n >= count) break;
        await send(apdu, genuine);
      }
    }
  } finally {
    Error.stackTraceLimit = stackTraceLimit;
  }
  if (card.lastException !== undefined) throw new Error(`seed 0x${seed.toString(16)}: card.lastException is set: ${String(card.lastException)}`);
  return fz.stats;
}

