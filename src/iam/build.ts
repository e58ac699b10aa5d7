/**
 * Builds identity and access for the app: users, robots, sessions, projects (the directory the
 * authoriser reads), the token service, the authenticator and the /v2 guard; and on first start
 * the `admin` user and the public project `library`.
 */
import type { Kysely } from 'kysely';
import type { FastifyBaseLogger } from 'fastify';
import { resolveDataPath } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { CacheGenerations } from '../platform/cache/generations.ts';
import type { Database } from '../platform/db/schema.ts';
import type { EventBus } from '../platform/events/bus.ts';
import { ProjectService } from '../projects/service.ts';
import { AccessControl, CachedProjectDirectory } from './access.ts';
import { Authenticator } from './authenticate.ts';
import { RegistryAuth } from './registry-auth.ts';
import { RobotService } from './robots.ts';
import { SessionService } from './sessions.ts';
import { TokenService } from './tokens.ts';
import { UserService } from './users.ts';

export interface Iam {
  /** auth.enabled: when false, /v2 is open and the token endpoint is not served. */
  readonly enabled: boolean;
  readonly users: UserService;
  readonly robots: RobotService;
  readonly sessions: SessionService;
  readonly projects: ProjectService;
  /** The same projects through a 2 s cache, for the /v2 guard and the token endpoint. */
  readonly cachedProjects: CachedProjectDirectory;
  readonly tokens: TokenService;
  readonly authenticator: Authenticator;
  readonly access: AccessControl;
  /** The /v2 guard, or undefined when auth is off. */
  readonly registryGuard: RegistryAuth | undefined;
  /** Stops polling the cluster's cache generations (at shutdown). */
  stop(): void;
}

export async function buildIam(config: Config, db: Kysely<Database>, log: FastifyBaseLogger, events?: EventBus): Promise<Iam> {
  // Cached logins must not outlive a password change, a disabled robot or a deleted account: on
  // this node they are dropped at once, on the others at their next poll of the generations.
  let forgetLogins = (): void => {};
  const generations = new CacheGenerations({ db, onError: (err) => log.warn({ err }, 'could not read or bump the cache generations; cached logins on other nodes may live until they expire') });
  const onCredentialsChanged = () => {
    forgetLogins();
    void generations.bump('credentials').catch((err) => log.warn({ err }, 'could not tell other nodes that credentials changed; their cached logins live until they expire'));
  };
  generations.watch('credentials', () => forgetLogins());
  // The /v2 guard reads projects through a short cache; changes made on this node clear it at once.
  let forgetProjects = (): void => {};
  const projects = new ProjectService({ db, defaultStorageBytes: config.quota.defaultStorageBytes, onCredentialsChanged, onProjectChanged: () => forgetProjects() });
  const cachedProjects = new CachedProjectDirectory(projects);
  forgetProjects = () => cachedProjects.forget();
  const users = new UserService({ db, passwordPolicy: { minLength: config.auth.passwordMinLength }, onCredentialsChanged, robotPrefix: config.auth.robotNamePrefix });
  const robots = new RobotService({ db, projects, prefix: config.auth.robotNamePrefix, defaultDays: config.auth.robotDefaultDays, onCredentialsChanged });
  const sessions = new SessionService({ db, timeoutMinutes: config.auth.sessionTimeoutMinutes });
  const authenticator = new Authenticator({
    users,
    robots,
    onLoginChecked: (check) =>
      events?.emit({
        type: 'login',
        at: Date.now(),
        actor: {
          name: check.name,
          kind: check.kind,
          address: check.address,
          ...(check.userAgent !== undefined ? { userAgent: check.userAgent } : {}),
          ...(check.requestId !== undefined ? { requestId: check.requestId } : {}),
        },
        result: check.ok ? 'success' : 'failure',
        ...(check.reason ? { reason: check.reason } : {}),
      }),
  });
  forgetLogins = () => authenticator.forget();
  const access = new AccessControl(projects);
  const tokens = new TokenService({
    keyFile: config.auth.tokenKeyFile || resolveDataPath(config, 'secret', 'token.key'),
    service: config.auth.service,
    lifetimeSeconds: config.auth.tokenLifetimeSeconds,
  });
  // Creates the key file now, so a bad key is a start-up error rather than a failing login.
  await tokens.keyId();

  const admin = await users.ensureAdmin(config.adminPassword);
  if (admin.generatedPassword !== undefined) {
    log.warn({ username: 'admin', password: admin.generatedPassword }, 'created the admin user with a generated admin password; it is shown only this once: change it, or set BERTH_ADMIN_PASSWORD before the first start');
  } else if (admin.created) {
    log.info({ username: 'admin' }, 'created the admin user with the configured password');
  }
  const adminSubject = await users.subjectByName('admin');
  await projects.ensureLibrary(adminSubject?.id ?? 1);

  const registryGuard = config.auth.enabled ? new RegistryAuth({ tokens, authenticator, projects: cachedProjects, access, externalUrl: config.server.externalUrl }) : undefined;
  await generations.start();
  return { enabled: config.auth.enabled, users, robots, sessions, projects, cachedProjects, tokens, authenticator, access, registryGuard, stop: () => generations.stop() };
}
