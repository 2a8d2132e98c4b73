// A real OpenID Connect provider (npm oidc-provider) on loopback for the gateway's sign-on
// test: one confidential client, PKCE required, the role in the `vid2dcm_role` claim.
// Usage: node oidc-provider.mjs PORT REDIRECT_URI
// Any login name is accepted by the provider's development login form; names starting with
// "doc" get the reviewer role, "nobody" gets no role, others uploader.
import Provider from "oidc-provider";

const [port, redirect] = process.argv.slice(2);
const role = (id) => (id.startsWith("doc") ? "reviewer" : id.startsWith("nobody") ? "" : "uploader");
const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: "vid2dcm", client_secret: "test-client-secret", redirect_uris: [redirect],
    grant_types: ["authorization_code"], response_types: ["code"],
    token_endpoint_auth_method: "client_secret_basic",
  }],
  pkce: { required: () => true },
  scopes: ["openid", "profile"],
  claims: { openid: ["sub"], profile: ["preferred_username", "vid2dcm_role"] },
  conformIdTokenClaims: false,
  findAccount: (_ctx, id) => ({
    accountId: id,
    claims: () => ({ sub: id, preferred_username: id, vid2dcm_role: role(id) }),
  }),
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ["vid2dcm-test-only"] },
});
provider.listen(Number(port), "127.0.0.1", () => console.log(`oidc-provider on ${port}`));
