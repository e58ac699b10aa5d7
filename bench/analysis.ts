/**
 * Why Berth is slower on a row and what would fix it. Written from CPU profiles and experiments
 * on this code (see the profile lines the report prints beside each entry, which come from the
 * run itself). The text holds no figures: every number in BENCHMARKS.md comes from the run. The
 * report prints an entry only when its row is below goal in that run.
 */
export interface Analysis {
  readonly why: string;
  readonly fix: string;
}

const REQUEST_PATH_WHY =
  'a small request costs Berth one pass through fastify (routing, the onRequest/onResponse hooks), one or two SQLite queries that Kysely compiles from a fresh query tree on every request, a pino log line written synchronously to stdout (one write system call per request), prom-client counter and histogram updates, and the write of the response to the socket. The profile line above shows how the main thread split its time. Berth runs on one thread, so on this machine it competes for the remaining core with the load generator and the other jobs; when its CPU per request is below the reference\'s, the rate was set by the CPU it was given, not by its own cost.';

const REQUEST_PATH_FIX =
  'cache the hot lookups in process (repository id by name, tag to digest, manifest bytes by digest), invalidated by the writes of this process (and, with several nodes, by a short lifetime); build the hot Kysely queries once and reuse the compiled query; write the request log through an asynchronous, buffered pino destination.';

