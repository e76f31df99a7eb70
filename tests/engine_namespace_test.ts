/**
 * An engine's namespace (`actors/host/engine_namespace.ts`): shipped functions see its values as
 * free variables, read the built-ins they name (`Math`, `JSON`, …) as fast as a local function
 * does, not through the namespace's scope at each use, and find the namespace's own values
 * without a trap call.
 */
import assert from "node:assert/strict";
import { Namespace } from "../actors/host/engine_namespace.ts";
import { FunctionSource } from "../actors/protocol/wire_types.ts";

/** Namespace values that count how often each name is looked up in them. */
function countedValues(): { values: Record<string, unknown>; lookups: Map<string, number> } {
  const lookups = new Map<string, number>();
  const count = (key: string | symbol) => {
    if (typeof key === "string") lookups.set(key, (lookups.get(key) ?? 0) + 1);
  };
  const values = new Proxy({} as Record<string, unknown>, {
    has: (target, key) => (count(key), Reflect.has(target, key)),
    get: (target, key, receiver) => (count(key), Reflect.get(target, key, receiver)),
    getOwnPropertyDescriptor: (target, key) => (
      count(key), Reflect.getOwnPropertyDescriptor(target, key)
    ),
  });
  return { values, lookups };
}

// Free variables of the functions below: on an engine, the namespace's.
declare const offset: number;
declare const missing: number;
declare let stored: number;
declare function twice(x: number): number;

function sumOfAbs(n: number): number {
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.abs(-i);
  return sum;
}

Deno.test("A shipped function reads the built-ins it names once, not at each use", () => {
  const { values, lookups } = countedValues();
  const fn = new Namespace(values).compile(FunctionSource.of(sumOfAbs));
  assert.equal(fn(10_000), sumOfAbs(10_000));
  assert.equal(fn(10_000), sumOfAbs(10_000));
  // Once, when it was compiled: is `Math` the namespace's?
  assert.ok((lookups.get("Math") ?? 0) <= 2, `Math looked up ${lookups.get("Math")} times`);
});

Deno.test("A built-in's name the namespace holds is the namespace's, before and after compiling", () => {
  const namespace = new Namespace({ offset: 1 });
  const source = FunctionSource.of((x: number) => Math.abs(x) + offset);
  assert.equal(namespace.compile(source)(-2), 3);
  namespace.values.Math = { abs: () => 40 };
  assert.equal(namespace.compile(source)(-2), 41);
  const fresh = new Namespace({ offset: 1, Math: { abs: () => 10 } });
  assert.equal(fresh.compile(source)(-2), 11);
});

Deno.test("A shipped function that declares a built-in's name locally uses its own", () => {
  const namespace = new Namespace();
  const fn = namespace.compile(FunctionSource.of(() => {
    const JSON = { stringify: (_: unknown) => "own" };
    return [JSON.stringify({}), Number("2"), parseInt("3", 10)];
  }));
  assert.deepEqual(fn(), ["own", 2, 3]);
});

Deno.test("A function defined in a cell reads the built-ins it names once, not at each use", async () => {
  const { values, lookups } = countedValues();
  const namespace = new Namespace(values);
  await namespace.execute(`${sumOfAbs}\nconst first = sumOfAbs(10);`);
  const fn = namespace.values.sumOfAbs as typeof sumOfAbs;
  assert.equal(namespace.values.first, sumOfAbs(10));
  const before = lookups.get("Math") ?? 0;
  assert.equal(fn(10_000), sumOfAbs(10_000));
  assert.equal(lookups.get("Math") ?? 0, before, "Math looked up through the namespace");
});

Deno.test("A cell that declares a built-in's name keeps its own in the namespace", async () => {
  const namespace = new Namespace();
  await namespace.execute("function Map() { return 'mine'; }\nconst got = Map();");
  assert.equal(namespace.values.got, "mine");
  await namespace.execute("const again = Map();");
  assert.equal(namespace.values.again, "mine");
  assert.equal(typeof new globalThis.Map().set, "function");
});

Deno.test("A namespace's values are found without reaching its claim on other names, which throws on reading and stores assignments", async () => {
  let traps = 0;
  const namespace = new Namespace({ base: 2 });
  const proto = Object.getPrototypeOf(namespace.values);
  Object.setPrototypeOf(
    namespace.values,
    new Proxy(proto, {
      has: (target, key) => (traps++, Reflect.has(target, key)),
      get: (target, key, receiver) => (traps++, Reflect.get(target, key, receiver)),
    }),
  );
  await namespace.execute("function twice(x) { return base * x; }\nconst four = twice(2);");
  const fn = namespace.compile(FunctionSource.of((n: number) => {
    let sum = 0;
    for (let i = 0; i < n; i++) sum += twice(i);
    return sum;
  }));
  traps = 0;
  assert.equal(fn(1000), 999_000);
  assert.equal(traps, 0);
  assert.equal(namespace.values.four, 4);
  // Unknown names: reading throws the namespace's ReferenceError, assigning stores in the values.
  assert.throws(() => namespace.compile(FunctionSource.of(() => missing))(), /engine's namespace/);
  namespace.compile(FunctionSource.of(() => (stored = 5)))();
  assert.equal(namespace.values.stored, 5);
  assert.equal(Object.hasOwn(globalThis, "stored"), false);
});
