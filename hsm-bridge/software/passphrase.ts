// Where the software backend's master passphrase comes from: given by the caller, an environment variable
// (PURSELAB_HSM_MASTER by default), or a prompt with echo off when stdin is a terminal.

import { HsmStoreError } from '../errors.ts';

export const DEFAULT_MASTER_ENV = 'PURSELAB_HSM_MASTER';

export type PassphraseSource = string | (() => string | Promise<string>);

export interface PassphraseOptions {
  readonly passphrase?: PassphraseSource;
  readonly passphraseEnv?: string;
  /** Prompt on the terminal when nothing else gives a passphrase (default: when stdin is a TTY). */
  readonly prompt?: boolean;
}

export async function obtainPassphrase(opts: PassphraseOptions, path: string, confirm: boolean): Promise<string> {
  let pass: string | undefined;
  if (typeof opts.passphrase === 'function') pass = await opts.passphrase();
  else if (typeof opts.passphrase === 'string') pass = opts.passphrase;
  else {
    const env = opts.passphraseEnv ?? DEFAULT_MASTER_ENV;
    pass = process.env[env];
    if (pass === undefined) {
      if (opts.prompt ?? process.stdin.isTTY === true) {
        pass = await promptHidden(`Master passphrase for key store ${path}: `);
        if (confirm && (await promptHidden('Repeat it: ')) !== pass) {
          throw new HsmStoreError('HSM_MASTER_MISSING', path, 'the two passphrases differ');
        }
      } else {
        throw new HsmStoreError('HSM_MASTER_MISSING', path, `no master passphrase for key store ${path}: set ${env} (or run on a terminal to be asked)`);
      }
    }
  }
  if (!pass) throw new HsmStoreError('HSM_MASTER_MISSING', path, `empty master passphrase for key store ${path}`);
  return pass;
}

/** Read one line from the terminal without echoing it. */
function promptHidden(question: string): Promise<string> {
  const stdin = process.stdin;
  process.stderr.write(question);
  return new Promise((resolve, reject) => {
    let line = '';
    const wasRaw = stdin.isRaw;
    stdin.setRawMode?.(true);
    stdin.resume();
    const done = (err?: Error): void => {
      stdin.removeListener('data', onData);
      stdin.setRawMode?.(wasRaw);
      stdin.pause();
      process.stderr.write('\n');
      if (err) reject(err);
      else resolve(line);
    };
    const onData = (chunk: Buffer): void => {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return done();
        if (ch === '\u0003') return done(new HsmStoreError('HSM_MASTER_MISSING', '', 'passphrase entry interrupted'));
        if (ch === '\u007f' || ch === '\b') line = line.slice(0, -1);
        else line += ch;
      }
    };
    stdin.on('data', onData);
  });
}
