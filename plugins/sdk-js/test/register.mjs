// node --import ./test/register.mjs --test test/berth-sdk.test.mjs
//
// Plain node cannot resolve the WIT import `berth:policy/host@0.3.0` that
// componentize-js provides inside a component; this resolve hook maps it to
// host.mjs, for the tests only. The shipped SDK is unchanged.
import { register } from 'node:module';

const host = new URL('./host.mjs', import.meta.url).href;
const hooks = `export async function resolve(specifier, context, next) {
  if (specifier === 'berth:policy/host@0.3.0') return { url: ${JSON.stringify(host)}, shortCircuit: true };
  return next(specifier, context);
}`;
register(`data:text/javascript,${encodeURIComponent(hooks)}`);
