// `purselab hsm-sim`: a payShield-style host-command HSM on a serial line (a real tty, e.g. one end of a socat
// pty pair) or on TCP, with its keys in a software key store under the simulator's own master passphrase.

import { scrypt } from 'node:crypto';
import { access } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULT_FIRMWARE, HsmSimulator, SerialSimLine, TcpSimServer, type LineTiming } from '../../../hsm-bridge/serial/simulator.ts';
import { INTER_CHAR_MAX_MS } from '../../../hsm-bridge/serial/framing.ts';
import { obtainPassphrase } from '../../../hsm-bridge/software/passphrase.ts';
import { SoftwareHsm } from '../../../hsm-bridge/software/software-hsm.ts';
import { parseCommandArgs, UsageError, type CliCommand } from '../command.ts';

export const SIM_MASTER_ENV = 'PURSELAB_HSM_SIM_MASTER';

/**
 * The NC "LMK check value" (16H): scrypt of the master passphrase under a fixed salt, 8 bytes. It identifies
 * the simulator's local master key without revealing it, and costs an attacker as much per guess as opening
 * the key store does.
 */
export function lmkCheckValue(passphrase: string): Promise<string> {
  return new Promise((resolve, reject) =>
    scrypt(passphrase, 'purselab hsm-sim LMK check v1', 8, { N: 1 << 15, r: 8, p: 1, maxmem: 64 << 20 }, (e, k) =>
      e ? reject(e) : resolve(k.toString('hex').toUpperCase()),
    ),
  );
}

