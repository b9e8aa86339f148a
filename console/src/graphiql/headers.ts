/**
 * The headers a new GraphiQL tab starts with.
 *
 * An API key stored in sessionStorage under `loom.apiKey` (by another page of the console on
 * this origin, or by hand) is filled in; otherwise the user completes `Bearer `. Headers are
 * never persisted by GraphiQL (shouldPersistHeaders stays off), so a key does not outlive the
 * browser tab.
 */
export const API_KEY_STORAGE_KEY = "loom.apiKey";

export function defaultHeaders(): string {
  const key = window.sessionStorage.getItem(API_KEY_STORAGE_KEY) ?? "";
  return JSON.stringify({ Authorization: `Bearer ${key}` }, null, 2);
}
