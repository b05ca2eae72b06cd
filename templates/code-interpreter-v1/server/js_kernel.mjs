// A JavaScript (and TypeScript) kernel for the code interpreter: Node runs each cell in its
// own global scope, so that state persists between cells as in a notebook. It speaks a small
// subset of Jupyter's messages (stream, execute_input, execute_result, error, status idle) as
// JSON lines on the socket whose fd is COVE_CTL_FD, so that jskernel.py and outputs.py treat
// it like a Jupyter kernel. Requests are {msg_id, code, silent, typescript}.
//
// Why not ijavascript, as E2B's template: it needs the zeromq npm package, whose install fetches
// a prebuilt binary from outside the npm registry or compiles it; Debian packages neither.
//
// A cell is rewritten (with acorn, which Debian's nodejs depends on) into one async function,
// so that top-level await works, with its top-level declarations and imports turned into
// assignments to globals, so that they outlive the cell and a cell can run twice:
//   const {a} = x; import fs from 'fs'; a + 1
//   -> var a, fs; (async () => { ({a} = x); ({default: fs} = await __coveImport("fs")); return (a + 1); })()
import { Socket } from 'node:net';
import { builtinModules, createRequire } from 'node:module';
import { join, isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { inspect } from 'node:util';
import vm from 'node:vm';
import * as acorn from '/usr/share/nodejs/acorn/dist/acorn.mjs';

const ctl = new Socket({ fd: Number(process.env.COVE_CTL_FD), readable: true, writable: true });
let current = null; // msg_id of the execution running now
let count = 0;

function send(msgId, msgType, content) {
  const msg = {
    msg_type: msgType,
    parent_header: { msg_id: msgId },
    header: { date: new Date().toISOString() },
    content,
  };
  ctl.write(JSON.stringify(msg) + '\n');
}

// Output written while a cell runs is that cell's; console.* ends up here too.
for (const name of ['stdout', 'stderr']) {
  const stream = process[name];
  const original = stream.write.bind(stream);
  stream.write = (chunk, encoding, cb) => {
    if (current === null) return original(chunk, encoding, cb);
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    send(current, 'stream', { name, text });
    if (typeof encoding === 'function') encoding();
    else if (typeof cb === 'function') cb();
    return true;
  };
}

const isBuiltin = (spec) => spec.startsWith('node:') || builtinModules.includes(spec.split('/')[0]);

/** import() relative to the kernel's cwd, as a user expects, not to this file. */
globalThis.__coveImport = async (spec) => {
  if (isBuiltin(spec)) return import(spec);
  if (spec.startsWith('.') || isAbsolute(spec)) return import(pathToFileURL(resolve(spec)).href);
  try {
    return await import(pathToFileURL(createRequire(join(process.cwd(), 'index.js')).resolve(spec)).href);
  } catch {
    return import(spec);
  }
};
globalThis.require = createRequire(join(process.cwd(), 'index.js'));

function names(pattern, out) {
  switch (pattern.type) {
    case 'Identifier':
      out.push(pattern.name);
      break;
    case 'ObjectPattern':
      for (const p of pattern.properties) names(p.type === 'RestElement' ? p.argument : p.value, out);
      break;
    case 'ArrayPattern':
      for (const p of pattern.elements) if (p) names(p, out);
      break;
    case 'AssignmentPattern':
      names(pattern.left, out);
      break;
    case 'RestElement':
      names(pattern.argument, out);
      break;
  }
  return out;
}

function rewrite(code) {
  const ast = acorn.parse(code, {
    ecmaVersion: 'latest',
    sourceType: 'module',
    allowAwaitOutsideFunction: true,
    allowReturnOutsideFunction: true,
    allowHashBang: true,
  });
  const hoisted = new Set();
  const exported = []; // function declarations: made global at the top of the body
  const edits = []; // [start, end, text], non-overlapping
  const src = (node) => code.slice(node.start, node.end);
  const body = ast.body;
  for (const stmt of body) {
    let node = stmt;
    if (node.type === 'ExportNamedDeclaration' || node.type === 'ExportDefaultDeclaration') {
      if (!node.declaration) {
        edits.push([node.start, node.end, '']);
        continue;
      }
      edits.push([node.start, node.declaration.start, '']);
      node = node.declaration;
    }
    if (node.type === 'ImportDeclaration') {
      const parts = [];
      let ns = null;
      for (const s of node.specifiers) {
        hoisted.add(s.local.name);
        if (s.type === 'ImportNamespaceSpecifier') ns = s.local.name;
        else if (s.type === 'ImportDefaultSpecifier') parts.push(`default: ${s.local.name}`);
        else parts.push(`${JSON.stringify(s.imported.name ?? s.imported.value)}: ${s.local.name}`);
      }
      const load = `await __coveImport(${JSON.stringify(node.source.value)})`;
      let text = ns ? `${ns} = ${load};` : parts.length ? `({${parts.join(', ')}} = ${load});` : `${load};`;
      if (ns && parts.length) text += ` ({${parts.join(', ')}} = ${ns});`;
      edits.push([node.start, node.end, text]);
    } else if (node.type === 'VariableDeclaration') {
      const assigns = node.declarations.map((d) => {
        names(d.id, []).forEach((n) => hoisted.add(n));
        return `(${src(d.id)} = ${d.init ? src(d.init) : 'undefined'})`;
      });
      edits.push([node.start, node.end, `${assigns.join(', ')};`]);
    } else if (node.type === 'ClassDeclaration' && node.id) {
      hoisted.add(node.id.name);
      edits.push([node.start, node.start, `${node.id.name} = `]);
      edits.push([node.end, node.end, ';']);
    } else if (node.type === 'FunctionDeclaration' && node.id) {
      exported.push(node.id.name); // stays a declaration (hoisted in the cell), copied to a global
    }
  }
  const last = body[body.length - 1];
  if (last && last.type === 'ExpressionStatement') {
    // The statement's own text, not the expression's: acorn's expression range leaves out
    // parentheses around it, as in `({a: 1})`.
    edits.push([last.start, last.end, `return (${src(last).replace(/;\s*$/, '')});`]);
  }
  edits.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let out = '';
  let at = 0;
  for (const [start, end, text] of edits) {
    out += code.slice(at, start) + text;
    at = Math.max(at, end);
  }
  out += code.slice(at);
  const vars = [...hoisted];
  const fns = exported.map((n) => `globalThis[${JSON.stringify(n)}] = ${n};`).join(' ');
  return `${vars.length ? `var ${vars.join(', ')};` : ''}(async () => { ${fns}\n${out}\n})()`;
}

let ts = null;
function transpile(code) {
  ts ??= createRequire(import.meta.url)('/usr/share/nodejs/typescript');
  const opts = { compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext } };
  return ts.transpileModule(code, opts).outputText;
}

