// sample-policy
//
// Labels every object it is given, and refuses Pods whose images float: an
// image tagged `:latest`, or with neither a tag nor a digest, on any
// container, init container or ephemeral container. On UPDATE only the
// images the update brings are judged, so relabelling an old Pod passes.
//
// Build with `berth plugin build .`, test with `berth test .`.

import {
  checkLabelKey,
  checkLabelValue,
  exportPlugin,
  log,
  pointer,
  Patch,
  Settings,
  SettingsError,
  Verdict,
} from './berth-sdk.js';

/** The policy's `settings` in berth.yaml:
 * `{"label": {"key": "example.com/checked", "value": "true"}}`. */
class SamplePolicySettings extends Settings {
  // Every field is required; any other field is an error that names it.
  static schema = { label: { key: 'string', value: 'string' } };

  validate() {
    const keyProblem = checkLabelKey(this.label.key);
    if (keyProblem !== null) throw new SettingsError('label.key', keyProblem);
    const valueProblem = checkLabelValue(this.label.value);
    if (valueProblem !== null) throw new SettingsError('label.value', valueProblem);
  }
}

/** The verdict on one admission request. */
function evaluate(request, settings) {
  if (!request.hasObject()) {
    return Verdict.allow(); // DELETE: nothing to label or judge.
  }
  const object = request.object();

  if (request.kind.kind === 'Pod') {
    const problems = imageProblems(request, object.spec ?? {});
    if (problems.length > 0) {
      return Verdict.deny(problems.join('; '));
    }
  }

  const { key, value } = settings.label;
  const labels = object.metadata?.labels;
  if (labels === undefined || labels === null) {
    return Verdict.mutate(new Patch().add('/metadata/labels', { [key]: value }));
  }
  const path = pointer(['metadata', 'labels', key]);
  if (!Object.hasOwn(labels, key)) {
    return Verdict.mutate(new Patch().add(path, value));
  }
  const old = labels[key];
  if (old === value) {
    return Verdict.allow();
  }
  return Verdict.mutate(new Patch().replace(path, value)).withWarning(
    `label ${quote(key)} was ${quote(old)}, now ${quote(value)}`,
  );
}

/** The container lists of a Pod spec, in the order they are judged, and
 * how a message names a container of each. */
const CONTAINER_LISTS = [
  ['initContainers', 'init container'],
  ['containers', 'container'],
  ['ephemeralContainers', 'ephemeral container'],
];

/** Every container with an image: `{what, name, image}`, in list order. */
function containers(spec) {
  const found = [];
  for (const [list, what] of CONTAINER_LISTS) {
    for (const container of spec[list] ?? []) {
      if (container.image) found.push({ what, name: container.name ?? '', image: container.image });
    }
  }
  return found;
}

/** One message per floating image, in the order the Pod lists them. On
 * UPDATE, an image the stored Pod already runs was admitted before and is
 * not judged again. */
function imageProblems(request, spec) {
  const admitted = new Set();
  if (request.operation === 'UPDATE') {
    for (const { image } of containers(request.oldObject().spec ?? {})) admitted.add(image);
  }
  const judged = containers(spec).filter(({ image }) => !admitted.has(image));
  log.debug(`judged ${judged.length} images`);
  const problems = [];
  for (const { what, name, image } of judged) {
    const why = floats(image);
    if (why) problems.push(`${what} ${quote(name)}: image ${quote(image)} ${why}`);
  }
  return problems;
}

/** Why an image reference does not pin what runs, if it does not. A digest
 * pins it whatever its tag; the tag is what follows `:` in the last path
 * segment (a registry's port is in the first). */
function floats(image) {
  if (image.includes('@')) return null;
  const last = image.slice(image.lastIndexOf('/') + 1);
  const colon = last.indexOf(':');
  if (colon < 0) return 'has neither tag nor digest';
  if (last.slice(colon + 1) === 'latest') return 'is tagged :latest';
  return null;
}

/** A string in double quotes, as the messages show names and images. */
function quote(text) {
  return JSON.stringify(text);
}

// The component's two exports, WIT `validate-settings` and `evaluate`, made
// from the settings class and the function above (Rust: `export_plugin!`).
const plugin = exportPlugin(SamplePolicySettings, evaluate);
export const validateSettings = plugin.validateSettings;
const evaluateExport = plugin.evaluate;
export { evaluateExport as evaluate };
