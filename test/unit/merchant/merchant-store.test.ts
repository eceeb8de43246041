// The merchant store on a SQLite file: an order reads back the same from this store (which keeps the orders it
// made) as from another instance on the same file (which reads the row), before and after its release or decline.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openMerchantStore, type StoredOrder } from '../../../src/server/merchant/store.ts';

const dir = mkdtempSync(join(tmpdir(), 'purselab-merchant-store-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const order = (txnId: string, extra: Partial<StoredOrder> = {}): Omit<StoredOrder, 'status' | 'declineReason'> => ({
  txnId,
  kind: 'purchase',
  amount: 420,
  currency: 978,
  exponent: 2,
  lines: [{ sku: 'ebook', name: 'E-book', quantity: 1, price: 420 }] as unknown as StoredOrder['lines'],
  benefit: undefined,
  description: '1 x E-book',
  issuedAt: '2026-11-21T08:00:00.000Z',
  expiresAt: '2026-11-21T08:10:00.000Z',
  tsk: undefined,
  ...extra,
});

describe('merchant store', () => {
  it('orders read the same from the store that made them and from the file, through release and decline', async () => {
    const path = join(dir, 'm.db');
    const store = openMerchantStore(path);
    await store.createOrder(order('T-PLAIN'));
    await store.createOrder(order('T-FIG9', { tsk: '00112233445566778899AABBCCDDEEFF' }));
    await store.createOrder(order('T-AUTH', { kind: 'authentication', amount: 0, benefit: 'lounge' }));
    const reader = openMerchantStore(path);
    for (const id of ['T-PLAIN', 'T-FIG9', 'T-AUTH']) {
      const mine = await store.getOrder(id);
      expect(mine).toEqual(await reader.getOrder(id));
      expect(mine?.status).toBe('pending');
    }
    expect(await store.getOrder('T-NONE')).toBeUndefined();

    await store.release({ txnId: 'T-PLAIN', paymentId: 'pay_1', status: 'paid', verifiedBy: 'psam', card: '999001******0001', goods: 'download token EBOOK', releasedAt: '2026-11-21T08:01:00.000Z' });
    await store.decline('T-FIG9', 'INSUFFICIENT_FUNDS');
    expect((await store.getOrder('T-PLAIN'))?.status).toBe('paid');
    expect(await store.getOrder('T-FIG9')).toMatchObject({ status: 'declined', declineReason: 'INSUFFICIENT_FUNDS' });
    for (const id of ['T-PLAIN', 'T-FIG9', 'T-AUTH']) expect(await store.getOrder(id)).toEqual(await reader.getOrder(id));
    // a released order is not declined afterwards
    await store.decline('T-PLAIN', 'S3_INVALID');
    expect((await store.getOrder('T-PLAIN'))?.status).toBe('paid');
    await reader.close();
    await store.close();
  });
});
