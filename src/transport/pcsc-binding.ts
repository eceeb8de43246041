// Lazy loading of the npm `pcsclite` binding (an optional dependency) and the slice of its API we use.
// The binding is loaded on first use only, so every command that does not touch PC/SC works on a
// machine without libpcsclite; the PC/SC commands then fail with one line naming what to install.

import type { EventEmitter } from 'node:events';
import { TransportError } from './errors.ts';

type Cb<T> = (err: Error | null | undefined, value: T) => void;

/** node-pcsclite's CardReader (one per reader name; status thread + card handle). */
export interface BindingReader extends EventEmitter {
  readonly name: string;
  connected: boolean;
  state?: number;
  readonly SCARD_SHARE_SHARED: number;
  readonly SCARD_SHARE_EXCLUSIVE: number;
  readonly SCARD_PROTOCOL_T0: number;
  readonly SCARD_PROTOCOL_T1: number;
  readonly SCARD_PROTOCOL_RAW: number;
  readonly SCARD_LEAVE_CARD: number;
  readonly SCARD_RESET_CARD: number;
  readonly SCARD_UNPOWER_CARD: number;
  connect(options: { share_mode?: number; protocol?: number }, cb: Cb<number>): void;
  disconnect(disposition: number, cb: (err: Error | null | undefined) => void): void;
  transmit(data: Buffer, resLen: number, protocol: number, cb: Cb<Buffer>): void;
  /** Stops the reader's status thread (joins it). */
  close(): void;
}

/** node-pcsclite's PCSCLite (one SCardContext + the PnP reader-list thread). */
export interface BindingContext extends EventEmitter {
  readers: Record<string, BindingReader>;
  start(cb: (err: Error | undefined, data: Buffer) => void): void;
  close(): void;
}

export type BindingFactory = () => BindingContext;

/** Debian packages that provide pcscd and libpcsclite. */
export const PCSC_PACKAGES = 'pcscd libpcsclite-dev';

let loading: Promise<BindingFactory> | undefined;

function loadError(e: unknown, moduleName: string): TransportError {
  const msg = (e as Error)?.message ?? String(e);
  const code = (e as NodeJS.ErrnoException)?.code;
  if ((code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && msg.includes(moduleName)) {
    return new TransportError(
      'PCSC_UNAVAILABLE',
      `the PC/SC binding '${moduleName}' is not installed: install the Debian packages ${PCSC_PACKAGES} (apt-get install ${PCSC_PACKAGES}), then npm install`,
      { cause: e },
    );
  }
  if (/libpcsclite/.test(msg)) {
    return new TransportError(
      'PCSC_UNAVAILABLE',
      `libpcsclite cannot be loaded (${msg.split('\n')[0]}): install the Debian packages ${PCSC_PACKAGES}, then npm rebuild pcsclite`,
      { cause: e },
    );
  }
  if (/bindings file/i.test(msg)) {
    return new TransportError(
      'PCSC_UNAVAILABLE',
      `the PC/SC binding '${moduleName}' is installed but not built: install the Debian packages ${PCSC_PACKAGES}, then npm rebuild pcsclite`,
      { cause: e },
    );
  }
  return new TransportError('PCSC_UNAVAILABLE', `the PC/SC binding '${moduleName}' failed to load: ${msg.split('\n')[0]}`, {
    cause: e,
  });
}

/**
 * Load the binding once. PURSELAB_PCSCLITE_MODULE overrides the module name (tests use it to check
 * the message a machine without the binding gets).
 */
export function loadPcsclite(): Promise<BindingFactory> {
  if (!loading) {
    const moduleName = process.env.PURSELAB_PCSCLITE_MODULE || 'pcsclite';
    loading = (async () => {
      try {
        const mod = (await import(moduleName)) as { default?: unknown };
        const factory = (mod.default ?? mod) as unknown;
        if (typeof factory !== 'function') throw new Error(`'${moduleName}' does not export the pcsclite factory`);
        return factory as BindingFactory;
      } catch (e) {
        throw e instanceof TransportError ? e : loadError(e, moduleName);
      }
    })();
    loading.catch(() => {
      loading = undefined; // a later call may retry (e.g. after npm install)
    });
  }
  return loading;
}