export const ANALYSIS: Record<string, Analysis> = {
  'push-mono-small': {
    why: 'per blob, Berth inserts an upload session row on POST, then on PUT opens, stats and appends the upload file, hashes the body, fsyncs the file, renames it, fsyncs the directory and records the blob and its link in a SQLite transaction, then deletes the session row. For small blobs these fixed costs (several SQLite statements and file system calls, an fsync) outweigh the bytes.',
    fix: 'accept the single-request `POST ?digest=` form (already supported, see its row) from clients that send it; for POST then PUT, keep the upload session in memory until the first byte arrives and write the row only for sessions that receive PATCHes, so a monolithic push touches the database once.',
  },
  'push-mono-big': {
    why: 'Berth hashes the body with sha256 on its main thread while writing it (socket, hash, file write stream), then fsyncs the file before the rename; the hash shows as the biggest self-time item in the profile, followed by the file writes and the garbage collector reclaiming the socket buffers.',
    fix: 'take the hash off the main thread without a message per chunk: a prototype that posted each 64 KiB chunk to a worker thread (copy, message, acknowledgement) spent more CPU in all than hashing inline, so it needs a SharedArrayBuffer ring that the socket data is read into, or a native hasher that runs on the libuv pool; until then, one Berth process per core behind a balancer (the stateless-node design) uses the other cores. Less socket-buffer garbage (the young-generation size is already small) would trim the collector\'s share.',
  },
  'push-chunked': {
    why: 'on top of the monolithic path, every PATCH re-reads the session row, opens the upload file, stats it, appends, closes it and updates the session offset; the sha256 hash is kept in process between chunks, so no data is read twice.',
    fix: 'keep the upload file open between chunks of one session (closed on completion, cancel or expiry), and hash off the main thread as for the monolithic push.',
  },
  'push-concurrent': {
    why: 'Berth hashes every upload with sha256 on its one main thread in the same pass that writes it, so parallel uploads are hashed one chunk at a time on one core, while the reference hashes each upload on its own goroutine and can use both cores. The incoming socket buffers of all the bodies are garbage that V8 reclaims with full collections of the whole heap. When the profile shows the main thread idle for much of the window, the uploads were waiting on the disk (each blob is fsynced before it becomes visible) and on the CPU the other processes took, as the reference\'s were: compare both registries\' CPU per MB in the line above.',
    fix: 'the reference spreads the uploads over both cores; Berth can do the same with one process per core behind a balancer (the stateless-node design in DESIGN.md; uploads already continue on any node). Inside one process, hashing needs a shared-memory handoff to worker threads: a prototype that posted each chunk to a worker cost more CPU than hashing inline.',
  },
  'pull-full': {
    why: 'Berth serves a blob through four reused 1 MiB buffers (positional reads into a buffer, written to the socket, reused after the write callback: src/platform/http/send-positional.ts), so a pull allocates nothing per chunk; what remains is one read system call on the libuv pool and one socket write per MiB, plus the request path. Look at the profile for what dominates in this run.',
    fix: 'if the profile shows the reads, larger buffers or read-ahead of the next chunk while the current one is written; if it shows the socket writes, nothing short of sendfile (which Node does not offer for HTTP) removes them.',
  },
  'pull-ranged': {
    why: 'each ranged GET opens the blob file, creates a read stream for the range, allocates the chunk buffers and closes the file again, on top of the request path (repository and link lookup in SQLite, logging, metrics).',
    fix: 'keep recently used blob files open (a small LRU of file handles, closed when the blob is deleted by garbage collection) and read ranges into reused buffers as for the full pull.',
  },
  'head-blob': { why: REQUEST_PATH_WHY, fix: REQUEST_PATH_FIX },
  'manifest-get-tag': { why: REQUEST_PATH_WHY, fix: REQUEST_PATH_FIX },
  'manifest-get-digest': { why: REQUEST_PATH_WHY, fix: REQUEST_PATH_FIX },
  'manifest-head-tag': { why: REQUEST_PATH_WHY, fix: REQUEST_PATH_FIX },
  'manifest-head-digest': { why: REQUEST_PATH_WHY, fix: REQUEST_PATH_FIX },
  'manifest-put': {
    why: 'each PUT reads and parses the manifest, checks in SQLite that every referenced blob is linked to the repository, and writes the manifest row, its reference edges, the tag and the repository\'s update time in one transaction (WAL mode with synchronous=normal, so a commit does not fsync).',
    fix: 'fold the reference check into the insert transaction (one statement over all referenced digests) and skip the repository update-time write when it was updated within the same second.',
  },
  'tags-list-n': {
    why: 'the page comes from one query over the tags primary key (a covering index); most of the time goes to node:sqlite turning each result row into a JavaScript object (`all` in the profile), then to the JSON encoding and the socket write.',
    fix: 'in the node:sqlite adapter (src/platform/db/database.ts), fetch rows as arrays (`StatementSync.setReturnArrays(true)`) and build the row objects in JavaScript from the cached column names, which was markedly faster for multi-row results in a micro-benchmark on this machine; or cache each repository\'s tag list in process, invalidated on tag writes.',
  },
  'tags-list-all': {
    why: 'the list comes from one query over the tags primary key (a covering index); most of the time goes to node:sqlite turning each of the rows into a JavaScript object (`all` in the profile), then to the JSON encoding and the socket write.',
    fix: 'in the node:sqlite adapter (src/platform/db/database.ts), fetch rows as arrays (`StatementSync.setReturnArrays(true)`) and build the row objects in JavaScript from the cached column names, which was markedly faster for multi-row results in a micro-benchmark on this machine; or cache each repository\'s tag list in process, invalidated on tag writes.',
  },
  catalog: {
    why: 'the catalog is one query over repositories with an EXISTS probe into manifests per repository; as for the tags list, materialising the rows in node:sqlite dominates.',
    fix: 'return rows as arrays in the node:sqlite adapter, as for the tags list.',
  },
  mixed: {
    why: 'the mixed workload combines the small-blob push path (several database statements, file system calls and an fsync per blob) with small pulls (open, stream and close per blob) and manifest reads; see the rows of those paths.',
    fix: 'the fixes of the small push path (fewer statements per monolithic upload) and of the pull path (reused read buffers, open file handles) apply here.',
  },
  'auth-manifest-bearer': {
    why: 'with a bearer token, the /v2 guard (RegistryAuth.check in src/iam/registry-auth.ts) parses the header, finds the token in the cache of verified tokens (src/iam/tokens.ts: a Map keyed by the token, so the ES256 signature is checked once per token) and compares the grant with the access the route needs; it touches no database. Its share of the profile (the "auth code on the stack" line) is what auth costs on this row; when the measured gap is much larger than that share, look at the noise of the run (spread of rounds, load average) before looking at auth.',
    fix: 'nothing specific to auth: the fixes of the manifest GET itself (see the rows against the reference) apply to both Berths.',
  },
  'auth-manifest-basic': {
    why: 'Basic credentials carry no grant, so on every request the guard decodes the header, derives the login-cache key (a SHA-256 of name and password, src/iam/authenticate.ts; argon2 runs only on a cache miss), and then works out the grant from the project (read through a 2 s in-process cache, src/iam/access.ts CachedProjectDirectory) and, for a user who is not a system admin, their roles (one query), before the manifest handler makes its own queries. The profile lines (when the run profiled this row) show the guard, the login check and the grant separately.',
    fix: 'a cache of granted access per credential and repository would skip the grant; the header decoding and the cache-key hash remain. Clients that follow the bearer challenge (docker, containerd, podman, skopeo) take the token path and do not pay this.',
  },
  'auth-token-basic': {
    why: 'each token is a fresh ES256 signature made through WebCrypto (jose), an asynchronous job with its own bookkeeping per call, plus the login-cache check and the grant (one project lookup per scope).',
    fix: 'sign with node:crypto\'s synchronous sign (ECDSA with the IEEE P1363 encoding) on the same key; clients ask for one token per session, so this matters only for many short-lived clients.',
  },
  'auth-token-anonymous': {
    why: 'as for the token endpoint with credentials, without the login check: the ES256 signature through WebCrypto dominates.',
    fix: 'as for the token endpoint with credentials.',
  },
  'memory-push': {
    why: 'Berth\'s resident memory at rest already holds Node with TypeScript type stripping and the loaded modules (fastify, Kysely, the PostgreSQL driver, prom-client, pino, yaml) with their heap. While a body streams in, each socket read is a new Buffer; V8 frees these only at its next full collection, which it starts after some tens of MiB of such external memory, so the peak sits that far above the resting size. It does not grow with the blob: nothing holds the blob. Tuning glibc malloc (mmap and trim thresholds, arena count) did not change the peak in a separate test, so this is uncollected garbage rather than fragmentation.',
    fix: 'lower the resting size: load the PostgreSQL driver only when a PostgreSQL URL is configured, and run compiled JavaScript rather than type-stripping the sources at start. The socket read buffers are allocated by node:http, so the streaming garbage on the push side can only be made smaller by collecting sooner, not avoided.',
  },
  'memory-pull': {
    why: 'the pull starts from the resident size the push left behind (its garbage is reclaimed lazily), and the read stream allocates a new Buffer per chunk that V8 reclaims only at its next full collection, after some tens of MiB.',
    fix: 'serve blobs from a ring of reused buffers (see blob pull full), so the pull allocates nothing per chunk; the resting size is then what remains, which the push fixes lower.',
  },
};

