/**
 * The API key the console acts with: kept in the tab's session storage (gone when the tab
 * closes), never in a URL, sent as any client sends it.
 */
const KEY = "loom.console.apiKey";

export function savedKey(): string | null {
  return sessionStorage.getItem(KEY);
}

export function saveKey(key: string): void {
  sessionStorage.setItem(KEY, key);
}

export function forgetKey(): void {
  sessionStorage.removeItem(KEY);
}
