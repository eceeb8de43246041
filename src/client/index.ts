// The client terminal library: pay a merchant's order with a card in any CardChannel (PC/SC reader, in-process
// emulator, or OPAL's pseudo reader over a virtual card).

export * from './page.ts';
export * from './pay.ts';
