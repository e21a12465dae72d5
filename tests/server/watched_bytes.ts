/**
 * A byte array behind a proxy that records the indexes read outside a range: for scanners that must
 * read nothing past the bytes they were given (a hint that reads ahead must not look at bytes that
 * have not arrived).
 *
 * @example
 * const outside: number[] = [];
 * findLeadingGets(watched(bytes, 0, end, outside), 0, end, starts, ends);
 * expect(outside).toEqual([]);
 */
export function watched(bytes: Uint8Array, start: number, end: number, outside: number[]): Uint8Array {
  return new Proxy(bytes, {
    get(target, property) {
      if (typeof property === "string" && /^\d+$/.test(property)) {
        const i = Number(property);
        if (i < start || i >= end) outside.push(i);
        return target[i];
      }
      const value = Reflect.get(target, property, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}
