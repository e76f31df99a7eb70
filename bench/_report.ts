/**
 * Writing the results: markdown tables, the broadcast plot (hand-written SVG), and the update of
 * `bench/RESULTS.md` that replaces only the sections between this benchmark's markers.
 *
 * @module
 */
import { formatBytes, median, type Summary } from "./_util.ts";

/** The systems compared. */
export type SystemName = "ipp" | "deno-memory" | "deno-redis";

/** How each system is called in tables and in the plot. */
export const LABELS: Record<SystemName, string> = {
  "ipp": "IPython Parallel",
  "deno-memory": "Deno, memory",
  "deno-redis": "Deno, Redis",
};

const COLORS: Record<SystemName, string> = {
  "ipp": "#d62728",
  "deno-memory": "#1f77b4",
  "deno-redis": "#2ca02c",
};

/** `12.3 ms`, `1.23 s`, `123 s`. */
export function formatSeconds(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds)) return "–";
  if (seconds < 1) return `${(seconds * 1000).toPrecision(3)} ms`;
  if (seconds < 100) return `${seconds.toPrecision(3)} s`;
  return `${seconds.toFixed(0)} s`;
}

/** `12.3`, `1.23`, `0.123` (milliseconds, three significant digits). */
export function formatMs(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return "–";
  return ms >= 100 ? ms.toFixed(0) : ms.toPrecision(3);
}

/** `×123`, `×12.3`, `×1.23`, or `–`. */
export function formatRatio(ratio: number | undefined): string {
  if (ratio === undefined || !Number.isFinite(ratio) || ratio <= 0) return "–";
  return `${ratio >= 100 ? ratio.toFixed(0) : ratio.toPrecision(3)}×`;
}

/** Medians of the phases of several md5 runs of one system at one engine count. */
export interface Md5Cell {
  runs: number;
  failures: string[];
  start?: number;
  scatterPush?: number;
  apply?: number;
  stop?: number;
  wall?: number;
  pss?: number;
}

/** The md5 table: rows by engine count then system, with speedups against IPython. */
export function md5Table(
  counts: number[],
  systems: SystemName[],
  cell: (n: number, system: SystemName) => Md5Cell | undefined,
): string {
  const rows = [
    "| engines | system | runs | start + connect | scatter/push | apply | stop | whole script | memory (PSS) | start speedup | apply speedup | whole-script speedup |",
    "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const n of counts) {
    const ipp = cell(n, "ipp");
    for (const system of systems) {
      const c = cell(n, system);
      if (!c) continue;
      const ratio = (key: "start" | "apply" | "wall") =>
        system === "ipp" || !ipp?.[key] || !c[key] ? "–" : formatRatio(ipp[key]! / c[key]!);
      const failed = c.failures.length ? ` (${c.failures.length} failed)` : "";
      rows.push(
        `| ${n} | ${LABELS[system]} | ${c.runs}${failed} | ${formatSeconds(c.start)} | ` +
          `${formatSeconds(c.scatterPush)} | ${formatSeconds(c.apply)} | ` +
          `${formatSeconds(c.stop)} | **${formatSeconds(c.wall)}** | ${formatBytes(c.pss)} | ` +
          `${ratio("start")} | ${ratio("apply")} | **${ratio("wall")}** |`,
      );
    }
  }
  return rows.join("\n");
}

/** The broadcast table: median (quartiles) per k and system, with speedups against IPython. */
export function broadcastTable(
  ks: number[],
  systems: SystemName[],
  summary: (k: number, system: SystemName) => Summary | undefined,
): string {
  const head = ["| engines (k) |"];
  const rule = ["|---:|"];
  for (const system of systems) {
    head.push(` ${LABELS[system]}: median ms (p25–p75, n) |`);
    rule.push("---:|");
    if (system !== "ipp") {
      head.push(` speedup |`);
      rule.push("---:|");
    }
  }
  const rows = [head.join(""), rule.join("")];
  for (const k of ks) {
    const ipp = summary(k, "ipp");
    const row = [`| ${k} |`];
    for (const system of systems) {
      const s = summary(k, system);
      row.push(
        s ? ` **${formatMs(s.median)}** (${formatMs(s.p25)}–${formatMs(s.p75)}, ${s.n}) |` : " – |",
      );
      if (system !== "ipp") {
        row.push(` ${ipp && s ? `**${formatRatio(ipp.median / s.median)}**` : "–"} |`);
      }
    }
    rows.push(row.join(""));
  }
  return rows.join("\n");
}

/**
 * A log–log plot of broadcast latency (median, with the p25–p75 range as a bar) against engine
 * count, one line per system, plus IPython's latency divided by 20 (the target) dashed.
 */
