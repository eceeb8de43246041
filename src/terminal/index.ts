// Host side of the purse (IEP) and PSAM protocols: plain async functions over CardChannel.

export * from './amount.ts';
export * from './errors.ts';
export * from './purse.ts';
export * from './psam.ts';
export * from './purchase.ts';
export * from './load.ts';
