// The card emulator: card OS (card-applet-sim/os) plus the built-in applets, registered on import.

export * from './os/index.ts';
export * from './applets/index.ts';
