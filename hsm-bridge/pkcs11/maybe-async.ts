// Values that are there at once or later: the PKCS#11 backend's operations finish synchronously when their
// token calls are synchronous (a lone caller) and as promises when they go to pkcs11js's *Async overloads, and
// chains them without forcing a microtask on the synchronous path.

/** f(a), now if `a` is a value, after it settles if it is a promise. (Not named `then`: a module exporting `then` is a thenable, and `await import()` of it calls that.) */
export function andThen<A, B>(a: A | Promise<A>, f: (a: A) => B | Promise<B>): B | Promise<B> {
  return a instanceof Promise ? a.then(f) : f(a);
}

/** A maybe-synchronous result as the promise the Hsm interface returns (a synchronous throw becomes a rejection). */
export function settle<T>(f: () => T | Promise<T>): Promise<T> {
  try {
    const r = f();
    return r instanceof Promise ? r : Promise.resolve(r);
  } catch (e) {
    return Promise.reject(e);
  }
}
