import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync, cpSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { homedir } from 'node:os';
import { join, posix } from 'node:path';
import { pathToFileURL } from 'node:url';
import ts from 'typescript';

/** Where upstream keeps the JS SDK inside the E2B repository. */
const SDK_DIR = 'packages/js-sdk';

/**
 * Copies upstream `packages/js-sdk/tests` and `package.json` into `dest`. `repo` is a work tree
 * (has packages/js-sdk/tests) or a git directory (read with git archive, as the mirror is).
 * Returns the upstream commit, or 'work tree'.
 */
export function extractTests(repo: string, dest: string): string {
  mkdirSync(dest, { recursive: true });
  if (existsSync(join(repo, SDK_DIR, 'tests'))) {
    cpSync(join(repo, SDK_DIR, 'tests'), join(dest, 'tests'), { recursive: true });
    cpSync(join(repo, SDK_DIR, 'package.json'), join(dest, 'upstream-package.json'));
    return 'work tree';
  }
  const git = (args: string[]) => execFileSync('git', ['--git-dir', repo, ...args], { maxBuffer: 1 << 28 });
  const commit = git(['rev-parse', 'HEAD']).toString().trim();
  const tar = git(['archive', 'HEAD', `${SDK_DIR}/tests`]);
  execFileSync('tar', ['-x', '-C', dest, '--strip-components=2'], { input: tar });
  writeFileSync(join(dest, 'upstream-package.json'), git(['show', `HEAD:${SDK_DIR}/package.json`]));
  return commit;
}

/** Every *.test.ts / *.test.tsx under tests/, relative to it, sorted. */
export function listTestFiles(testsDir: string): string[] {
  return (readdirSync(testsDir, { recursive: true }) as string[])
    .map((f) => f.split('\\').join('/'))
    .filter((f) => /\.test\.tsx?$/.test(f))
    .sort();
}

/** Where SDK-relative specifier `spec`, written in tests/`file`, points: 'root', 'internal', 'dist' or none. */
function sdkTarget(file: string, spec: string): 'root' | 'internal' | 'dist' | undefined {
  if (!spec.startsWith('.')) return undefined;
  const resolved = posix.normalize(posix.join('tests', posix.dirname(file), spec));
  if (['src', 'src/index', 'src/index.js', 'src/index.ts'].includes(resolved)) return 'root';
  if (resolved.startsWith('src/')) return 'internal';
  if (resolved.startsWith('dist/')) return 'dist';
  return undefined;
}

export interface Analysis {
  /** Why the file cannot run against the npm package (needs SDK internals), if it cannot. */
  internals?: string;
  /** Specifiers to rewrite to 'e2b'. */
  rewrite: Set<string>;
  /** Local helper files it imports (relative to tests/). */
  helpers: string[];
  /** Bare packages it imports. */
  packages: Set<string>;
}

const VALUE_OK = new Set(['default']);

/**
 * Reads one test file the way vitest will run it: imports used only as types vanish (vitest
 * strips types and elides them), so only value imports from the SDK must exist in the npm
 * package. Mocking an SDK module, or importing one that the package does not export, means the
 * test needs SDK internals.
 */
