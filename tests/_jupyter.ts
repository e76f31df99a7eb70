/**
 * Deno's Jupyter kernel for tests: whether the Jupyter tools are installed, and the kernel's
 * install into a temporary home (`deno jupyter --install`), never the user's.
 *
 * @module
 */
import assert from "node:assert/strict";

/** Why the notebook tests cannot run here, or `undefined` when `jupyter nbconvert` works. */
export async function missingJupyter(): Promise<string | undefined> {
  try {
    const { code, stderr } = await new Deno.Command("jupyter", {
      args: ["nbconvert", "--version"],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (code === 0) return undefined;
    return `\`jupyter nbconvert --version\` failed: ${new TextDecoder().decode(stderr).trim()}`;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return "no `jupyter` on PATH";
    throw error;
  }
}

/** The kernelspec's home: `deno jupyter --install` writes under `$HOME/.local/share/jupyter`. */
export async function installKernel(home: string): Promise<string> {
  const denoDir = Deno.env.get("DENO_DIR") ?? await currentDenoDir();
  const { code, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["jupyter", "--install", "--force"],
    env: { HOME: home, DENO_DIR: denoDir },
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  const dataDir = `${home}/.local/share/jupyter`;
  const spec = JSON.parse(await Deno.readTextFile(`${dataDir}/kernels/deno/kernel.json`));
  assert.equal(await Deno.realPath(spec.argv[0]), await Deno.realPath(Deno.execPath()));
  return dataDir;
}

async function currentDenoDir(): Promise<string> {
  const { stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json"],
    stdout: "piped",
    stderr: "null",
  }).output();
  return JSON.parse(new TextDecoder().decode(stdout)).denoDir;
}

/**
 * The Python that runs `jupyter` (the one with `jupyter_client`: read from its `#!` line), or
 * `undefined` when there is no `jupyter` on PATH.
 */
export async function jupyterPython(): Promise<string | undefined> {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":").filter(Boolean)) {
    let head: string;
    try {
      head = (await Deno.readTextFile(`${dir}/jupyter`)).split("\n")[0];
    } catch {
      continue;
    }
    const interpreter = head.match(/^#!\s*(\S+)(?:\s+(\S+))?/);
    if (!interpreter) return undefined;
    // `#!/usr/bin/env python3` names the interpreter second.
    return interpreter[1].endsWith("/env") ? interpreter[2] : interpreter[1];
  }
  return undefined;
}
