// componentize-go.mjs: make a berth policy component from a Go wasip1 reactor
// (`GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared`), with jco's
// wasm-tools from npm.
//
//   node componentize-go.mjs CORE.wasm WIT WORLD OUT.wasm
//
// jco is imported from the project's node_modules, or from the package
// directory BERTH_JCO names (CI's .ci/node/node_modules/@bytecodealliance/jco).
//
// What it does to the Go module before wit-component adapts it:
// - A Go reactor must run `_initialize` before any export. wit-component's
//   fixup calls `_initialize` once the component is instantiated; every
//   export (and `_initialize` itself) is wrapped so that initialization
//   happens once, whichever comes first.
// - While Go initializes, its first WASI calls make the preview1 adapter
//   allocate its state through the module's `cabi_realloc`, that is, into Go
//   before Go can run. During `_initialize` the wrapped `cabi_realloc`
//   allocates from a static arena instead (berth_sdk.go's `adapterArena`,
//   found by its marker in the data section), and `environ_sizes_get` is
//   called first so that the adapter's state is in place before Go runs.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Buffer } from 'node:buffer';

const { componentEmbed, componentNew, preview1AdapterReactorPath } = await import(
  process.env.BERTH_JCO ? pathToFileURL(join(process.env.BERTH_JCO, 'dist', 'api.js')).href : '@bytecodealliance/jco'
);

const [corePath, witPath, world, outPath] = process.argv.slice(2);
if (!outPath) {
  console.error('usage: node componentize-go.mjs CORE.wasm WIT WORLD OUT.wasm');
  process.exit(2);
}

function readU32(bytes, pos) {
  let result = 0, shift = 0, byte;
  do {
    byte = bytes[pos++];
    result |= (byte & 0x7f) << shift;
    shift += 7;
  } while (byte & 0x80);
  return [result >>> 0, pos];
}