export const GENERAL_NOTES = `## Reading these numbers

- The load generator is a Node process on the same machine. On the fast request rows it needs a share of a core comparable to the server's, so those rows measure the pair, and a row can fall below its goal because Berth was not given the CPU, not because Berth is slow. The detail table shows, per row, the server's own CPU per request (a measure of efficiency that does not depend on how the CPU was shared), the cores the load generator used, and the cores used by other processes during the measurement.
- Berth serves requests on one thread (plus the libuv thread pool for file system calls); the reference registry is a Go program and uses every core. With more cores than this machine has, the reference could use them and Berth could not, unless Berth runs one process per core behind a load balancer (the stateless-node design in DESIGN.md); the CPU-per-request figures are the better guide to how that would go.
- The long-running Berth ends the scenarios with a much larger resident size than a fresh one (last line of the memory table). That is V8 letting the heap grow while the request rows produce garbage (the row objects node:sqlite builds for every tags list are the biggest source); the heap in use, read from Berth's /metrics during a separate run, fell back to near its resting size after each full collection and did not climb from one repetition to the next, so it is growth, not a leak. A cap on the old generation (\`--max-old-space-size\`) or less garbage per request (rows as arrays, see tags list) would keep it down.
- Rows of a few operations (the large pushes and pulls) are the noisiest: one slow fsync or one burst of other work moves the median.
`;
