// The one-string HSM spec (PURSELAB_HSM, --hsm): each backend, the PKCS#11 options, the serial line's forms
// and its option, and the errors.
import { describe, expect, it } from 'vitest';
import { parseHsmSpec } from '../../../hsm-bridge/config.ts';
import { formatLine, parseLine } from '../../../hsm-bridge/serial/backend.ts';

describe('parseHsmSpec', () => {
  it('reads the software, serial and PKCS#11 forms', () => {
    expect(parseHsmSpec('software:/tmp/k.json')).toEqual({ backend: 'software', path: '/tmp/k.json' });
    expect(parseHsmSpec('serial:tcp:127.0.0.1:1500')).toEqual({ backend: 'serial', line: 'tcp:127.0.0.1:1500' });
    expect(parseHsmSpec('pkcs11:/usr/lib/softhsm/libsofthsm2.so#purselab')).toEqual({ backend: 'pkcs11', module: '/usr/lib/softhsm/libsofthsm2.so', tokenLabel: 'purselab' });
    expect(parseHsmSpec('pkcs11:/m.so#tok#MY_PIN')).toEqual({ backend: 'pkcs11', module: '/m.so', tokenLabel: 'tok', pinEnv: 'MY_PIN' });
  });

  it('takes processes=N for session processes, with or without a PIN variable', () => {
    expect(parseHsmSpec('pkcs11:/m.so#tok;processes=2')).toEqual({ backend: 'pkcs11', module: '/m.so', tokenLabel: 'tok', processes: 2 });
    expect(parseHsmSpec('pkcs11:/m.so#tok#MY_PIN;processes=0')).toEqual({ backend: 'pkcs11', module: '/m.so', tokenLabel: 'tok', pinEnv: 'MY_PIN', processes: 0 });
  });

  it('takes master-copies=on|off, alone or with processes', () => {
    expect(parseHsmSpec('pkcs11:/m.so#tok;master-copies=off')).toEqual({ backend: 'pkcs11', module: '/m.so', tokenLabel: 'tok', masterCopies: false });
    expect(parseHsmSpec('pkcs11:/m.so#tok;processes=1;master-copies=on')).toEqual({ backend: 'pkcs11', module: '/m.so', tokenLabel: 'tok', processes: 1, masterCopies: true });
    expect(() => parseHsmSpec('pkcs11:/m.so#tok;master-copies=no')).toThrow(/'master-copies=no' is not known \(processes=N, master-copies=on\|off\)/);
  });

  it('refuses what it cannot read, naming the accepted forms', () => {
    expect(() => parseHsmSpec('vault:x')).toThrow(/software:PATH \| pkcs11:MODULE#TOKEN/);
    expect(() => parseHsmSpec('pkcs11:/m.so')).toThrow(/MODULE#TOKEN/);
    expect(() => parseHsmSpec('pkcs11:/m.so#tok;threads=4')).toThrow(/'threads=4' is not known/);
    expect(() => parseHsmSpec('pkcs11:/m.so#tok;processes=x')).toThrow(/not known/);
  });
});

describe('parseLine (serial:LINE, hsm init --serial)', () => {
  it('reads a TCP address, a tty with or without its speed, and inter-char-ms on a tty', () => {
    expect(parseLine('tcp:10.0.0.5:1500')).toEqual({ kind: 'tcp', host: '10.0.0.5', port: 1500 });
    expect(parseLine('/dev/ttyS0')).toEqual({ kind: 'serial', path: '/dev/ttyS0' });
    expect(parseLine('serial:/dev/ttyUSB0@9600')).toEqual({ kind: 'serial', path: '/dev/ttyUSB0', baudRate: 9600 });
    expect(parseLine('/tmp/hsm-host@115200;inter-char-ms=1000')).toEqual({ kind: 'serial', path: '/tmp/hsm-host', baudRate: 115200, interCharTimeoutMs: 1000 });
    expect(parseLine('/tmp/hsm-host;inter-char-ms=250')).toEqual({ kind: 'serial', path: '/tmp/hsm-host', interCharTimeoutMs: 250 });
  });

  it('refuses an option it does not know, or a quiet spell out of range', () => {
    expect(() => parseLine('/dev/ttyS0;parity=even')).toThrow(/'parity=even' is not known \(inter-char-ms=1..60000\)/);
    expect(() => parseLine('/dev/ttyS0;inter-char-ms=0')).toThrow(/not known/);
    expect(() => parseLine('/dev/ttyS0;inter-char-ms=70000')).toThrow(/not known/);
    expect(() => parseLine('@9600')).toThrow(/cannot read line/);
  });

  it('formatLine writes what parseLine reads back', () => {
    for (const text of ['tcp:10.0.0.5:1500', '/dev/ttyS0', '/dev/ttyUSB0@9600', '/tmp/hsm-host@115200;inter-char-ms=1000', '/tmp/hsm-host;inter-char-ms=250']) {
      expect(formatLine(parseLine(text))).toBe(text);
    }
  });
});
