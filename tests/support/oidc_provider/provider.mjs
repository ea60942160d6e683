// The OpenID provider of the tests: node-oidc-provider (OpenID Certified) on loopback.
//
// Configured by environment variables: PORT, CLIENTS (a JSON list of client
// metadata) and ACCOUNTS (a JSON file mapping login -> {"groups": [...]}, read
// at every login so a test can change a user's groups between logins). Its
// development login page accepts any login name; the account id is that name.
// Prints "ready <issuer>" once it listens.
import { readFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const clients = JSON.parse(process.env.CLIENTS);

function accountClaims(id) {
  const accounts = JSON.parse(readFileSync(process.env.ACCOUNTS, 'utf8'));
  const account = accounts[id] || {};
  return {
    sub: id,
    preferred_username: account.username || id,
    email: `${id}@example.org`,
    groups: account.groups || [],
  };
}

const provider = new Provider(issuer, {
  clients,
  scopes: ['openid', 'profile', 'email', 'groups', 'offline_access'],
  claims: {
    openid: ['sub'],
    profile: ['preferred_username'],
    email: ['email'],
    groups: ['groups'],
  },
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  async findAccount(ctx, id) {
    return { accountId: id, async claims() { return accountClaims(id); } };
  },
  ttl: { IdToken: 600, AccessToken: 600, DeviceCode: 600, Interaction: 600, Session: 3600, Grant: 3600 },
});
provider.proxy = false;

provider.listen(port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
