/**
 * An engine's namespace: the named values its tasks see as free variables, and the evaluation of
 * code and shipped functions inside it, notebook-style.
 *
 * @module
 */
import { parseJavaScript } from "../../deps.ts";
import { FunctionSource, ModuleFunction } from "../protocol/wire_types.ts";

// deno-lint-ignore no-explicit-any
type AnyFunction = (...args: any[]) => any;
interface Node {
  type: string;
  start: number;
  end: number;
  [key: string]: unknown;
}

/**
 * The parameter through which a compiled function gets the built-ins it names: the namespace's
 * scope never claims it, so it resolves to the parameter.
 */
const GLOBALS = "__deno_parallel_globals";

/**
 * ECMAScript's built-ins (and the encoders), which a task reads and never rebinds: a shipped
 * function gets them as constants of its own scope, since a name looked up through the
 * namespace's `with` scope costs a trap call each time (85× slower CPU-bound loops on `Math`).
 */
const INTRINSICS = [
  "AggregateError",
  "Array",
  "ArrayBuffer",
  "Atomics",
  "BigInt",
  "BigInt64Array",
  "BigUint64Array",
  "Boolean",
  "DataView",
  "Date",
  "Error",
  "EvalError",
  "Float32Array",
  "Float64Array",
  "Infinity",
  "Int16Array",
  "Int32Array",
  "Int8Array",
  "Intl",
  "JSON",
  "Map",
  "Math",
  "NaN",
  "Number",
  "Object",
  "Promise",
  "Proxy",
  "RangeError",
  "ReferenceError",
  "Reflect",
  "RegExp",
  "Set",
  "SharedArrayBuffer",
  "String",
  "Symbol",
  "SyntaxError",
  "TextDecoder",
  "TextEncoder",
  "TypeError",
  "URIError",
  "Uint16Array",
  "Uint32Array",
  "Uint8Array",
  "Uint8ClampedArray",
  "WeakMap",
  "WeakRef",
  "WeakSet",
  "decodeURIComponent",
  "encodeURIComponent",
  "isFinite",
  "isNaN",
  "parseFloat",
  "parseInt",
  "undefined",
];
const INTRINSIC_NAMES = new RegExp(`(?<![\\w$.])(?:${INTRINSICS.join("|")})(?![\\w$])`, "g");

/**
 * The built-ins `source` names and never assigns (a name assigned is left to the namespace's
 * scope, as it was).
 */
function intrinsicsOf(source: string): string[] {
  const names = new Set(source.match(INTRINSIC_NAMES) ?? []);
  return [...names].filter((name) =>
    !new RegExp(
      `(?<![\\w$])${name}\\s*(?:[-+*/%&|^]|\\*\\*|<<|>>>?|&&|\\|\\||\\?\\?)?=(?!=)|` +
        `(?:\\+\\+|--)\\s*${name}(?![\\w$])|(?<![\\w$])${name}\\s*(?:\\+\\+|--)`,
    ).test(source)
  );
}

const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor as new (
  ...args: string[]
) => AnyFunction;

/**
 * The values of one engine, by name. Code and shipped functions run with these names in scope:
 * reading a name the namespace lacks (and that is not a global) throws `ReferenceError`, and
 * assigning to a name that is not declared locally stores it in the namespace.
 */
export class Namespace {
  /** The namespace's values. */
  readonly values: Record<string, unknown>;
  readonly #scope: object;
  /** Compiled functions by source, with the built-ins each took as constants. */
  readonly #compiled = new Map<string, { fn: AnyFunction; intrinsics: string[] }>();

  constructor(values: Record<string, unknown> = {}) {
    this.values = values;
    // The scope is the values object itself, so that a name it holds is found as fast as a
    // property (a proxy in front of it made every lookup two trap calls: a function of a cell
    // calling another ran 370× slower than locally). Only a name it lacks reaches the proxy at the
    // end of its prototype chain, which leaves globals to the global scope, claims every other
    // name, throws `ReferenceError` on reading it and stores an assignment to it in the values.
    Object.setPrototypeOf(
      values,
      new Proxy(Object.create(null), {
        has: (_, key) => typeof key === "string" && key !== GLOBALS && !(key in globalThis),
        get: (_, key) => {
          if (typeof key !== "string") return undefined;
          throw new ReferenceError(notDefined(key));
        },
        set: (_, key, value, receiver) =>
          Reflect.defineProperty(receiver, key, {
            value,
            writable: true,
            enumerable: true,
            configurable: true,
          }),
      }),
    );
    // Read by `with` at each lookup of a name the values hold; own, it stops there.
    Object.defineProperty(values, Symbol.unscopables, { value: undefined, enumerable: false });
    this.#scope = values;
  }