export function analyze(testsDir: string, file: string, exported: Set<string>): Analysis {
  const text = readFileSync(join(testsDir, file), 'utf8');
  const result: Analysis = { rewrite: new Set(), helpers: [], packages: new Set() };
  const problems: string[] = [];
  const src = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TSX);
  const visit = (node: ts.Node): void => {
    if (ts.isCallExpression(node) && node.arguments[0] && ts.isStringLiteral(node.arguments[0])) {
      const spec = node.arguments[0].text;
      const target = sdkTarget(file, spec);
      const callee = node.expression.getText(src);
      if (target && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
        if (target === 'root') result.rewrite.add(spec);
        else problems.push(`imports ${spec} at run time`);
      } else if (target) {
        problems.push(`${callee}('${spec}')`);
      } else if (/^vi\.(do)?[mM]ock$/.test(callee) && !spec.startsWith('.')) {
        problems.push(`${callee}('${spec}')`);
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(src);

  // What is left after type erasure is what vitest will import.
  const js = ts.transpileModule(text, {
    compilerOptions: {
      module: ts.ModuleKind.ESNext,
      target: ts.ScriptTarget.ES2022,
      jsx: ts.JsxEmit.Preserve,
    },
    fileName: file,
  }).outputText;
  const out = ts.createSourceFile('out.js', js, ts.ScriptTarget.Latest, true, ts.ScriptKind.JS);
  for (const stmt of out.statements) {
    if (!(ts.isImportDeclaration(stmt) || ts.isExportDeclaration(stmt))) continue;
    if (!stmt.moduleSpecifier || !ts.isStringLiteral(stmt.moduleSpecifier)) continue;
    const spec = stmt.moduleSpecifier.text;
    const target = sdkTarget(file, spec);
    if (!target) {
      if (spec.startsWith('.')) result.helpers.push(posix.normalize(posix.join(posix.dirname(file), spec)));
      else if (!spec.startsWith('node:') && !builtinModules.includes(spec))
        result.packages.add(
          spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!,
        );
      continue;
    }
    if (target === 'dist') {
      problems.push(`imports the built SDK (${spec})`);
      continue;
    }
    const names: string[] = [];
    if (ts.isImportDeclaration(stmt)) {
      const clause = stmt.importClause;
      if (clause?.name) names.push('default');
      const bindings = clause?.namedBindings;
      if (bindings && ts.isNamespaceImport(bindings)) names.push('*');
      if (bindings && ts.isNamedImports(bindings))
        for (const el of bindings.elements) names.push((el.propertyName ?? el.name).text);
    } else if (stmt.exportClause && ts.isNamedExports(stmt.exportClause)) {
      for (const el of stmt.exportClause.elements) names.push((el.propertyName ?? el.name).text);
    }
    // The package root is the public API by definition: a name it lacks is undefined there, as
    // it would be in upstream's source (tests/sandbox/commands/kill.test.ts imports one such).
    const missing =
      target === 'root' ? [] : names.filter((n) => n === '*' || (!exported.has(n) && !VALUE_OK.has(n)));
    if (missing.length) problems.push(`{ ${missing.join(', ')} } from ${spec}`);
    else result.rewrite.add(spec);
  }
  // Type-only imports of SDK modules are erased by vitest but still name the path: point them
  // at the package too, so nothing resolves into a src/ that is not there.
  for (const m of text.matchAll(/from\s+['"]([^'"]+)['"]/g))
    if (sdkTarget(file, m[1]!) && !problems.some((p) => p.includes(m[1]!))) result.rewrite.add(m[1]!);
  if (problems.length) result.internals = `needs SDK internals: ${problems.join('; ')}`;
  return result;
}

/** Rewrites the given SDK specifiers in tests/`file` to the npm package. */
export function rewriteImports(testsDir: string, file: string, specs: Set<string>): void {
  if (!specs.size) return;
  const path = join(testsDir, file);
  let text = readFileSync(path, 'utf8');
  for (const spec of specs) {
    const quoted = spec.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    text = text.replace(new RegExp(`(from\\s+|import\\(\\s*)(['"])${quoted}\\2`, 'g'), `$1$2e2b$2`);
  }
  writeFileSync(path, text);
}

/** Resolves a helper import (`../setup.js`, `./helpers`) to a file under tests/, or undefined. */
export function helperFile(testsDir: string, helper: string): string | undefined {
  const base = helper.replace(/\.(js|mjs|ts)$/, '');
  return ['.ts', '.tsx', '/index.ts', ''].map((ext) => base + ext).find((f) => existsSync(join(testsDir, f)));
}

/**
 * An npm project with `e2b@version`, vitest and the packages the selected tests import, in a
 * cache that outlives a run (keyed by its package.json). Versions of the extra packages come
 * from upstream's package.json. Returns its directory.
 */
export function installSdk(
  version: string,
  upstreamPkg: string,
  packages: Set<string>,
  log: (s: string) => void,
) {
  const upstream = JSON.parse(readFileSync(upstreamPkg, 'utf8')) as {
    dependencies?: Record<string, string>;
    devDependencies?: Record<string, string>;
  };
  const known = { ...upstream.dependencies, ...upstream.devDependencies };
  const deps: Record<string, string> = { e2b: version, vitest: known.vitest ?? '^4' };
  for (const p of [...packages].sort()) if (!(p in deps)) deps[p] = known[p] ?? '*';
  const pkg = JSON.stringify({ private: true, type: 'module', dependencies: deps }, null, 2) + '\n';
  const cacheRoot = process.env.COVE_CONFORMANCE_CACHE ?? join(homedir(), '.cache', 'cove-conformance');
  const dir = join(cacheRoot, `e2b-${version}`);
  mkdirSync(dir, { recursive: true });
  const pkgPath = join(dir, 'package.json');
  const fresh =
    existsSync(pkgPath) && readFileSync(pkgPath, 'utf8') === pkg && existsSync(join(dir, 'node_modules'));
  if (!fresh) {
    writeFileSync(pkgPath, pkg);
    log(
      `installing ${Object.entries(deps)
        .map(([n, v]) => `${n}@${v}`)
        .join(' ')} from the npm registry into ${dir}`,
    );
    execFileSync('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error'], {
      cwd: dir,
      stdio: 'inherit',
    });
  }
  const installed = JSON.parse(readFileSync(join(dir, 'node_modules', 'e2b', 'package.json'), 'utf8')) as {
    version: string;
  };
  if (installed.version !== version) throw new Error(`installed e2b ${installed.version}, wanted ${version}`);
  return dir;
}

/** The names the npm package exports at run time. */
export async function runtimeExports(sdkDir: string): Promise<Set<string>> {
  const pkgDir = join(sdkDir, 'node_modules', 'e2b');
  const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as {
    module?: string;
    main: string;
  };
  const mod = (await import(pathToFileURL(join(pkgDir, pkg.module ?? pkg.main)).href)) as Record<
    string,
    unknown
  >;
  return new Set(Object.keys(mod));
}
