// A real OpenID provider on loopback for t/test_oidc.py: oidc-provider (the
// certified reference implementation, pinned in tools/setup.sh) with its
// development login and consent pages, one confidential client and the
// test's users. Usage: node t/oidc_provider.mjs CONFIG.json
// CONFIG: {prefix, port, client_id, client_secret, redirect_uri,
//          post_logout_redirect_uri, users: {login: claims}}
// Prints "READY <port>" once it listens.
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const cfg = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const require = createRequire(path.join(cfg.prefix, "node_modules", "x.js"));
const Provider = (await import(require.resolve("oidc-provider"))).default;

const issuer = `http://127.0.0.1:${cfg.port}`;
const provider = new Provider(issuer, {
  clients: [{
    client_id: cfg.client_id,
    client_secret: cfg.client_secret,
    redirect_uris: [cfg.redirect_uri],
    post_logout_redirect_uris: cfg.post_logout_redirect_uri ? [cfg.post_logout_redirect_uri] : [],
    grant_types: ["authorization_code"],
    response_types: ["code"],
    token_endpoint_auth_method: "client_secret_basic",
  }],
  // hd (Google) and tid (Entra) ride with openid, as those providers send
  // them; email and email_verified with the email scope.
  claims: {
    openid: ["sub", "hd", "tid"],
    email: ["email", "email_verified"],
    profile: ["name", "groups"],
  },
  conformIdTokenClaims: false,
  cookies: { keys: [cfg.client_secret] },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const user = cfg.users[id];
    if (!user) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...user }; } };
  },
  ttl: { Session: 3600, Interaction: 600, Grant: 3600, IdToken: 600,
         AccessToken: 600, AuthorizationCode: 60 },
});
provider.on("server_error", (ctx, err) => console.error("server_error", err));
provider.listen(cfg.port, "127.0.0.1", () => {
  console.log(`READY ${cfg.port}`);
});