function errorContent(err) {
  const e = err instanceof Error ? err : new Error(inspect(err));
  // The frames below the cell are this kernel's: not the user's business.
  const stack = (e.stack ?? `${e.name}: ${e.message}`).split('\n');
  const ours = stack.findIndex((line) => /\(node:vm:|js_kernel\.mjs|sigintHandlersWrap/.test(line));
  return { ename: e.name, evalue: e.message, traceback: ours === -1 ? stack : stack.slice(0, ours) };
}

function display(value) {
  if (value === undefined) return null;
  return { 'text/plain': typeof value === 'string' ? `'${value}'` : inspect(value, { depth: 4 }) };
}

let interrupted = null; // rejects the pending cell on SIGINT while it awaits
process.on('SIGINT', () => interrupted?.());

async function run({ msg_id: msgId, code, silent, typescript }) {
  current = msgId;
  send(msgId, 'status', { execution_state: 'busy' });
  if (!silent) send(msgId, 'execute_input', { code, execution_count: ++count });
  try {
    const js = rewrite(typescript ? transpile(code) : code);
    const script = new vm.Script(js, {
      filename: `cell-${count}.js`,
      importModuleDynamically: (s) => __coveImport(s),
    });
    const pending = script.runInThisContext({ breakOnSigint: true });
    const value = await Promise.race([
      pending,
      new Promise(
        (_, reject) =>
          (interrupted = () =>
            reject(Object.assign(new Error('Interrupted'), { name: 'KeyboardInterrupt' }))),
      ),
    ]);
    const data = silent ? null : display(value);
    if (data) send(msgId, 'execute_result', { data, metadata: {}, execution_count: count });
  } catch (err) {
    if (!silent) send(msgId, 'error', errorContent(err));
  } finally {
    interrupted = null;
    current = null;
    send(msgId, 'status', { execution_state: 'idle' });
  }
}

// Requests run one after another, in order.
let queue = Promise.resolve();
let buffered = '';
ctl.on('data', (chunk) => {
  buffered += chunk.toString('utf8');
  for (let i = buffered.indexOf('\n'); i !== -1; i = buffered.indexOf('\n')) {
    const line = buffered.slice(0, i);
    buffered = buffered.slice(i + 1);
    if (line.trim()) queue = queue.then(() => run(JSON.parse(line)));
  }
});
ctl.on('end', () => process.exit(0));
// A rejected promise nobody awaits must not end the kernel (Node's default), only be reported.
process.on('unhandledRejection', (err) => process.stderr.write(`unhandled rejection: ${inspect(err)}\n`));
send(null, 'status', { execution_state: 'starting' });
