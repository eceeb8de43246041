// Helpers for the client and merchant suites (and the payment e2e rig suite): a merchant configuration made
// in code, a card channel that alters what the card says (a forged S3) or refuses a command in its place,
// and a result made the way a payment server seals it.

import type { CommandApdu } from '../../../src/apdu/command.ts';
import type { ResponseApdu } from '../../../src/apdu/response.ts';
import { IepIns } from '../../../src/crypto/purse-apdu.ts';
import { parseMerchantConfig, type MerchantConfig } from '../../../src/server/merchant/config.ts';
import type { PaymentVariant } from '../../../src/protocol/payment-messages.ts';
import type { CardChannel, TransmitOptions } from '../../../src/transport/channel.ts';

/** TEST key 402 of the demo merchant (fixtures/merchant/merchant.json). */
export const SHARED_KEY_HEX = '404142434445464748494A4B4C4D4E4F';
export const MERCHANT_ID = 'DEMO-SHOP-01';

export const CATALOGUE = [
  { sku: 'ebook-ts', name: 'E-book', price: 420, goods: 'download token EBOOK' },
  { sku: 'song-01', name: 'Song', price: 99, goods: 'download token SONG' },
  { sku: 'big-box', name: 'Archive', price: 9900, goods: 'subscription ARCH' },
];

export function merchantConfig(o: { variant?: PaymentVariant; encrypted?: boolean; paymentServer?: string; merchantId?: string; sharedKey?: string } = {}): MerchantConfig {
  return parseMerchantConfig(
    {
      merchantId: o.merchantId ?? MERCHANT_ID,
      name: 'test shop',
      sharedKey: o.sharedKey ?? SHARED_KEY_HEX,
      variant: o.variant ?? 'standard',
      encrypted: o.encrypted ?? false,
      paymentServer: o.paymentServer ?? 'http://127.0.0.1:9',
      currency: 978,
      exponent: 2,
      catalogue: CATALOGUE,
      benefits: [{ id: 'lounge', name: 'Lounge pass', goods: 'lounge pass L-1' }],
    },
    'test config',
    '.',
  );
}

/** A CardChannel in front of another, that can answer a command in the card's place or alter the card's answer. */
export class InterposedChannel implements CardChannel {
  /** Called for every command (and awaited); return a response to answer in the card's place (the card never sees it). */
  before: ((c: CommandApdu) => ResponseApdu | undefined | Promise<ResponseApdu | undefined>) | undefined;
  /** Called with every answer; return another to alter it. */
  after: ((c: CommandApdu, r: ResponseApdu) => ResponseApdu) | undefined;
  readonly seen: CommandApdu[] = [];

  constructor(readonly inner: CardChannel) {}

  get readerName() {
    return this.inner.readerName;
  }
  get atr() {
    return this.inner.atr;
  }
  get protocol() {
    return this.inner.protocol;
  }
  async transmit(c: CommandApdu, options?: TransmitOptions): Promise<ResponseApdu> {
    this.seen.push(c);
    const instead = await this.before?.(c);
    if (instead) return instead;
    const r = await this.inner.transmit(c, options);
    return this.after ? this.after(c, r) : r;
  }
  transmitRaw(bytes: Uint8Array, options?: { timeoutMs?: number }) {
    return this.inner.transmitRaw(bytes, options);
  }
  reset(options?: { cold?: boolean }) {
    return this.inner.reset(options);
  }
  close() {
    return this.inner.close();
  }

  /** The DEBIT commands the card was sent. */
  debits(): CommandApdu[] {
    return this.seen.filter((c) => c.cla === 0x80 && c.ins === IepIns.DEBIT);
  }
}

/** Flip a bit of S3 (the last 8 bytes) in the card's DEBIT answer: a forged card response. */
export function forgeS3(c: CommandApdu, r: ResponseApdu): ResponseApdu {
  if (c.ins !== IepIns.DEBIT || r.sw !== 0x9000) return r;
  const data = Buffer.from(r.data);
  data[data.length - 1]! ^= 0x01;
  return { data, sw: r.sw };
}

/** Answer DEBIT with `sw` in the card's place (the card is never asked). */
export const refuseDebit = (sw: number) => (c: CommandApdu): ResponseApdu | undefined => (c.ins === IepIns.DEBIT ? { data: Buffer.alloc(0), sw } : undefined);
