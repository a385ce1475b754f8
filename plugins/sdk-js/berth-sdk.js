// berth-sdk.js: the conveniences of berth's Rust SDK for policies written in
// JavaScript and built into WebAssembly components with componentize-js.
//
// A policy is a settings class and one `evaluate` function:
//
//   import { exportPlugin, Settings, SettingsError, Verdict } from './berth-sdk.js';
//
//   class MySettings extends Settings {
//     static schema = { label: 'string' };
//     validate() {
//       if (this.label === '') throw new SettingsError('label', 'must not be empty');
//     }
//   }
//
//   function evaluate(request, settings) {
//     const labels = request.object().metadata?.labels ?? {};
//     if (settings.label in labels) return Verdict.allow();
//     return Verdict.deny(`label ${settings.label} is required`);
//   }
//
//   // The component's exports, WIT `validate-settings` and `evaluate`.
//   const plugin = exportPlugin(MySettings, evaluate);
//   export const validateSettings = plugin.validateSettings;
//   const evaluateExport = plugin.evaluate;
//   export { evaluateExport as evaluate };
//
// The names are the Rust SDK's, in camelCase: Request (request.object(),
// request.oldObject(), request.requireKind()), Patch and pointer(), Verdict
// (allow, deny, denyWithCode, mutate, withWarning), Settings and
// SettingsError, PolicyError, log, and the name checks (checkLabelKey,
// checkLabelValue, checkDnsSubdomain). The contract is plugins/wit/policy.wit.

import { log as hostLog } from 'berth:policy/host@0.3.0';

/** A policy error: `evaluate` could not reach a verdict (not a denial).
 * berth applies the policy's failurePolicy to it. */
export class PolicyError extends Error {
  constructor(message) {
    super(message);
    this.name = 'PolicyError';
  }
}

/** A rejected setting, with the field it concerns (`label.key`,
 * `tolerations[0].effect`); its message reads `settings.label.key: ...`. */
export class SettingsError extends Error {
  constructor(field, message) {
    super(field === '' || field === '.' ? `settings: ${message}` : `settings.${field}: ${message}`);
    this.name = 'SettingsError';
    this.field = field;
  }
}

/** Logging to berth's log, tagged with the policy's name. */
export const log = {
  trace: (message) => hostLog('trace', String(message)),
  debug: (message) => hostLog('debug', String(message)),
  info: (message) => hostLog('info', String(message)),
  warn: (message) => hostLog('warn', String(message)),
  error: (message) => hostLog('error', String(message)),
};

/** The AdmissionRequest a policy judges. Its objects come apart from it,
 * as JSON text, and are parsed only when asked for, once. */
export class Request {
  #object;
  #oldObject;
  #parsed = {};

  /** `request` is the AdmissionRequest JSON without its objects; `object`
   * and `oldObject` are JSON texts or undefined, as `evaluate` gets them. */
  constructor(request, object, oldObject, context = {}) {
    let fields;
    try {
      fields = JSON.parse(request);
    } catch (err) {
      throw new PolicyError(`invalid AdmissionRequest: ${err.message}`);
    }
    this.uid = fields.uid;
    /** `{group, version, kind}`; `request.kind.kind` is `Pod`, say. */
    this.kind = { group: '', ...fields.kind };
    this.resource = { group: '', ...fields.resource };
    this.subResource = fields.subResource ?? null;
    this.name = fields.name ?? null;
    this.namespace = fields.namespace ?? null;
    /** `CREATE`, `UPDATE`, `DELETE` or `CONNECT`. */
    this.operation = fields.operation;
    this.userInfo = { username: '', groups: [], ...fields.userInfo };
    this.dryRun = fields.dryRun ?? false;
    /** What berth knows of the cluster, for a policy that asks for it in
     * berth.yaml (`context:`): `{defaultStorageClass}` (null when unset). */
    this.context = { defaultStorageClass: context.defaultStorageClass ?? null };
    this.#object = present(object);
    this.#oldObject = present(oldObject);
  }

  /** Whether the request carries an object (it does not for DELETE). */
  hasObject() {
    return this.#object !== undefined;
  }

  /** The object being admitted, parsed on first use. */
  object() {
    return this.#parse('object', this.#object);
  }

  /** The stored object, for UPDATE and DELETE. */
  oldObject() {
    return this.#parse('oldObject', this.#oldObject);
  }

