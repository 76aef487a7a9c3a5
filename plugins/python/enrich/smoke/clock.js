// The host `clock` for the smoke test: a fixed time.
export const NOW_MS = 1700000000123n;
export function nowMs() {
  return NOW_MS;
}
export function monotonicNs() {
  return 1n;
}