export function broadcastSvg(
  ks: number[],
  systems: SystemName[],
  summary: (k: number, system: SystemName) => Summary | undefined,
  subtitle: string,
): string {
  const W = 720, H = 460;
  const left = 70, right = 215, top = 56, bottom = 56;
  const plotW = W - left - right, plotH = H - top - bottom;
  const values: number[] = [];
  for (const k of ks) {
    for (const s of systems) {
      const m = summary(k, s);
      if (m) values.push(m.p25, m.p75, m.median);
      if (s === "ipp" && m) values.push(m.median / 20);
    }
  }
  const positive = values.filter((v) => v > 0 && Number.isFinite(v));
  const yMin = 10 ** Math.floor(Math.log10(Math.min(...positive, 1)));
  const yMax = 10 ** Math.ceil(Math.log10(Math.max(...positive, 10)));
  const xMin = Math.min(...ks), xMax = Math.max(...ks);
  const x = (k: number) =>
    left + (xMax === xMin ? plotW / 2 : (Math.log(k / xMin) / Math.log(xMax / xMin)) * plotW);
  const y = (ms: number) => top + plotH - (Math.log(ms / yMin) / Math.log(yMax / yMin)) * plotH;
  const f = (v: number) => v.toFixed(1);
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
      `font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${left}" y="22" font-size="15" font-weight="bold">Empty broadcast apply: ` +
      `latency vs engine count (median, log–log)</text>`,
    `<text x="${left}" y="40" fill="#555">${escapeXml(subtitle)}</text>`,
  );
  // grid and y labels: 1, 2, 5 per decade
  for (let decade = yMin; decade < yMax * 1.0001; decade *= 10) {
    for (const m of [1, 2, 5]) {
      const v = decade * m;
      if (v > yMax * 1.0001) break;
      const yy = y(v);
      out.push(
        `<line x1="${left}" x2="${left + plotW}" y1="${f(yy)}" y2="${f(yy)}" ` +
          `stroke="${m === 1 ? "#ccc" : "#eee"}"/>`,
        `<text x="${left - 6}" y="${f(yy + 4)}" text-anchor="end" fill="#333">${
          formatTick(v)
        }</text>`,
      );
    }
  }
  for (const k of ks) {
    out.push(
      `<line x1="${f(x(k))}" x2="${f(x(k))}" y1="${top}" y2="${top + plotH}" stroke="#eee"/>`,
      `<text x="${f(x(k))}" y="${top + plotH + 18}" text-anchor="middle" fill="#333">${k}</text>`,
    );
  }
  out.push(
    `<rect x="${left}" y="${top}" width="${plotW}" height="${plotH}" fill="none" stroke="#333"/>`,
    `<text x="${left + plotW / 2}" y="${H - 14}" text-anchor="middle">engines in the broadcast ` +
      `(log scale)</text>`,
    `<text transform="translate(18 ${top + plotH / 2}) rotate(-90)" text-anchor="middle">` +
      `latency, ms (log scale)</text>`,
  );
  const series: { name: string; color: string; dash?: string; points: [number, number][] }[] = [];
  for (const system of systems) {
    const points: [number, number][] = [];
    for (const k of ks) {
      const s = summary(k, system);
      if (!s) continue;
      points.push([k, s.median]);
      out.push(
        `<line x1="${f(x(k))}" x2="${f(x(k))}" y1="${f(y(s.p25))}" y2="${f(y(s.p75))}" ` +
          `stroke="${COLORS[system]}" stroke-width="5" stroke-opacity="0.35"/>`,
      );
    }
    series.push({ name: LABELS[system], color: COLORS[system], points });
    if (system === "ipp" && points.length) {
      series.push({
        name: "IPython ÷ 20 (target)",
        color: COLORS.ipp,
        dash: "5 4",
        points: points.map(([k, ms]) => [k, ms / 20]),
      });
    }
  }
  series.forEach((s, i) => {
    if (s.points.length) {
      out.push(
        `<polyline fill="none" stroke="${s.color}" stroke-width="2"${
          s.dash ? ` stroke-dasharray="${s.dash}"` : ""
        } points="${s.points.map(([k, ms]) => `${f(x(k))},${f(y(ms))}`).join(" ")}"/>`,
      );
      if (!s.dash) {
        for (const [k, ms] of s.points) {
          out.push(
            `<circle cx="${f(x(k))}" cy="${f(y(ms))}" r="3.5" fill="${s.color}"/>`,
            `<text x="${f(x(k) + 6)}" y="${f(y(ms) - 6)}" font-size="10" fill="${s.color}">${
              formatMs(ms)
            }</text>`,
          );
        }
      }
    }
    const ly = top + 14 + i * 20;
    const lx = left + plotW + 40;
    out.push(
      `<line x1="${lx}" x2="${lx + 26}" y1="${ly - 4}" y2="${ly - 4}" stroke="${s.color}" ` +
        `stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ""}/>`,
      `<text x="${lx + 32}" y="${ly}">${escapeXml(s.name)}</text>`,
    );
  });
  out.push(
    `<text x="${left + plotW + 40}" y="${top + 14 + series.length * 20 + 8}" font-size="10" ` +
      `fill="#555">bars: p25–p75</text>`,
    "</svg>",
  );
  return out.join("\n") + "\n";
}

function formatTick(ms: number): string {
  return ms >= 1 ? String(Number(ms.toPrecision(3))) : ms.toPrecision(1);
}

function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/**
 * Replaces the text between `<!-- name:start -->` and `<!-- name:end -->` in `doc` with `body`
 * (markers kept), or appends the marked section when `doc` has none.
 */
export function replaceSection(doc: string, name: string, body: string): string {
  const start = `<!-- ${name}:start -->`;
  const end = `<!-- ${name}:end -->`;
  const section = `${start}\n${body.trim()}\n${end}`;
  const i = doc.indexOf(start);
  const j = doc.indexOf(end, i);
  if (i >= 0 && j >= 0) return doc.slice(0, i) + section + doc.slice(j + end.length);
  return `${doc.trimEnd()}${doc.trim() ? "\n\n" : ""}${section}\n`;
}

/** The medians of a list of numbers, skipping missing ones. */
export function medianOf(xs: (number | undefined)[]): number | undefined {
  const present = xs.filter((x): x is number => x !== undefined && Number.isFinite(x));
  return present.length ? median(present) : undefined;
}