  /** Turns shipped functions into functions of this namespace; other values pass unchanged. */
  async materialize(value: unknown): Promise<unknown> {
    if (value instanceof FunctionSource) return this.compile(value);
    if (value instanceof ModuleFunction) return await importFunction(value);
    return value;
  }

  /** The function `source` denotes, its free variables resolved in this namespace. */
  compile(source: FunctionSource): AnyFunction {
    const compiled = this.#compiled.get(source.source);
    // A built-in the namespace came to hold since (a pushed `Math`) must be the namespace's.
    if (compiled && !compiled.intrinsics.some((name) => Object.hasOwn(this.values, name))) {
      return compiled.fn;
    }
    const intrinsics = intrinsicsOf(source.source).filter((name) =>
      !Object.hasOwn(this.values, name)
    );
    const fn = this.#evaluate(source.source, intrinsics) ??
      this.#evaluate(
        `${/^async\s/.test(source.source) ? "async " : ""}function ${
          source.source.replace(/^async\s+/, "").replace(/^\*\s*/, "* ")
        }`,
        intrinsics,
      );
    if (typeof fn !== "function") {
      throw new SyntaxError(`Cannot evaluate function "${source.name}": its source is not valid`);
    }
    this.#compiled.set(source.source, { fn, intrinsics });
    return fn;
  }

  #evaluate(expression: string, intrinsics: readonly string[]): AnyFunction | undefined {
    const guarded = guardTypeof(`(${expression}\n)`, { ecmaVersion: "latest" });
    const constants = intrinsics.length ? `const { ${intrinsics.join(", ")} } = ${GLOBALS}; ` : "";
    try {
      return new Function(
        "__scope",
        GLOBALS,
        `with (__scope) { ${constants}return ${guarded}; }`,
      )(this.#scope, globalThis);
    } catch (error) {
      if (error instanceof SyntaxError) return undefined;
      throw error;
    }
  }

  /**
   * Runs `code` as a notebook cell: top-level `await` works, and top-level declarations
   * (`const`, `let`, `var`, functions, classes, imports) and assignments persist in the namespace.
   */
  async execute(code: string): Promise<void> {
    const { body, names } = rewrittenCell(code);
    for (const name of names) if (!Object.hasOwn(this.values, name)) this.values[name] = undefined;
    // The functions a cell defines get the built-ins as a shipped function does (those the
    // namespace holds now, or the cell declares or assigns, stay the namespace's).
    const intrinsics = intrinsicsOf(body).filter((name) => !Object.hasOwn(this.values, name));
    const constants = intrinsics.length ? `const { ${intrinsics.join(", ")} } = ${GLOBALS};\n` : "";
    const cell = new AsyncFunction("__scope", GLOBALS, `with (__scope) {\n${constants}${body}\n}`);
    await cell(this.#scope, globalThis);
  }
}

/**
 * The message of the `ReferenceError` for a name that is neither in the namespace nor a global:
 * most often a variable of the client's closure, which a function shipped as source leaves behind.
 */
export function notDefined(name: string): string {
  return `${name} is not defined in the engine's namespace: functions ship as their source, ` +
    `without their closure; push the value (view.push({ ${name} })) or pass it as an argument`;
}

/** Imports `fn.url` and returns its export `fn.exportName`, which must be a function. */
export async function importFunction(fn: ModuleFunction): Promise<AnyFunction> {
  const module = await import(fn.url);
  const value = module[fn.exportName];
  if (typeof value !== "function") {
    throw new TypeError(
      `Cannot use "${fn.exportName}" of ${fn.url}: it is not an exported function`,
    );
  }
  return value;
}

/** Cells rewritten lately, by source: the engines of a host mostly run the same cells. */
const rewrittenCells = new Map<string, { body: string; names: string[] }>();
const REWRITTEN_CELLS_KEPT = 256;

function rewrittenCell(code: string): { body: string; names: string[] } {
  let cell = rewrittenCells.get(code);
  if (cell) return cell;
  cell = rewriteCell(guardTypeof(code, CELL_SYNTAX));
  if (rewrittenCells.size >= REWRITTEN_CELLS_KEPT) {
    rewrittenCells.delete(rewrittenCells.keys().next().value!);
  }
  rewrittenCells.set(code, cell);
  return cell;
}

/**
 * Rewrites the top-level declarations of a cell into assignments, so that they land in the
 * namespace the cell runs with. Returns the new body and the names it declares.
 */
