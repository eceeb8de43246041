// Applet type registry: type name -> factory, so a card image (which stores applets by type name and AID)
// can be restored. Applet modules register their types; card-applet-sim/applets/index.ts imports them all.

import { Applet, kType } from './applet.ts';
import { CardOsError } from './iso.ts';

/** Makes a fresh instance; `params` are the install parameters kept in the card image (often empty). */
export type AppletFactory = (params: Buffer) => Applet;

/** An applet class with a static type name and a constructor taking the install parameters. */
export interface AppletClass {
  readonly typeName: string | undefined;
  new (params: Buffer): Applet;
}

const TYPE_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;

export class AppletTypeRegistry {
  private readonly factories = new Map<string, AppletFactory>();

  /** Register a type name. Registering the same name again throws unless `replace` is set. */
  register(name: string, factory: AppletFactory, options: { replace?: boolean } = {}): void {
    if (!TYPE_NAME.test(name)) throw new CardOsError(`applet type name '${name}' must be 1..64 characters of a-z 0-9 . _ - (starting with a letter or digit)`);
    const existing = this.factories.get(name);
    if (existing && existing !== factory && !options.replace) throw new CardOsError(`applet type '${name}' is already registered`);
    this.factories.set(name, factory);
  }

  /** Register a class by its static `typeName` (idempotent for the same class). */
  registerClass(cls: AppletClass, options: { replace?: boolean } = {}): void {
    const name = cls.typeName;
    if (!name) throw new CardOsError(`${cls.name} has no static typeName to register it under`);
    if (this.classes.get(name) === cls) return;
    this.register(name, (params) => new cls(params), options);
    this.classes.set(name, cls);
  }
  private readonly classes = new Map<string, AppletClass>();

  has(name: string): boolean {
    return this.factories.has(name);
  }
  names(): string[] {
    return [...this.factories.keys()].sort();
  }

  /** Make an instance of a registered type; its typeName is set to `name`. */
  create(name: string, params: Uint8Array = Buffer.alloc(0)): Applet {
    const factory = this.factories.get(name);
    if (!factory) {
      const known = this.names();
      throw new CardOsError(`applet type '${name}' is not registered (known: ${known.length ? known.join(', ') : 'none'}; import card-applet-sim/applets/index.ts to register the built-in applets)`);
    }
    const applet = factory(Buffer.from(params));
    if (!(applet instanceof Applet)) throw new CardOsError(`the factory for applet type '${name}' did not return an Applet`);
    applet[kType] = name;
    return applet;
  }
}

/** The default registry: the card OS and image loader use it unless given another. */
export const appletTypes = new AppletTypeRegistry();
