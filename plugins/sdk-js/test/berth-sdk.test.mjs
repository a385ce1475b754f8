// The SDK's own tests, natively: from plugins/sdk-js,
//   node --import ./test/register.mjs --test test/berth-sdk.test.mjs
// berth's Rust suite runs them (tests/suites/authors.rs); berth plugin new
// leaves this directory out of projects.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  checkDnsSubdomain,
  checkLabelKey,
  checkLabelValue,
  exportPlugin,
  log,
  optional,
  Patch,
  pointer,
  PolicyError,
  Request,
  Settings,
  SettingsError,
  Verdict,
} from '../berth-sdk.js';
import { lines } from './host.mjs';

test('pointer escapes ~ before /', () => {
  assert.equal(pointer(['metadata', 'labels', 'example.com/checked', 'a~b']), '/metadata/labels/example.com~1checked/a~0b');
  assert.equal(pointer(['~1']), '/~01');
  assert.equal(pointer([]), '');
});

test('a patch is RFC 6902 JSON, op by op', () => {
  const patch = new Patch().add('/a', { k: '<v>' }).replace('/b', null).remove('/c').test('/d', 1);
  assert.equal(
    patch.toJson(),
    '[{"op":"add","path":"/a","value":{"k":"<v>"}},{"op":"replace","path":"/b","value":null},' +
      '{"op":"remove","path":"/c"},{"op":"test","path":"/d","value":1}]',
  );
  assert.equal(JSON.stringify({ patch }), `{"patch":${patch.toJson()}}`);
  assert.equal(new Patch().append('/l', 0, ['x', 'y']).toJson(), '[{"op":"add","path":"/l","value":["x","y"]}]');
  assert.equal(
    new Patch().append('/l', 2, ['x', 'y']).toJson(),
    '[{"op":"add","path":"/l/-","value":"x"},{"op":"add","path":"/l/-","value":"y"}]',
  );
  assert.ok(new Patch().append('/l', 0, []).isEmpty());
});

test('verdicts have the WIT shapes', () => {
  assert.deepEqual(Verdict.allow().decision, { tag: 'allow' });
  const deny = Verdict.deny('no').withWarning('careful');
  assert.deepEqual(deny.decision, { tag: 'deny', val: { message: 'no', code: 403 } });
  assert.deepEqual(deny.warnings, ['careful']);
  assert.equal(deny.isAllowed(), false);
  assert.deepEqual(Verdict.denyWithCode('gone', 410).decision.val, { message: 'gone', code: 410 });
  assert.deepEqual(Verdict.mutate(new Patch()).decision, { tag: 'allow' }, 'an empty patch is an allow');
  const mutate = Verdict.mutate(new Patch().add('/x', 1));
  assert.equal(mutate.decision.tag, 'mutate');
  assert.equal(mutate.patch().toJson(), '[{"op":"add","path":"/x","value":1}]');
});

class TestSettings extends Settings {
  static schema = { label: { key: 'string', value: 'string' }, count: optional('integer') };

  validate() {
    const problem = checkLabelKey(this.label.key);
    if (problem !== null) throw new SettingsError('label.key', problem);
  }
}

function settingsError(text) {
  try {
    TestSettings.parse(text);
  } catch (err) {
    assert.ok(err instanceof SettingsError, `${err}`);
    return err.message;
  }
  assert.fail(`${text} parses`);
}

test('settings errors name the field', () => {
  assert.equal(
    settingsError('{"label": {"key": "a", "value": "b", "extra": 1}}'),
    'settings.label.extra: unknown field `extra`, expected `key` or `value`',
  );
  assert.equal(settingsError('{"label": {"key": "a"}}'), 'settings.label: missing field `value`');
  assert.equal(settingsError('{}'), 'settings: missing field `label`');
  assert.equal(
    settingsError('{"label": {"key": 1, "value": "b"}}'),
    'settings.label.key: invalid type: number 1, expected a string',
  );
  assert.equal(
    settingsError('{"label": {"key": "a", "value": "b"}, "count": 1.5}'),
    'settings.count: invalid type: number 1.5, expected an integer',
  );
  assert.equal(
    settingsError('{"label": {"key": "Ex.com/x", "value": "b"}}'),
    "settings.label.key: its prefix (before '/') must be a DNS subdomain",
  );
  assert.match(settingsError('{"label": '), /^settings: invalid JSON: /);
  const good = TestSettings.parse('{"label": {"key": "example.com/checked", "value": "true"}}');
  assert.ok(good instanceof TestSettings);
  assert.deepEqual([good.label.key, good.count], ['example.com/checked', undefined]);
});