  /** Throw a PolicyError unless the request is for a `kind` (`Pod`):
   * `<plugin> applies to Pods, not PersistentVolumeClaim`. */
  requireKind(kind, plugin) {
    if (this.kind.kind !== kind) {
      throw new PolicyError(`${plugin} applies to ${plural(kind)}, not ${this.kind.kind}`);
    }
  }

  #parse(name, text) {
    if (!(name in this.#parsed)) {
      if (text === undefined) {
        throw new PolicyError(`${operationName(this.operation)} request has no ${name}`);
      }
      try {
        this.#parsed[name] = JSON.parse(text);
      } catch (err) {
        throw new PolicyError(`${name}: ${err.message}`);
      }
    }
    return this.#parsed[name];
  }
}

function present(text) {
  return text === undefined || text === null || text.trim() === 'null' ? undefined : text;
}

// As the Rust SDK names operations in its messages (`Delete request has no object`).
function operationName(operation) {
  const name = String(operation ?? '');
  return name.charAt(0) + name.slice(1).toLowerCase();
}

/** The English plural of a kind, for messages: Pods, Ingresses, NetworkPolicies. */
function plural(kind) {
  if (['s', 'x', 'z', 'ch', 'sh'].some((end) => kind.endsWith(end))) return `${kind}es`;
  if (kind.endsWith('y') && !/[aeiou]y$/.test(kind)) return `${kind.slice(0, -1)}ies`;
  return `${kind}s`;
}

/** Build a JSON Pointer from raw segments, escaping `~` and `/`:
 * `pointer(['metadata', 'labels', 'example.com/checked'])` is
 * `/metadata/labels/example.com~1checked`. */
export function pointer(segments) {
  return segments.map((segment) => '/' + String(segment).replaceAll('~', '~0').replaceAll('/', '~1')).join('');
}

/** An RFC 6902 JSON Patch, built op by op against the object the policy
 * was given. Each method returns the patch, so calls chain. */
export class Patch {
  /** The ops, as `{op, path, value}` objects. */
  ops = [];

  add(path, value) {
    this.ops.push({ op: 'add', path, value });
    return this;
  }

  replace(path, value) {
    this.ops.push({ op: 'replace', path, value });
    return this;
  }

  remove(path) {
    this.ops.push({ op: 'remove', path });
    return this;
  }

  test(path, value) {
    this.ops.push({ op: 'test', path, value });
    return this;
  }

  /** Append `items` to the array at `path`, which holds `existing` items
   * now: one `add` of the whole array when it is absent or empty (a JSON
   * Patch cannot append to an array that is not there), else one
   * `add <path>/-` per item, so what is there is kept. */
  append(path, existing, items) {
    items = [...items];
    if (items.length === 0) return this;
    if (existing === 0) return this.add(path, items);
    for (const item of items) this.add(`${path}/-`, item);
    return this;
  }

  isEmpty() {
    return this.ops.length === 0;
  }

  /** The patch as JSON text, as the WIT `mutate` carries it. */
  toJson() {
    return JSON.stringify(this.ops);
  }

  /** So that JSON.stringify(patch) gives the ops array. */
  toJSON() {
    return this.ops;
  }
}

/** What a policy decided, with warnings for the user. `decision` is
 * `{tag: 'allow'}`, `{tag: 'deny', val: {message, code}}` or
 * `{tag: 'mutate', val: patch}`. */
export class Verdict {
  constructor(decision) {
    this.decision = decision;
    this.warnings = [];
  }

  static allow() {
    return new Verdict({ tag: 'allow' });
  }

  /** Deny with code 403. */
  static deny(message) {
    return Verdict.denyWithCode(message, 403);
  }

  static denyWithCode(message, code) {
    return new Verdict({ tag: 'deny', val: { message: String(message), code } });
  }

  /** Mutate with `patch`; an empty patch is an allow, so reinvocation over
   * a policy's own output is visibly a no-op. */
  static mutate(patch) {
    if (patch.isEmpty()) return Verdict.allow();
    return new Verdict({ tag: 'mutate', val: patch });
  }

  /** Add a warning for the user (keep it under 120 characters). */
  withWarning(warning) {
    this.warnings.push(String(warning));
    return this;
  }

  isAllowed() {
    return this.decision.tag !== 'deny';
  }

