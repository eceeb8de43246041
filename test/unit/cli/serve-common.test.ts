// The options every `purselab serve ...` command shares (src/cli/commands/serve-common.ts): --config required,
// host/port/log-level defaults and checks, no positionals, extra options passed through, and the --hsm spec
// taken from the flag or from PURSELAB_HSM.

import { afterEach, describe, expect, it } from 'vitest';
import { parseServeArgs, requireHsmSpec } from '../../../src/cli/commands/serve-common.ts';
import { UsageError } from '../../../src/cli/command.ts';

const base = { command: 'serve test', defaultPort: 8499, configExample: 'fixtures/x.json' };

describe('parseServeArgs', () => {
  it('gives the defaults and passes extra options through', () => {
    const r = parseServeArgs(['--config', 'c.json', '--opal', 'http://o'], { ...base, extra: { opal: { type: 'string' } } });
    expect(r).toMatchObject({ file: 'c.json', host: '127.0.0.1', port: 8499, logLevel: 'info', db: undefined });
    expect(r.values.opal).toBe('http://o');
  });
  it('takes host, port, db and log level; silent turns logs off', () => {
    const r = parseServeArgs(['--config', 'c.json', '--host', '0.0.0.0', '--port', '0', '--db', 'x.db', '--log-level', 'silent'], { ...base, extra: {} });
    expect(r).toMatchObject({ host: '0.0.0.0', port: 0, db: 'x.db', logLevel: false });
  });
  it('refuses a missing config, a bad port or level, positionals and unknown options', () => {
    const bad = (args: string[], msg: RegExp) => expect(() => parseServeArgs(args, { ...base, extra: {} })).toThrow(msg);
    bad([], /--config FILE is required \(e\.g\. fixtures\/x\.json\)/);
    bad(['--config', 'c.json', '--port', '70000'], /--port must be 0\.\.65535/);
    bad(['--config', 'c.json', '--log-level', 'loud'], /--log-level must be one of/);
    bad(['--config', 'c.json', 'extra'], /unexpected argument 'extra' \(see purselab serve test --help\)/);
    bad(['--config', 'c.json', '--opal', 'x'], /Unknown option '--opal'/);
    expect(() => parseServeArgs([], { ...base, extra: {} })).toThrow(UsageError);
  });
});

describe('requireHsmSpec', () => {
  const saved = process.env.PURSELAB_HSM;
  afterEach(() => {
    if (saved === undefined) delete process.env.PURSELAB_HSM;
    else process.env.PURSELAB_HSM = saved;
  });
  it('takes --hsm first, then PURSELAB_HSM, else says what to give', () => {
    process.env.PURSELAB_HSM = 'software:env.store';
    expect(requireHsmSpec('software:flag.store', 'software:x.store')).toBe('software:flag.store');
    expect(requireHsmSpec(undefined, 'software:x.store')).toBe('software:env.store');
    delete process.env.PURSELAB_HSM;
    expect(() => requireHsmSpec(undefined, 'software:x.store')).toThrow(/--hsm SPEC is required \(or set PURSELAB_HSM\), e\.g\. software:x\.store/);
  });
});
