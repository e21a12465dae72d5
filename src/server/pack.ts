/**
 * The one msgpackr instance of walkv: plain msgpack maps and arrays (no record extension), so any
 * msgpack client can read what walkv sends (`stats`, `checkpoint`).
 *
 * @example
 * const bytes = packr.pack({ keys: 3 }); packr.unpack(bytes); // → { keys: 3 }
 */
import { Packr } from "msgpackr";

export const packr = new Packr({ useRecords: false, mapsAsObjects: true, variableMapSize: true });