function intOption(value: string | undefined, name: string, min: number, max: number, dflt: number): number {
  if (value === undefined) return dflt;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be an integer ${min}..${max}, got '${value}'`);
  return n;
}

export const hsmSimCommand: CliCommand = {
  name: 'hsm-sim',
  summary: 'run a payShield-style host-command HSM simulator on a serial line or TCP port',
  help: [
    'Usage: purselab hsm-sim --serial PATH [--baud 115200] --keystore FILE [options]',
    '       purselab hsm-sim --tcp PORT [--host 127.0.0.1] --keystore FILE [options]',
    '',
    'Answers the host-command protocol of docs/serial-hsm-protocol.md: payShield framing (serial: STX ... ETX',
    'LRC; TCP: 2-byte length prefix), a header echoed back, NC/A0/BU as a payShield does, and purselab\'s own',
    'lower-case commands for the rest of the HSM interface. Keys live in a software key store encrypted under',
    `the simulator's own master passphrase (env ${SIM_MASTER_ENV}, or asked on the terminal).`,
    '',
    'On a serial line the tty is opened at the given baud rate, 8N1, and the simulator reproduces the line\'s',
    'speed (a pty moves bytes instantly): it answers when the request\'s last character would have arrived and',
    'paces its answer at the baud rate. If the tty goes away (socat restarted) it reopens the same path.',
    '',
    'Options:',
    '  --serial PATH        tty to answer on (e.g. one end of: socat pty,raw,echo=0,link=/tmp/h pty,raw,echo=0,link=/tmp/s)',
    '  --baud N             serial speed, default 115200 (8 data bits, no parity, 1 stop bit)',
    '  --tcp PORT           listen on TCP instead (0 = any free port; the port is printed)',
    '  --host ADDR          TCP address to listen on, default 127.0.0.1',
    '  --keystore FILE      the key store (required)',
    '  --create             create the key store if the file does not exist',
    '  --header-length N    message header length the hosts use, default 4',
    '  --instant            serial: answer at pty speed, do not reproduce the baud rate',
    '  --inter-char-ms N    serial: give up on a request when no byte arrives for N ms mid-frame',
    '                       (default 50, or 20 character times at slow speeds)',
    '  --journal FILE       append one JSON line per received command (code, header, error code, executed)',
    '  --allow-faults       accept the xa command that arms test faults (delay, drop, garble, noise,',
    '                       bad-lrc, bad-header, die-before, die-after); otherwise xa gets error 68',
    `  --firmware TEXT      9-character firmware number reported by NC, default ${DEFAULT_FIRMWARE}`,
    '  --quiet              no log lines on stderr',
    '',
    'Stops cleanly on SIGINT or SIGTERM. Prints one "ready" line on stdout once it answers.',
    'PURSELAB_HSM_SIM_TRACE=1 logs the timing of every answered frame on a serial line.',
    '',
    'Example:',
    '  socat pty,raw,echo=0,link=/tmp/hsm-host pty,raw,echo=0,link=/tmp/hsm-sim &',
    `  ${SIM_MASTER_ENV}=lab-only purselab hsm-sim --serial /tmp/hsm-sim --keystore sim.store --create`,
  ].join('\n'),

  async run(args, io) {
    const { values, positionals } = parseCommandArgs(args, {
      serial: { type: 'string' },
      baud: { type: 'string' },
      tcp: { type: 'string' },
      host: { type: 'string' },
      keystore: { type: 'string' },
      create: { type: 'boolean', default: false },
      'header-length': { type: 'string' },
      instant: { type: 'boolean', default: false },
      'inter-char-ms': { type: 'string' },
      journal: { type: 'string' },
      'allow-faults': { type: 'boolean', default: false },
      firmware: { type: 'string' },
      quiet: { type: 'boolean', default: false },
    });
    if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}'`);
    if ((values.serial === undefined) === (values.tcp === undefined)) throw new UsageError('give exactly one of --serial PATH or --tcp PORT');
    if (!values.keystore) throw new UsageError('--keystore FILE is required');
    if (values.baud !== undefined && values.serial === undefined) throw new UsageError('--baud goes with --serial');
    if (values.host !== undefined && values.tcp === undefined) throw new UsageError('--host goes with --tcp');
    const baudRate = intOption(values.baud, 'baud', 50, 4_000_000, 115200);
    if (values['inter-char-ms'] !== undefined && values.serial === undefined) throw new UsageError('--inter-char-ms goes with --serial');
    const interCharMs = values['inter-char-ms'] === undefined ? undefined : intOption(values['inter-char-ms'], 'inter-char-ms', 1, INTER_CHAR_MAX_MS, 50);
    const tcpPort = values.tcp === undefined ? 0 : intOption(values.tcp, 'tcp', 0, 65535, 0);
    const headerLength = intOption(values['header-length'], 'header-length', 1, 32, 4);
    const firmware = values.firmware ?? DEFAULT_FIRMWARE;
    if (firmware.length !== 9 || !/^[\x20-\x7e]+$/.test(firmware)) throw new UsageError('--firmware must be 9 printable characters');
    const log = values.quiet ? () => undefined : (line: string) => io.err(`hsm-sim: ${line}`);

    const path = values.keystore;
    const exists = await access(path).then(
      () => true,
      () => false,
    );
    const passphrase = await obtainPassphrase({ passphraseEnv: SIM_MASTER_ENV }, path, values.create && !exists);
    const hsm = new SoftwareHsm({ path, create: values.create, passphrase });
    await hsm.open();
    const sim = new HsmSimulator({
      hsm,
      lmkCheck: await lmkCheckValue(passphrase),
      firmware,
      headerLength,
      allowFaults: values['allow-faults'],
      ...(values.journal ? { journalPath: values.journal } : {}),
      log,
    });

    let stopping = false;
    let wake: () => void = () => undefined;
    const stopped = new Promise<void>((resolve) => {
      wake = resolve;
    });
    const onSignal = (sig: string): void => {
      if (stopping) return;
      stopping = true;
      log(`${sig}: shutting down`);
      wake();
    };
    const sigint = (): void => onSignal('SIGINT');
    const sigterm = (): void => onSignal('SIGTERM');
    process.on('SIGINT', sigint);
    process.on('SIGTERM', sigterm);

    let stopLine: () => Promise<void>;
    try {
      if (values.serial !== undefined) {
        const serialPath = values.serial;
        let line: SerialSimLine | undefined;
        // Open the tty; if it disappears (the pty pair was torn down), keep trying to reopen the same path.
        const openLine = async (): Promise<void> => {
          for (let attempt = 0; !stopping; attempt++) {
            const trace = process.env.PURSELAB_HSM_SIM_TRACE
              ? (t: LineTiming) =>
                  log(
                    `trace ${t.code} @${t.startNs}: request wire ${t.requestWireMs.toFixed(3)} ms, executed at ${t.executeAtMs.toFixed(3)} for ${t.executeMs.toFixed(3)} ms, answer wire ${t.answerWireMs.toFixed(3)} ms, done at ${t.answerDoneMs.toFixed(3)} ms`,
                  )
              : undefined;
            const l = new SerialSimLine(sim, { path: serialPath, baudRate, wireTime: !values.instant, ...(trace ? { trace } : {}), ...(interCharMs ? { interCharTimeoutMs: interCharMs } : {}) }, log);
            try {
              await l.start((e) => {
                if (stopping) return;
                log(`${serialPath} lost (${e.message}); reopening`);
                void l.stop(false).then(openLine);
              });
              line = l;
              if (attempt > 0) log(`${serialPath} reopened`);
              return;
            } catch (e) {
              if (attempt === 0) log(`cannot open ${serialPath} (${(e as Error).message}); retrying`);
              await sleep(200);
            }
          }
        };
        await openLine();
        stopLine = async () => {
          await line?.stop();
        };
        io.out(`hsm-sim ready on ${serialPath} ${baudRate} 8N1${values.instant ? ' (instant)' : ''}, header length ${headerLength}`);
      } else {
        const server = new TcpSimServer(sim, { port: tcpPort, host: values.host ?? '127.0.0.1' }, log);
        const bound = await server.start();
        stopLine = () => server.stop();
        io.out(`hsm-sim ready on tcp ${values.host ?? '127.0.0.1'}:${bound}, header length ${headerLength}`);
      }
      await stopped;
      await stopLine();
    } finally {
      process.off('SIGINT', sigint);
      process.off('SIGTERM', sigterm);
      await hsm.close();
    }
    log('stopped');
    return 0;
  },
};
