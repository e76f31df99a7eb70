/**
 * Reading the script file that `View.run` sends to the engines.
 *
 * @module
 */

/**
 * The text of the script at `path`, read on the client. A missing file fails with
 * `Deno.errors.NotFound` naming it, in one line.
 */
export async function readScript(path: string | URL): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      const shown = path instanceof URL ? path.href : path;
      throw new Deno.errors.NotFound(`Cannot run script "${shown}": no such file`, {
        cause: error,
      });
    }
    throw error;
  }
}