  /** The patch of a mutation, else null. */
  patch() {
    return this.decision.tag === 'mutate' ? this.decision.val : null;
  }
}

// Checks for Kubernetes names and labels, for settings that name objects or
// labels (Rust: `berth_sdk::names`). Each returns null when the name is
// good, else the problem, in the Rust SDK's words.

/** A DNS subdomain (RFC 1123), as most Kubernetes object names are
 * (Secrets, StorageClasses, ...): null, or what is wrong. */
export function checkDnsSubdomain(name) {
  if (name.length === 0 || utf8Length(name) > 253) return 'must have 1 to 253 characters';
  for (const label of name.split('.')) {
    if (!isLowerAlnum(label.charAt(0)) || !isLowerAlnum(label.charAt(label.length - 1))) {
      return "each '.'-separated part must start and end with a lowercase letter or digit";
    }
    if (![...label].every((c) => isLowerAlnum(c) || c === '-')) {
      return "may have only lowercase letters, digits, '-' and '.'";
    }
  }
  return null;
}

/** A label key: an optional DNS-subdomain prefix and `/`, then a name of 1
 * to 63 alphanumerics, `-`, `_` and `.`, alphanumeric at both ends: null,
 * or what is wrong. */
export function checkLabelKey(key) {
  const slash = key.lastIndexOf('/');
  if (slash >= 0 && checkDnsSubdomain(key.slice(0, slash)) !== null) {
    return "its prefix (before '/') must be a DNS subdomain";
  }
  const name = key.slice(slash + 1);
  if (name === '') return 'must have a name (after any prefix)';
  if (checkLabelValue(name) !== null) {
    return "its name must have 1 to 63 letters, digits, '-', '_' or '.', a letter or digit at each end";
  }
  return null;
}

/** A label value: empty, or 1 to 63 alphanumerics, `-`, `_` and `.`,
 * alphanumeric at both ends: null, or what is wrong. */
export function checkLabelValue(value) {
  const inner = [...value].every((c) => isAlnum(c) || c === '-' || c === '_' || c === '.');
  const ends = value === '' || (isAlnum(value.charAt(0)) && isAlnum(value.charAt(value.length - 1)));
  if (utf8Length(value) > 63 || !inner || !ends) {
    return "must have at most 63 letters, digits, '-', '_' or '.', a letter or digit at each end";
  }
  return null;
}

const isLowerAlnum = (c) => (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
const isAlnum = (c) => isLowerAlnum(c) || (c >= 'A' && c <= 'Z');

// Lengths in UTF-8 bytes, as Rust counts them, so a long non-ASCII name
// gets the same message in every language.
function utf8Length(text) {
  let bytes = 0;
  for (const c of text) {
    const code = c.codePointAt(0);
    bytes += code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4;
  }
  return bytes;
}

/** A policy's settings, from the `settings` of its berth.yaml entry. A
 * subclass declares their shape in `static schema` and checks what the
 * shape cannot in `validate()`, throwing a SettingsError.
 *
 * A schema is an object of fields; each field is `'string'`, `'number'`,
 * `'integer'`, `'boolean'`, `'any'`, a nested schema object, a one-element
 * array `[schema]` for a list, or `optional(schema)`. Every field not
 * wrapped in `optional` is required, and a field not in the schema is an
 * error, as in the Rust SDK (serde's `deny_unknown_fields`). */
export class Settings {
  static schema = {};

  /** Parse and validate settings JSON text into an instance of this class. */
  static parse(text) {
    let value;
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw new SettingsError('', `invalid JSON: ${err.message}`);
    }
    const settings = Object.assign(new this(), check(this.schema, value, ''));
    settings.validate();
    return settings;
  }

  /** Check what the schema cannot: ranges, non-empty lists, consistency. */
  validate() {}
}

const OPTIONAL = Symbol('optional');

/** A settings field that may be left out (it is then undefined). */
export function optional(schema) {
  return { [OPTIONAL]: schema };
}

