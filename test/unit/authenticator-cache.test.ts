/**
 * The Authenticator's login cache: a successful check is remembered, forget() drops what is
 * remembered, and a check that was already running when forget() was called (the password changed
 * meanwhile) is answered but not remembered.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Authenticator, type UserSubject } from '../../src/iam/authenticate.ts';

const carol: UserSubject = { kind: 'user', id: 7, name: 'carol', sysadmin: false };

function directory() {
  const state = { checks: 0, password: 'old-Passw0rd', gate: undefined as Promise<void> | undefined };
  const users = {
    async checkPassword(username: string, password: string) {
      state.checks++;
      const ok = username === 'carol' && password === state.password;
      await state.gate;
      return ok ? carol : undefined;
    },
    subjectByName: async () => carol,
  };
  const robots = { isRobotName: () => false, checkSecret: async () => undefined, subjectByName: async () => undefined };
  return { state, authenticator: new Authenticator({ users, robots }) };
}

describe('login cache', () => {
  it('remembers a successful check and forgets it on forget()', async () => {
    const { state, authenticator } = directory();
    assert.deepEqual(await authenticator.login('carol', 'old-Passw0rd', '10.0.0.1'), carol);
    assert.deepEqual(await authenticator.login('carol', 'old-Passw0rd', '10.0.0.1'), carol);
    assert.equal(state.checks, 1, 'the second login came from the cache');
    state.password = 'new-Passw0rd';
    authenticator.forget();
    await assert.rejects(authenticator.login('carol', 'old-Passw0rd', '10.0.0.1'), /invalid username or password/);
    assert.equal(state.checks, 2);
  });

  it('does not remember a check that was running when forget() was called', async () => {
    const { state, authenticator } = directory();
    let open = () => {};
    state.gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const running = authenticator.login('carol', 'old-Passw0rd', '10.0.0.1');
    // The password changes (on this node or another) while the hash is being checked.
    state.password = 'new-Passw0rd';
    authenticator.forget();
    open();
    assert.deepEqual(await running, carol, 'the check that began before the change is answered');
    state.gate = undefined;
    await assert.rejects(authenticator.login('carol', 'old-Passw0rd', '10.0.0.1'), /invalid username or password/, 'but not remembered');
    assert.equal(state.checks, 2);
  });
});
