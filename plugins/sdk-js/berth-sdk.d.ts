// Types for berth-sdk.js, for editors and for policies checked with tsc
// (`// @ts-check` in policy.js, or a policy.ts compiled to policy.js).

export class PolicyError extends Error {
  constructor(message: string);
}

export class SettingsError extends Error {
  constructor(field: string, message: string);
  readonly field: string;
}

export const log: {
  trace(message: string): void;
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
};

export interface GroupVersionKind {
  group: string;
  version: string;
  kind: string;
}

export interface GroupVersionResource {
  group: string;
  version: string;
  resource: string;
}

export type Operation = 'CREATE' | 'UPDATE' | 'DELETE' | 'CONNECT';

export interface Context {
  /** The cluster's default StorageClass (`context: [defaultStorageClass]`). */
  defaultStorageClass: string | null;
}

/** The Kubernetes object of a request, as parsed JSON. */
export type KubeObject = { [field: string]: any };

export class Request {
  constructor(request: string, object?: string, oldObject?: string, context?: Partial<Context>);
  readonly uid: string;
  readonly kind: GroupVersionKind;
  readonly resource: GroupVersionResource;
  readonly subResource: string | null;
  readonly name: string | null;
  readonly namespace: string | null;
  readonly operation: Operation;
  readonly userInfo: { username: string; groups: string[]; [field: string]: any };
  readonly dryRun: boolean;
  readonly context: Context;
  hasObject(): boolean;
  /** The object being admitted, parsed on first use; a PolicyError if none. */
  object(): KubeObject;
  /** The stored object (UPDATE, DELETE), parsed on first use; a PolicyError if none. */
  oldObject(): KubeObject;
  /** Throw a PolicyError unless the request is for a `kind`. */
  requireKind(kind: string, plugin: string): void;
}

export function pointer(segments: Iterable<string>): string;

/** Kubernetes name checks (Rust: `berth_sdk::names`): null, or what is wrong. */
export function checkDnsSubdomain(name: string): string | null;
export function checkLabelKey(key: string): string | null;
export function checkLabelValue(value: string): string | null;

export type PatchOp =
  | { op: 'add' | 'replace' | 'test'; path: string; value: unknown }
  | { op: 'remove'; path: string };

export class Patch {
  ops: PatchOp[];
  add(path: string, value: unknown): this;
  replace(path: string, value: unknown): this;
  remove(path: string): this;
  test(path: string, value: unknown): this;
  append(path: string, existing: number, items: Iterable<unknown>): this;
  isEmpty(): boolean;
  toJson(): string;
  toJSON(): PatchOp[];
}

export type Decision =
  | { tag: 'allow' }
  | { tag: 'deny'; val: { message: string; code: number } }
  | { tag: 'mutate'; val: Patch };

export class Verdict {
  decision: Decision;
  warnings: string[];
  static allow(): Verdict;
  static deny(message: string): Verdict;
  static denyWithCode(message: string, code: number): Verdict;
  static mutate(patch: Patch): Verdict;
  withWarning(warning: string): this;
  isAllowed(): boolean;
  patch(): Patch | null;
}

export type SchemaType = 'string' | 'number' | 'integer' | 'boolean' | 'any';
export type Schema = SchemaType | [Schema] | { [field: string]: Schema } | { readonly __optional: Schema };

export function optional(schema: Schema): Schema;

export class Settings {
  /** The settings' shape (see berth-sdk.js); its fields become the instance's. */
  static schema: { [field: string]: any };
  [field: string]: any;
  static parse<T extends Settings>(this: new () => T, text: string): T;
  validate(): void;
}

/** The WIT world's exports, as componentize-js calls them. */
export interface PluginExports {
  validateSettings(settings: string): void;
  evaluate(
    request: string,
    object: string | undefined,
    oldObject: string | undefined,
    settings: string,
    context: { defaultStorageClass?: string },
  ): { decision: { tag: 'allow' } | { tag: 'deny'; val: { message: string; code: number } } | { tag: 'mutate'; val: string }; warnings: string[] };
}

export function exportPlugin<S extends Settings>(
  settings: { new (): S; parse(text: string): S },
  evaluate: (request: Request, settings: S) => Verdict,
): PluginExports;
