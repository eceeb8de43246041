// Registers every built-in applet type in the shared registry, so card images can be restored. Importing this
// module is enough; applet modules added later (purse, PSAM...) add one line to the list below.

import { appletTypes, type AppletClass } from '../os/registry.ts';
import { ReferenceApplet } from './reference/reference-applet.ts';
import { PurseApplet } from './purse/purse-applet.ts';
import { PsamApplet } from './psam/psam-applet.ts';

export const builtinAppletClasses: readonly AppletClass[] = [
  ReferenceApplet,
  PurseApplet,
  PsamApplet,
];

for (const cls of builtinAppletClasses) appletTypes.registerClass(cls);

export { ReferenceApplet, REFERENCE_AID } from './reference/reference-applet.ts';
