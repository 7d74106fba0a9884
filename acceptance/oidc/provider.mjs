// The OpenID provider of the acceptance tests (acceptance/tests/people.rs): the certified
// `oidc-provider` package on a loopback port it picks itself, with one confidential client and
// two people in different groups. Its development login form takes any password.
//
//   node provider.mjs <client_id> <client_secret> <redirect_uri>...
//
// Prints one line, `listening http://127.0.0.1:PORT`, once it serves; stops on SIGTERM.

import http from 'node:http';
import Provider from 'oidc-provider';

const [clientId, clientSecret, ...redirectUris] = process.argv.slice(2);
if (!clientId || !clientSecret || redirectUris.length === 0) {
  console.error('usage: node provider.mjs <client_id> <client_secret> <redirect_uri>...');
  process.exit(2);
}

const people = {
  ana: { email: 'ana@example.com', email_verified: true, name: 'Ana', groups: ['ops'] },
  bob: { email: 'bob@other.example', email_verified: true, name: 'Bob', groups: ['sales'] },
};

let handler = (req, res) => { res.statusCode = 503; res.end(); };
const server = http.createServer((req, res) => handler(req, res));
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: redirectUris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
      groups: ['groups'],
    },
    scopes: ['openid', 'email', 'profile', 'groups'],
    // The edge reads the person from the ID token.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    cookies: { keys: ['acceptance-tests-only'] },
    findAccount: async (ctx, id) => {
      const person = people[id];
      if (!person) return undefined;
      return {
        accountId: id,
        claims: async () => ({ sub: id, preferred_username: id, ...person }),
      };
    },
    // No consent screen: the test client is granted what it asks for.
    loadExistingGrant: async (ctx) => {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid email profile groups');
      grant.addOIDCClaims(['email', 'email_verified', 'name', 'preferred_username', 'groups']);
      await grant.save();
      return grant;
    },
  });
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  handler = provider.callback();
  console.log(`listening ${issuer}`);
});

process.on('SIGTERM', () => server.close(() => process.exit(0)));
