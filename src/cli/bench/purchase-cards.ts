// The two emulated cards of `purselab bench purchase` (a purse card with room for many purchases and a PSAM with
// the largest batch), and, for the measurement over pcscd + vpcd, those cards plugged into vpcd slots with a
// timer around SimulatedCard.transmit and a do-nothing "floor" mode. startBenchCards plugs them in on the
// bench's own thread (the default of `bench purchase`, PURSELAB_BENCH_CARDS_THREAD=main) or in a worker thread
// of their own (=worker), as `purselab emulate` is a process of its own; the worker measures slower, since a
// thread woken for each APDU starts colder still (docs/purse-applet.md). The timer, the APDU count, the last
// commands' times and the floor switch live in shared memory (card-timer.ts), so reading them costs the
// measured thread nothing.

import { fileURLToPath } from 'node:url';
import { isMainThread, workerData } from 'node:worker_threads';
import { issuePsamCard, loadPsamProfile } from '../../../card-applet-sim/applets/psam/issuing.ts';
import { issuePurseCard, loadPurseProfile } from '../../../card-applet-sim/applets/purse/issuing.ts';
import type { SimulatedCard } from '../../../card-applet-sim/os/card.ts';
import { VpcdConnector, type VpcdCard } from '../../../card-applet-sim/vpcd/connector.ts';
import { loadIssuerKeySet, type IssuerKeySet } from '../../crypto/key-set.ts';
import type { CardRole } from './card-commands.ts';
import { CardTimer, type TimedCommand } from './card-timer.ts';
import { serveBenchWorker, startBenchWorker } from './payment-server-worker.ts';

export type CardSuite = '3des' | 'aes';
export interface VpcdSlot {
  readonly reader: string;
  readonly port: number;
}

const root = (rel: string) => fileURLToPath(new URL(`../../../${rel}`, import.meta.url));

export function benchKeys(): IssuerKeySet {
  return loadIssuerKeySet(root('fixtures/keys/demo-issuer.json'));
}

/** A purse card with room for many purchases and loads, and a PSAM with the largest batch. */
export function benchWorld(k: IssuerKeySet, suite: CardSuite) {
  const profile = { ...loadPurseProfile(root(`fixtures/profiles/demo-${suite}.json`)), maxBalance: 0xfffffff0 };
  const { card } = issuePurseCard(profile, k, { balance: 0x7fffffff, card: { serial: Buffer.alloc(8, 0x42) } });
  const psamProfile = { ...loadPsamProfile(root('fixtures/profiles/psam-3des.json')), capacity: 4096 };
  const { card: psam } = issuePsamCard(psamProfile, k, { card: { serial: Buffer.alloc(8, 0x50) } });
  return { card, psam, psamId: psamProfile.psamId };
}

interface Recorded {
  readonly who: CardRole;
  readonly cmd: Buffer;
  readonly rspLength: number;
}

/**
 * The floor's commands: the purchase's own APDUs (same sizes, same order, same readers), with P2 replaced
 * by the command's index on its card so the stand-in knows which answer length to give.
 */
function floorSequence(rec: readonly Recorded[]): { seq: [CardRole, Buffer][]; lengths: [number[], number[]] } {
  const lengths: [number[], number[]] = [[], []];
  const seq = rec.map(({ who, cmd, rspLength }) => {
    const c = Buffer.from(cmd);
    c[3] = lengths[who].length;
    lengths[who].push(rspLength);
    return [who, c] as [CardRole, Buffer];
  });
  return { seq, lengths };
}

const SW_OK = Buffer.from([0x90, 0x00]);

/**
 * What vpcd talks to: the emulated card, timed, or (in floor mode) a do-nothing stand-in that answers each
 * command at once with zero bytes of the length the card answered the same command with. Switching modes
 * keeps the reader, the card's ATR and the pcscd connection, so purchases and floor alternate under the same
 * momentary load. The timer covers SimulatedCard.transmit and nothing else: the card OS (APDU parsing,
 * dispatch, response shaping, transactions) and the applet with its crypto; vpcd framing, sockets, pcscd and
 * the host run outside it.
 */
