/** walkv's version (package.json's), printed by `walkv --version` and reported by `stats`. */
export const VERSION = "0.1.0";