export function rewriteCell(code: string): { body: string; names: string[] } {
  const program = parseJavaScript(code, CELL_SYNTAX) as unknown as { body: Node[] };
  const names: string[] = [];
  const hoisted: string[] = [];
  const edits: { start: number; end: number; text: string }[] = [];
  const text = (node: Node) => code.slice(node.start, node.end);
  for (const node of program.body) {
    switch (node.type) {
      case "VariableDeclaration": {
        const assignments = (node.declarations as Node[]).map((d) => {
          const id = d.id as Node;
          names.push(...patternNames(id));
          const init = d.init ? text(d.init as Node) : node.kind === "var" ? null : "undefined";
          return init === null ? "" : `(${text(id)} = ${init});`;
        });
        edits.push({ start: node.start, end: node.end, text: assignments.join(" ") });
        break;
      }
      case "FunctionDeclaration": {
        const name = (node.id as Node & { name: string }).name;
        names.push(name);
        hoisted.push(`${name} = ${text(node)};`);
        edits.push({ start: node.start, end: node.end, text: "" });
        break;
      }
      case "ClassDeclaration": {
        const name = (node.id as Node & { name: string }).name;
        names.push(name);
        edits.push({ start: node.start, end: node.end, text: `${name} = ${text(node)};` });
        break;
      }
      case "ImportDeclaration": {
        const source = text(node.source as Node);
        const parts = (node.specifiers as Node[]).map((s) => {
          const local = (s.local as Node & { name: string }).name;
          names.push(local);
          if (s.type === "ImportNamespaceSpecifier") return `${local} = __m;`;
          if (s.type === "ImportDefaultSpecifier") return `${local} = __m.default;`;
          const imported = s.imported as Node & { name?: string; value?: string };
          return `${local} = __m[${JSON.stringify(imported.name ?? imported.value)}];`;
        });
        edits.push({
          start: node.start,
          end: node.end,
          text: `{ const __m = await import(${source}); ${parts.join(" ")} }`,
        });
        break;
      }
      case "ExportNamedDeclaration":
      case "ExportDefaultDeclaration":
      case "ExportAllDeclaration":
        throw new SyntaxError("Cannot run cell: export declarations are not allowed in a cell");
    }
  }
  let body = code;
  for (const edit of edits.reverse()) {
    body = body.slice(0, edit.start) + edit.text + body.slice(edit.end);
  }
  return { body: hoisted.join("\n") + "\n" + body, names };
}

const CELL_SYNTAX = {
  ecmaVersion: "latest",
  sourceType: "module",
  allowAwaitOutsideFunction: true,
} as const;

/**
 * Rewrites each `typeof name` of `code` so that it gives `"undefined"` for a name that is
 * neither in the namespace nor a global, as JavaScript does (feature tests such as
 * `typeof window`): the namespace's scope throws `ReferenceError` for such a name. Returns `code`
 * unchanged when it has no `typeof` or does not parse.
 */
function guardTypeof(code: string, syntax: Parameters<typeof parseJavaScript>[1]): string {
  if (!code.includes("typeof")) return code;
  let program: Node;
  try {
    program = parseJavaScript(code, syntax) as unknown as Node;
  } catch {
    return code;
  }
  const found: Node[] = [];
  const visit = (value: unknown): void => {
    if (Array.isArray(value)) return value.forEach(visit);
    if (value === null || typeof value !== "object" || !("type" in value)) return;
    const node = value as Node;
    if (
      node.type === "UnaryExpression" && node.operator === "typeof" &&
      (node.argument as Node).type === "Identifier"
    ) {
      found.push(node);
      return;
    }
    for (const key in node) if (key !== "type") visit(node[key]);
  };
  visit(program);
  let out = code;
  for (const node of found.sort((a, b) => b.start - a.start)) {
    const name = (node.argument as Node & { name: string }).name;
    out = out.slice(0, node.start) +
      `(() => { try { return typeof ${name}; } catch (e) { ` +
      `if (e instanceof ReferenceError) return "undefined"; throw e; } })()` +
      out.slice(node.end);
  }
  return out;
}

function patternNames(node: Node): string[] {
  switch (node.type) {
    case "Identifier":
      return [node.name as string];
    case "ObjectPattern":
      return (node.properties as Node[]).flatMap((p) =>
        patternNames((p.type === "RestElement" ? p.argument : p.value) as Node)
      );
    case "ArrayPattern":
      return (node.elements as (Node | null)[]).flatMap((e) => (e ? patternNames(e) : []));
    case "RestElement":
      return patternNames(node.argument as Node);
    case "AssignmentPattern":
      return patternNames(node.left as Node);
    default:
      return [];
  }
}