class TimedCard implements VpcdCard {
  recording: Recorded[] | undefined;
  private readonly stand = new Map<number, Buffer>();
  constructor(
    private readonly card: SimulatedCard,
    private readonly who: CardRole,
    private readonly timer: CardTimer,
  ) {}
  get atr() {
    return this.card.atr;
  }
  powerOn() {
    return this.card.powerOn();
  }
  powerOff() {
    this.card.powerOff();
  }
  reset() {
    return this.card.reset();
  }
  transmit(apdu: Buffer): Buffer {
    if (this.timer.floor) return this.stand.get(apdu.length > 3 ? apdu[3]! : 0) ?? SW_OK;
    const t0 = process.hrtime.bigint();
    const r = this.card.transmit(apdu);
    this.timer.record(this.who, apdu, process.hrtime.bigint() - t0);
    this.recording?.push({ who: this.who, cmd: Buffer.from(apdu), rspLength: r.length });
    return r;
  }
  prepareStandIns(lengths: readonly number[]): void {
    lengths.forEach((n, i) => {
      const b = Buffer.alloc(Math.max(2, n));
      b[b.length - 2] = 0x90;
      this.stand.set(i, b);
    });
  }
}

/** The cards as the host side sees them: counters, the floor switch, recording a purchase, unplugging. */
export interface BenchCards {
  /** Where the cards run: 'worker' (a thread of their own) or 'main' (the bench's own thread). */
  readonly thread: 'worker' | 'main';
  /** Nanoseconds inside the two cards' transmit so far. */
  ns(): bigint;
  /** APDUs the two cards answered so far (not counting the floor's). */
  apdus(): number;
  /**
   * The commands the cards answered from APDU number `from` (a value of apdus()) to now, each with its time
   * inside its card; undefined when that is more than the ring keeps.
   */
  commandsSince(from: number): TimedCommand[] | undefined;
  setFloor(on: boolean): void;
  startRecording(): Promise<void>;
  /** Stop recording; the stand-ins are prepared from it; returns the floor's command sequence. */
  stopRecording(): Promise<[CardRole, Buffer][]>;
  /** Stop both vpcd connectors (the readers then report no card). */
  unplug(): Promise<void>;
}

/** The card side: both cards on vpcd, in the calling thread. */
function plugCards(suite: CardSuite, slots: readonly VpcdSlot[], sab: SharedArrayBuffer) {
  const timer = new CardTimer(sab);
  const w = benchWorld(benchKeys(), suite);
  const cards = [new TimedCard(w.card, 0, timer), new TimedCard(w.psam, 1, timer)] as const;
  const cons = slots.map((s, i) => new VpcdConnector({ host: '127.0.0.1', port: s.port, card: cards[i]!, log: () => undefined }).start());
  let rec: Recorded[] = [];
  return {
    startRecording() {
      rec = [];
      for (const c of cards) c.recording = rec;
    },
    stopRecording(): [CardRole, Buffer][] {
      for (const c of cards) c.recording = undefined;
      const { seq, lengths } = floorSequence(rec);
      cards.forEach((c, i) => c.prepareStandIns(lengths[i]!));
      return seq;
    },
    async unplug() {
      await Promise.all(cons.map((c) => c.stop()));
    },
  };
}

interface CardsWorkerSpec {
  readonly suite: CardSuite;
  readonly slots: readonly VpcdSlot[];
  readonly sab: SharedArrayBuffer;
}

/** Plug the bench's two cards into the two vpcd slots (purse card first, then PSAM), in a worker thread or in this one. */
export async function startBenchCards(suite: CardSuite, slots: readonly VpcdSlot[], thread: 'worker' | 'main'): Promise<BenchCards> {
  const timer = new CardTimer();
  const sab = timer.sab;
  const common = {
    thread,
    ns: () => timer.ns(),
    apdus: () => timer.apdus(),
    commandsSince: (from: number) => timer.commandsSince(from),
    setFloor: (on: boolean) => void (timer.floor = on),
  };
  if (thread === 'main') {
    const c = plugCards(suite, slots, sab);
    return { ...common, startRecording: async () => c.startRecording(), stopRecording: async () => c.stopRecording(), unplug: () => c.unplug() };
  }
  const w = await startBenchWorker<true>(import.meta.url, { benchCards: { suite, slots, sab } satisfies CardsWorkerSpec });
  return {
    ...common,
    startRecording: () => w.call('startRecording'),
    async stopRecording() {
      const seq = await w.call<[CardRole, Uint8Array][]>('stopRecording');
      return seq.map(([who, u]) => [who, Buffer.from(u.buffer, u.byteOffset, u.byteLength)]);
    },
    async unplug() {
      await w.call('unplug');
      await w.stop();
    },
  };
}

if (!isMainThread && (workerData as { benchCards?: CardsWorkerSpec } | undefined)?.benchCards) {
  const spec = (workerData as { benchCards: CardsWorkerSpec }).benchCards;
  const c = plugCards(spec.suite, spec.slots, spec.sab);
  serveBenchWorker(true, { startRecording: () => c.startRecording(), stopRecording: () => c.stopRecording(), unplug: () => c.unplug() });
}
