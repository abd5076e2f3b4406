// The seed's operations through ioredis, configured from a redis-infra connection
// file and nothing else: node seed_operations.mjs <connection.json>
// Prints one JSON line of results; any warning ioredis prints goes to stderr, which
// the test requires to be empty.
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import Redis from "ioredis";

const path = process.argv[2];
const file = JSON.parse(readFileSync(path, "utf8"));
const user = file.users.app;
// TLS file paths may be relative to the connection file (a Pulumi stack's raw output).
const read = (name) => readFileSync(resolve(dirname(path), name));
const tls = {
  ca: read(file.tls.ca_file),
  ...(file.tls.cert_file ? { cert: read(file.tls.cert_file), key: read(file.tls.key_file) } : {}),
};
const auth = { username: user.username, password: user.password };
// Nodes announce addresses of the deployment's network; this host reaches them here.
const natMap = file.address_map;

function connect() {
  if (file.topology === "sentinel") {
    const s = file.sentinel;
    return new Redis({
      sentinels: s.sentinels.map(({ host, port }) => ({ host, port })),
      name: s.service_name,
      sentinelUsername: s.username,
      sentinelPassword: user.password,
      enableTLSForSentinelMode: s.tls,
      sentinelTLS: tls,
      tls,
      natMap,
      ...auth,
    });
  }
  if (file.topology === "cluster") {
    return new Redis.Cluster(
      file.cluster.startup_nodes.map(({ host, port }) => ({ host, port })),
      { natMap, redisOptions: { tls, ...auth }, dnsLookup: (address, callback) => callback(null, address) },
    );
  }
  const [node] = file.nodes;
  return new Redis({ host: node.host, port: node.port, tls, ...auth });
}

const redis = connect();
const subscriber = redis.duplicate();
const run = Date.now().toString(36);
const results = {};
try {
  // Sessions: a TTL'd hash per session.
  const session = `app:session:{${run}}`;
  await redis.hset(session, { user: "42", csrf: "t0k3n" });
  await redis.expire(session, 1800);
  results.session = (await redis.hget(session, "user")) === "42" && (await redis.ttl(session)) > 0;
  // Query cache: SET EX, GET.
  await redis.set(`app:cache:{${run}}`, JSON.stringify({ rows: 3 }), "EX", 60);
  results.cache = JSON.parse(await redis.get(`app:cache:{${run}}`)).rows === 3;
  // Token-bucket rate limit through the shipped function library.
  const bucket = `app:rate:{${run}}`;
  const verdicts = [];
  for (let i = 0; i < 4; i++) {
    verdicts.push(await redis.fcall("token_bucket", 1, bucket, 3, 0));
  }
  results.rate_limit = verdicts;
  // Leaderboard: sorted set.
  const board = `app:board:{${run}}`;
  await redis.zadd(board, 10, "ana", 30, "bo", 20, "cy");
  results.leaderboard = await redis.zrevrange(board, 0, 1);
  // Pub/sub on the application's channels.
  const channel = `app:events:${run}`;
  const received = new Promise((resolve) => subscriber.on("message", (_c, message) => resolve(message)));
  await subscriber.subscribe(channel);
  await redis.publish(channel, "hello");
  results.pubsub = await Promise.race([received, new Promise((r) => setTimeout(() => r(null), 5000))]);
  await redis.del(session, `app:cache:{${run}}`, bucket, board);
} finally {
  subscriber.disconnect();
  redis.disconnect();
}
console.log(JSON.stringify(results));
