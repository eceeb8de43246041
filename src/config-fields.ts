// Field checks shared by the parsers of JSON inputs: card and PSAM profiles (card-applet-sim/applets/*/issuing.ts,
// host side, never imported by an applet) and the servers' configuration files (bank, merchant, load, payment,
// OPAL). Each parser passes its own `fail`, which names the file and throws its error.

export type Obj = Record<string, unknown>;
export const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
/** A value as a message shows it: strings quoted, the rest as JSON. */
export const shown = (v: unknown): string => (typeof v === 'string' ? `'${v}'` : (JSON.stringify(v) ?? String(v)));

/** `fail(field, message)` throws; the checks name a field by `prefix + name` (e.g. 'points.max'). */
export function fieldChecker(fail: (field: string, message: string) => never) {
  /** Unknown fields are errors ('$comment' is allowed where `allowed` lists it, and not shown). */
  const known = (o: Obj, allowed: readonly string[], prefix: string): void => {
    for (const k of Object.keys(o)) if (!allowed.includes(k)) fail(prefix + k, `unknown field (known: ${allowed.filter((a) => a !== '$comment').join(', ')})`);
  };
  const int = (o: Obj, field: string, prefix: string, min: number, max: number, dflt?: number): number => {
    const v = o[field];
    if (v === undefined && dflt !== undefined) return dflt;
    if (v === undefined) fail(prefix + field, `missing (an integer ${min}..${max})`);
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) fail(prefix + field, `must be an integer ${min}..${max}, got ${shown(v)}`);
    return v as number;
  };
  const digits = (o: Obj, field: string, n: number): string => {
    const v = o[field];
    if (typeof v !== 'string' || !new RegExp(`^[0-9]{${n}}$`).test(v)) fail(field, `must be a string of exactly ${n} digits, got ${shown(v)}`);
    return v as string;
  };
  /** An optional string field. */
  const text = (o: Obj, field: string): string | undefined => {
    const v = o[field];
    if (v !== undefined && typeof v !== 'string') fail(field, `must be a string, got ${shown(v)}`);
    return v as string | undefined;
  };
  /** A required non-empty string, matching `re` when given (the message never shows the value: it may be a key). */
  const str = (o: Obj, field: string, prefix = '', re?: RegExp): string => {
    const v = o[field];
    if (typeof v !== 'string' || v === '' || (re && !re.test(v))) fail(prefix + field, `must be ${re ? `a string matching ${re}` : 'a non-empty string'}`);
    return v as string;
  };
  return { fail, known, int, digits, text, str };
}
