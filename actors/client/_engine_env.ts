// The environment a process-launched engine starts with: never the parent's secrets.

/** What Deno itself needs to start, find its cache and reach registries and TLS roots. */
const DENO_RUNTIME_VARIABLES = [
  "PATH",
  "HOME",
  "TMPDIR",
  "LANG",
  "LC_ALL",
  "TZ",
  "DENO_DIR",
  "XDG_CACHE_HOME",
  "DENO_CERT",
  "DENO_TLS_CA_STORE",
  "SSL_CERT_FILE",
  "NPM_CONFIG_REGISTRY",
  "HTTP_PROXY",
  "HTTPS_PROXY",
  "NO_PROXY",
];

/**
 * The environment of an engine process. A sandboxed engine (`permissions` given) gets only what
 * Deno needs plus the variables its `env` grant names; an unsandboxed one gets the parent's. Either
 * way no variable that holds the transport URL or its password is passed on (the engine gets the
 * URL on its stdin): `REDIS_URL` kept a password out of `ps`, not out of `/proc/<pid>/environ`.
 */
export function engineEnvironment(
  transportUrl: string,
  permissions: Deno.PermissionOptionsObject | undefined,
  parent: Record<string, string> = Deno.env.toObject(),
): Record<string, string> {
  const names = permissions === undefined ? Object.keys(parent) : [
    ...DENO_RUNTIME_VARIABLES,
    ...(Array.isArray(permissions.env) ? permissions.env : []),
    ...(permissions.env === true ? Object.keys(parent) : []),
  ];
  const secrets = transportSecrets(transportUrl);
  const env: Record<string, string> = {};
  for (const name of names) {
    const value = parent[name];
    if (value === undefined || secrets.some((secret) => value.includes(secret))) continue;
    env[name] = value;
  }
  env.NO_COLOR = "1";
  return env;
}

/** The parts of a transport URL that must not leave this process but through a pipe. */
function transportSecrets(url: string): string[] {
  const secrets = [url];
  try {
    const { username, password } = new URL(url);
    if (password) secrets.push(password, decodeURIComponent(password));
    else if (username) secrets.push(username, decodeURIComponent(username));
  } catch {
    // Not a URL: the whole string stays the secret.
  }
  return secrets.filter((secret) => secret.length > 0);
}
