// The host berth gives a component, for the SDK's tests: `log` keeps the
// lines it is given, so a test can read them. register.mjs makes the SDK's
// `berth:policy/host@0.3.0` import resolve here.
export const lines = [];

export function log(level, message) {
  lines.push({ level, message });
}
