/**
 * How clusters, clients, views and results show in a notebook: Deno's Jupyter kernel displays a
 * cell's value by calling its `[Symbol.for("Jupyter.display")]()`, which returns a mime bundle
 * (`text/plain` for consoles, `text/html` for the notebook). Each class's method calls one of the
 * functions here.
 *
 * @module
 */

// What each display reads, by shape: the classes import this file, so it names none of them.

/** What a client's display reads of a `Client`. */
interface ShownClient {
  readonly closed: boolean;
  readonly ids: readonly number[];
  readonly namespace: string;
  readonly outstanding: number;
  readonly transport: { readonly url: string };
}

/** What a cluster's display reads of a `Cluster`. */
interface ShownCluster {
  readonly client: ShownClient | undefined;
  readonly n: number;
  readonly namespace: string;
}

/** What a view's display reads of a view. */
interface ShownView {
  readonly targets: readonly number[];
  readonly fanout?: number;
}

/** What a result's display reads of an `AsyncResult`. */
interface ShownResult {
  readonly id: string;
  readonly engineIds: readonly number[];
  readonly progress: number;
  readonly elapsed: number;
  readonly wallTime: number | undefined;
  readonly serialTime: number | undefined;
  ready(): boolean;
  successful(): boolean;
}

/** What a display method returns: the same content as plain text and as HTML. */
export type MimeBundle = Record<"text/plain" | "text/html", string>;

/** A one-line summary and the rows of a key/value table under it. */
interface Summary {
  title: string;
  rows: [string, string][];
}

function bundle({ title, rows }: Summary): MimeBundle {
  const plain = [title, ...rows.map(([k, v]) => `  ${k}: ${v}`)].join("\n");
  const html = `<div><strong>${escapeHtml(title)}</strong>` +
    (rows.length === 0
      ? ""
      : `<table>${
        rows.map(([k, v]) =>
          `<tr><th style="text-align:left">${escapeHtml(k)}</th>` +
          `<td style="text-align:left">${escapeHtml(v)}</td></tr>`
        ).join("")
      }</table>`) +
    "</div>";
  return { "text/plain": plain, "text/html": html };
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function ms(value: number | undefined): string {
  return value === undefined ? "–" : `${Math.round(value)} ms`;
}

/** `0–3, 5` for `[0, 1, 2, 3, 5]`. */
function idRanges(ids: readonly number[]): string {
  const runs: string[] = [];
  for (let i = 0; i < ids.length;) {
    let j = i;
    while (j + 1 < ids.length && ids[j + 1] === ids[j] + 1) j++;
    runs.push(j === i ? `${ids[i]}` : `${ids[i]}–${ids[j]}`);
    i = j + 1;
  }
  return runs.join(", ") || "none";
}

function clientRows(client: ShownClient): [string, string][] {
  if (client.closed) return [["state", "closed"]];
  return [
    ["engines up", `${client.ids.length} (ids ${idRanges(client.ids)})`],
    ["calls pending", String(client.outstanding)],
    ["transport", client.transport.url],
  ];
}

/** A cluster: whether it runs, its engines up, its calls pending. */
export function displayCluster(cluster: ShownCluster): MimeBundle {
  const client = cluster.client;
  const state = client === undefined
    ? "not connected"
    : client.closed
    ? "stopped"
    : `${client.ids.length} of ${plural(cluster.n, "engine")} up`;
  return bundle({
    title: `Cluster ${cluster.namespace}: ${state}`,
    rows: client === undefined || client.closed ? [] : clientRows(client),
  });
}

/** A client: its engines up and its calls pending. */
export function displayClient(client: ShownClient): MimeBundle {
  const state = client.closed ? "closed" : `${plural(client.ids.length, "engine")} up`;
  return bundle({
    title: `Client of ${client.namespace}: ${state}`,
    rows: client.closed ? [] : clientRows(client),
  });
}

/** A direct, broadcast or load-balanced view: its engines (and a broadcast's fanout). */
export function displayView(view: ShownView): MimeBundle {
  const kind = view.constructor.name;
  const fanout: [string, string][] = view.fanout === undefined
    ? []
    : [["fanout", String(view.fanout)]];
  return bundle({
    title: `${kind} on ${plural(view.targets.length, "engine")} (ids ${idRanges(view.targets)})`,
    rows: fanout,
  });
}

/** A call's result: how many engines answered, whether it succeeded, its timings. */
export function displayAsyncResult(result: ShownResult): MimeBundle {
  const n = result.engineIds.length;
  const done = result.progress;
  const ready = result.ready();
  const state = !ready ? "pending" : result.successful() ? "succeeded" : "failed";
  const rows: [string, string][] = [
    ["engines", idRanges(result.engineIds)],
    ["elapsed", ms(result.elapsed)],
  ];
  if (ready) rows.push(["wall time", ms(result.wallTime)], ["serial time", ms(result.serialTime)]);
  return bundle({
    title: `AsyncResult ${result.id}: ${done}/${n} done, ${state}`,
    rows,
  });
}