function u32(n) {
  const out = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

// A signed LEB128, for i32.const.
function i32(n) {
  const out = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

// berth_sdk.go's adapterArena starts with these bytes; its size follows them
// as a little-endian u32.
const ARENA_MARKER = new TextEncoder().encode('berth-adapter-arena:');

function findArena(module, data) {
  let [count, p] = readU32(module, data.start);
  for (let i = 0; i < count; i++) {
    const kind = module[p++];
    if (kind !== 0) throw new Error(`data segment kind ${kind} not handled`);
    if (module[p] !== 0x41) throw new Error('data segment offset is not an i32.const');
    let offset, shift = 0, byte, q = p + 1;
    offset = 0;
    do { byte = module[q++]; offset |= (byte & 0x7f) << shift; shift += 7; } while (byte & 0x80);
    if (shift < 32 && (byte & 0x40)) offset |= -1 << shift;
    p = q + 1; // past the `end`
    let size; [size, p] = readU32(module, p);
    const segment = module.subarray(p, p + size);
    p += size;
    const at = Buffer.from(segment).indexOf(Buffer.from(ARENA_MARKER));
    if (at >= 0) {
      const sizeAt = at + ARENA_MARKER.length;
      const arenaSize = segment[sizeAt] | (segment[sizeAt + 1] << 8) | (segment[sizeAt + 2] << 16) | (segment[sizeAt + 3] << 24);
      return { start: offset + at, size: arenaSize };
    }
  }
  throw new Error('no adapter arena in the module: is berth_sdk.go part of the build?');
}

function name(bytes, pos) {
  const [len, start] = readU32(bytes, pos);
  return [new TextDecoder().decode(bytes.subarray(start, start + len)), start + len];
}

// Large byte runs stay Uint8Arrays: spreading them into arrays overflows the stack.
function bytes(...parts) {
  return Buffer.concat(parts.map((p) => (p instanceof Uint8Array ? p : Uint8Array.from(p))));
}

function section(id, payload) {
  return bytes([id, ...u32(payload.length)], payload);
}

function vector(items) {
  return [...u32(items.length), ...items.flat()];
}

/** Wrap every exported function but `_initialize` with a lazy call to it. */
function initializeLazily(module) {
  const sections = [];
  let pos = 8;
  while (pos < module.length) {
    const id = module[pos];
    const [size, start] = readU32(module, pos + 1);
    sections.push({ id, start, end: start + size, raw: module.subarray(pos, start + size) });
    pos = start + size;
  }
  const find = (id) => sections.find((s) => s.id === id);
  const items = (s) => {
    if (!s) return [0, 0];
    return readU32(module, s.start);
  };

  // Imported functions come first in the function index space.
  let importedFuncs = 0, importedGlobals = 0;
  const importedFunc = {};
  const imports = find(2);
  if (imports) {
    let [count, p] = items(imports);
    for (let i = 0; i < count; i++) {
      let moduleName, fieldName;
      [moduleName, p] = name(module, p);
      [fieldName, p] = name(module, p);
      const kind = module[p++];
      if (kind === 0) { [, p] = readU32(module, p); importedFunc[`${moduleName}.${fieldName}`] = importedFuncs++; }
      else if (kind === 1) { p++; const flags = module[p++]; [, p] = readU32(module, p); if (flags & 1) [, p] = readU32(module, p); }
      else if (kind === 2) { const flags = module[p++]; [, p] = readU32(module, p); if (flags & 1) [, p] = readU32(module, p); }
      else if (kind === 3) { p += 2; importedGlobals++; }
      else throw new Error(`import kind ${kind} not handled`);
    }
  }

  const funcs = find(3);
  let [funcCount, fp] = items(funcs);
  const funcTypes = [];
  for (let i = 0; i < funcCount; i++) { let t; [t, fp] = readU32(module, fp); funcTypes.push(t); }

  const types = find(1);
  let [typeCount, tp] = items(types);
  const typeParams = [];
  for (let i = 0; i < typeCount; i++) {
    if (module[tp++] !== 0x60) throw new Error('unexpected type form');
    let n; [n, tp] = readU32(module, tp);
    typeParams.push(n); tp += n;
    [n, tp] = readU32(module, tp); tp += n;
  }

  const exportsSection = find(7);
  let [exportCount, ep] = items(exportsSection);
  const exports = [];
  for (let i = 0; i < exportCount; i++) {
    let exportName, index;
    [exportName, ep] = name(module, ep);
    const kind = module[ep++];
    [index, ep] = readU32(module, ep);
    exports.push({ exportName, kind, index });
  }
  const init = exports.find((e) => e.exportName === '_initialize' && e.kind === 0);
  if (!init) throw new Error('no _initialize export: build with -buildmode=c-shared');

  const globalsSection = find(6);
  const [globalCount] = items(globalsSection);
  const flag = importedGlobals + globalCount; // the new global's index
  const arenaFound = findArena(module, find(11));
  // 16 bytes of scratch for the call below, then the adapter's allocations.
  const scratch = (arenaFound.start + ARENA_MARKER.length + 4 + 15) & ~15;
  const arenaStart = scratch + 16;
  // (mut i32) flag: 0 before _initialize, 1 during, 2 after; (mut i32) bump
  const newGlobals = [0x7f, 0x01, 0x41, 0x00, 0x0b, 0x7f, 0x01, 0x41, ...i32(arenaStart), 0x0b];
  const globalsPayload = globalsSection
    ? bytes(u32(globalCount + 2), module.subarray(readU32(module, globalsSection.start)[1], globalsSection.end), newGlobals)
    : bytes(u32(2), newGlobals);

  // The adapter's own memory, before Go runs: a Go byte array that starts
  // with ARENA_MARKER (berth_sdk.go), found in the data section.
  const arena = findArena(module, find(11));
  const bump = flag + 1; // a second new global: the arena's next free byte
  const end = arena.start + arena.size;

  const newFuncTypes = [];
  const newBodies = [];
  const addBody = (type, body) => {
    newFuncTypes.push(type);
    newBodies.push([...u32(body.length), ...body]);
    return importedFuncs + funcCount + newBodies.length - 1;
  };
  // if flag == 0 { flag = 1; environ_sizes_get(scratch); _initialize(); flag = 2 }
  // The adapter allocates its state on the first WASI call that needs it,
  // through cabi_realloc: environ_sizes_get makes that happen now, from the
  // arena, and not later from inside Go (which cannot be re-entered then).
  const environSizes = importedFunc['wasi_snapshot_preview1.environ_sizes_get'];
  if (environSizes === undefined) throw new Error('the module does not import environ_sizes_get');
  const initOnce = [0x23, ...u32(flag), 0x45, 0x04, 0x40,
    0x41, 0x01, 0x24, ...u32(flag),
    0x41, ...i32(scratch), 0x41, ...i32(scratch + 4), 0x10, ...u32(environSizes), 0x1a,
    0x10, ...u32(init.index), 0x41, 0x02, 0x24, ...u32(flag), 0x0b];
  // wit-component's fixup calls `_initialize` once the component is
  // instantiated; the wrapper makes it the same once-only initialization.
  const initWrapper = addBody(funcTypes[init.index - importedFuncs], [0x00, ...initOnce, 0x0b]);
  for (const e of exports.filter((e) => e.kind === 0 && e !== init)) {
    const type = funcTypes[e.index - importedFuncs];
    const forward = [];
    for (let i = 0; i < typeParams[type]; i++) forward.push(0x20, ...u32(i)); // local.get i
    forward.push(0x10, ...u32(e.index)); // call the Go export
    if (e.exportName === 'cabi_realloc') {
      // (old, oldSize, align, newSize): while Go initializes (flag == 1),
      // the adapter's allocations come from the arena.
      const arenaAlloc = [
        0x23, ...u32(flag), 0x41, 0x01, 0x46, 0x04, 0x7f, // if (result i32) flag == 1
        // bump = (bump + align - 1) & -align
        0x23, ...u32(bump), 0x20, 0x02, 0x6a, 0x41, 0x01, 0x6b, 0x41, 0x00, 0x20, 0x02, 0x6b, 0x71, 0x24, ...u32(bump),
        // trap past the arena's end
        0x23, ...u32(bump), 0x20, 0x03, 0x6a, 0x41, ...i32(end), 0x4b, 0x04, 0x40, 0x00, 0x0b,
        0x23, ...u32(bump), // the result
        0x23, ...u32(bump), 0x20, 0x03, 0x6a, 0x24, ...u32(bump),
        0x05, // else
        ...initOnce, ...forward,
        0x0b, 0x0b,
      ];
      e.index = addBody(type, [0x00, ...arenaAlloc]);
    } else {
      e.index = addBody(type, [0x00, ...initOnce, ...forward, 0x0b]);
    }
  }
  init.index = initWrapper;

  const code = find(10);
  const [codeCount, cp] = items(code);
  const codePayload = bytes(u32(codeCount + newBodies.length), module.subarray(cp, code.end), newBodies.flat());
  const funcPayload = bytes(u32(funcCount + newFuncTypes.length), module.subarray(readU32(module, funcs.start)[1], funcs.end), newFuncTypes.flatMap((t) => u32(t)));
  const exportPayload = vector(exports.map((e) => {
    const encoded = new TextEncoder().encode(e.exportName);
    return [...u32(encoded.length), ...encoded, e.kind, ...u32(e.index)];
  }));

  const out = [module.subarray(0, 8)];
  let globalsWritten = false;
  for (const s of sections) {
    // The global section (6) sits between memory (5) and export (7).
    if (!globalsSection && !globalsWritten && s.id >= 7 && s.id !== 0) { out.push(section(6, globalsPayload)); globalsWritten = true; }
    if (s.id === 3) out.push(section(3, funcPayload));
    else if (s.id === 6) { out.push(section(6, globalsPayload)); globalsWritten = true; }
    else if (s.id === 7) out.push(section(7, Uint8Array.from(exportPayload)));
    else if (s.id === 10) out.push(section(10, codePayload));
    else out.push(s.raw);
  }
  return bytes(...out);
}

const core = initializeLazily(await readFile(corePath));
const embedded = await componentEmbed({ binary: core, witSource: await readFile(witPath, 'utf8'), world });
const component = await componentNew(embedded, [['wasi_snapshot_preview1', await readFile(preview1AdapterReactorPath())]]);
await writeFile(outPath, component);