function check(schema, value, field) {
  const at = (name) => (field === '' ? name : `${field}.${name}`);
  if (Array.isArray(schema)) {
    if (!Array.isArray(value)) throw new SettingsError(field, `invalid type: ${typeName(value)}, expected a list`);
    return value.map((item, i) => check(schema[0], item, `${field}[${i}]`));
  }
  if (typeof schema === 'object') {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new SettingsError(field, `invalid type: ${typeName(value)}, expected an object`);
    }
    const known = Object.keys(schema);
    for (const name of Object.keys(value)) {
      if (!known.includes(name)) {
        throw new SettingsError(at(name), `unknown field \`${name}\`, ${expectedFields(known)}`);
      }
    }
    const out = {};
    for (const [name, inner] of Object.entries(schema)) {
      const isOptional = typeof inner === 'object' && inner !== null && OPTIONAL in inner;
      if (!(name in value) || (isOptional && value[name] === null)) {
        if (!isOptional) throw new SettingsError(field, `missing field \`${name}\``);
        out[name] = undefined;
        continue;
      }
      out[name] = check(isOptional ? inner[OPTIONAL] : inner, value[name], at(name));
    }
    return out;
  }
  const ok = {
    string: typeof value === 'string',
    number: typeof value === 'number',
    integer: Number.isInteger(value),
    boolean: typeof value === 'boolean',
    any: true,
  }[schema];
  if (ok === undefined) throw new Error(`settings schema: unknown type ${JSON.stringify(schema)} at ${field}`);
  if (!ok) throw new SettingsError(field, `invalid type: ${typeName(value)}, expected ${article(schema)}`);
  return value;
}

// As serde words it, so every language reads alike.
function expectedFields(known) {
  const quoted = known.map((k) => `\`${k}\``);
  if (quoted.length === 0) return 'there are no fields';
  if (quoted.length === 1) return `expected ${quoted[0]}`;
  if (quoted.length === 2) return `expected ${quoted[0]} or ${quoted[1]}`;
  return `expected one of ${quoted.join(', ')}`;
}

function typeName(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'an object';
  return `${typeof value} ${JSON.stringify(value)}`;
}

function article(type) {
  return type === 'integer' ? 'an integer' : `a ${type}`;
}

// The last settings parsed, with their text. berth calls a warm instance
// with the same settings again and again, so they are parsed once per
// instance, not once per request. It holds only what the settings text
// determines: nothing of any request.
let lastSettings = null;

function parsedSettings(SettingsClass, text) {
  if (lastSettings === null || lastSettings.text !== text || lastSettings.class !== SettingsClass) {
    lastSettings = { text, class: SettingsClass, settings: SettingsClass.parse(text) };
  }
  return lastSettings.settings;
}

/** The component's two exports from a settings class and an evaluate
 * function `(request, settings) => Verdict` (Rust: `export_plugin!`).
 * A PolicyError or SettingsError becomes the WIT `err`; any other
 * exception is a bug, logged at `error` and turned into a trap, which
 * berth reports as a panic. Returns `{validateSettings, evaluate}`. */
export function exportPlugin(SettingsClass, evaluate) {
  return {
    validateSettings(settings) {
      guard(() => parsedSettings(SettingsClass, settings));
    },
    evaluate(request, object, oldObject, settings, context) {
      return guard(() => {
        const parsed = parsedSettings(SettingsClass, settings);
        const verdict = evaluate(new Request(request, object, oldObject, context ?? {}), parsed);
        if (!(verdict instanceof Verdict)) {
          throw new PolicyError(`evaluate returned ${typeName(verdict)}, not a Verdict`);
        }
        return toWit(verdict);
      });
    },
  };
}

// componentize-js makes a thrown string the `err` of a `result`, and traps
// on a thrown Error.
function guard(call) {
  try {
    return call();
  } catch (err) {
    if (err instanceof PolicyError || err instanceof SettingsError) throw err.message;
    log.error(`panic: ${describe(err)}`);
    throw err;
  }
}

// An exception as an author needs it: what, then its whole stack (the
// frames name file, line and column).
function describe(err) {
  const head = String(err);
  const stack = typeof err?.stack === 'string' ? err.stack.trimEnd() : '';
  // V8 starts a stack with the message; SpiderMonkey (componentize-js) does not.
  const frames = stack.startsWith(head) ? stack.slice(head.length).replace(/^\n/, '') : stack;
  return frames ? `${head}\n${frames}` : head;
}

function toWit(verdict) {
  const { decision } = verdict;
  const wit =
    decision.tag === 'mutate' ? { tag: 'mutate', val: decision.val.toJson() } : decision;
  return { decision: wit, warnings: verdict.warnings };
}