// The cases of plugins/sdk/src/names.rs, and the messages word for word.
test('name checks agree with the Rust SDK', () => {
  for (const good of ['regsecret', 'local-storage', 'a.b-c.d', '0x']) assert.equal(checkDnsSubdomain(good), null, good);
  for (const bad of ['', 'Reg', '-a', 'a-', 'a..b', 'a_b', 'a'.repeat(254)]) {
    assert.equal(typeof checkDnsSubdomain(bad), 'string', bad);
  }
  for (const good of ['app', 'example.com/checked', 'a.b/C_d-1', 'k'.repeat(63)]) assert.equal(checkLabelKey(good), null, good);
  for (const bad of ['', '/x', 'Ex.com/x', 'a/', '-a', 'a b', 'k'.repeat(64), 'a/b/c']) {
    assert.equal(typeof checkLabelKey(bad), 'string', bad);
  }
  for (const good of ['', 'true', 'v1.2_3-x']) assert.equal(checkLabelValue(good), null, good);
  for (const bad of ['-x', 'x.', 'a b', 'v'.repeat(64)]) assert.equal(typeof checkLabelValue(bad), 'string', bad);

  assert.equal(checkDnsSubdomain(''), 'must have 1 to 253 characters');
  assert.equal(checkDnsSubdomain('é'.repeat(127)), 'must have 1 to 253 characters', 'UTF-8 bytes, as Rust counts');
  assert.equal(checkDnsSubdomain('a..b'), "each '.'-separated part must start and end with a lowercase letter or digit");
  assert.equal(checkDnsSubdomain('a_b'), "may have only lowercase letters, digits, '-' and '.'");
  assert.equal(checkLabelKey('Ex.com/x'), "its prefix (before '/') must be a DNS subdomain");
  assert.equal(checkLabelKey('a/'), 'must have a name (after any prefix)');
  assert.equal(
    checkLabelKey('a b'),
    "its name must have 1 to 63 letters, digits, '-', '_' or '.', a letter or digit at each end",
  );
  assert.equal(checkLabelValue('x.'), "must have at most 63 letters, digits, '-', '_' or '.', a letter or digit at each end");
});

test('a request parses its objects only when asked, once', () => {
  const request = new Request('{"uid": "u", "kind": {"kind": "Pod"}, "operation": "CREATE"}', '{"metadata": ', undefined);
  assert.equal(request.hasObject(), true, 'a broken object is not read until asked for');
  assert.deepEqual([request.uid, request.kind, request.namespace], ['u', { group: '', kind: 'Pod' }, null]);
  assert.throws(() => request.object(), (err) => err instanceof PolicyError && err.message.startsWith('object: '));
  assert.throws(() => request.oldObject(), { message: 'Create request has no oldObject' });
  assert.equal(new Request('{"operation": "DELETE"}', 'null', '{}').hasObject(), false);

  const good = new Request('{"operation": "UPDATE"}', '{"metadata": {"name": "p"}}', '{"metadata": {}}');
  const object = good.object();
  assert.equal(object.metadata.name, 'p');
  assert.equal(good.object(), object, 'parsed once');
  assert.deepEqual(good.oldObject(), { metadata: {} });
});

test('requireKind says what the plugin applies to', () => {
  const request = new Request('{"kind": {"kind": "PersistentVolumeClaim"}}');
  assert.throws(() => request.requireKind('Pod', 'pod-policy'), {
    name: 'PolicyError',
    message: 'pod-policy applies to Pods, not PersistentVolumeClaim',
  });
  assert.throws(() => request.requireKind('Ingress', 'p'), /applies to Ingresses,/);
  assert.throws(() => request.requireKind('NetworkPolicy', 'p'), /applies to NetworkPolicies,/);
  request.requireKind('PersistentVolumeClaim', 'p');
});

test('exportPlugin makes errors the WIT err and verdicts the WIT variant', () => {
  const plugin = exportPlugin(TestSettings, (request, settings) => {
    log.debug(`labelling ${request.name}`);
    if (request.name === 'fail') throw new PolicyError('no cluster data');
    if (request.name === 'bug') throw new TypeError('oops');
    return Verdict.mutate(new Patch().add(pointer(['metadata', 'labels', settings.label.key]), settings.label.value));
  });
  const settings = '{"label": {"key": "example.com/checked", "value": "true"}}';
  assert.throws(() => plugin.validateSettings('{"label": {"key": "-", "value": ""}}'), (err) =>
    err === "settings.label.key: its name must have 1 to 63 letters, digits, '-', '_' or '.', a letter or digit at each end",
  );
  plugin.validateSettings(settings);

  lines.length = 0;
  assert.deepEqual(plugin.evaluate('{"name": "p"}', '{}', undefined, settings, undefined), {
    decision: { tag: 'mutate', val: '[{"op":"add","path":"/metadata/labels/example.com~1checked","value":"true"}]' },
    warnings: [],
  });
  assert.deepEqual(lines, [{ level: 'debug', message: 'labelling p' }]);
  assert.throws(() => plugin.evaluate('{"name": "fail"}', '{}', undefined, settings), (err) => err === 'no cluster data');
  assert.throws(() => plugin.evaluate('{"name": "bug"}', '{}', undefined, settings), TypeError);
  assert.equal(lines.at(-1).level, 'error');
  // The message once, then the stack: the bug's file and line.
  const [first, ...frames] = lines.at(-1).message.split('\n');
  assert.equal(first, 'panic: TypeError: oops');
  assert.match(frames[0], /berth-sdk\.test\.mjs:\d+:\d+/);
});
