// nats.js — a NATS client nobody in this project wrote — discovers and calls a service.
// Usage: node interop.mjs URL SERVICE SUBJECT; prints one JSON object with what it saw.
import nats from "nats";

const { connect, JSONCodec, RequestStrategy, ServiceError } = nats;
const [url, name, subject] = process.argv.slice(2);
const nc = await connect({ servers: url, timeout: 5000 });
const jc = JSONCodec();
// One instance serves: stop collecting discovery answers at the first (within 5 s).
const services = nc.services.client({
  strategy: RequestStrategy.Count,
  maxMessages: 1,
  maxWait: 5000,
});

async function all(promise) {
  const items = [];
  for await (const item of await promise) {
    items.push(item);
  }
  return items;
}

async function call(payload) {
  const msg = await nc.request(subject, payload, { timeout: 5000 });
  const error = ServiceError.toServiceError(msg);
  if (error === null) {
    return { reply: jc.decode(msg.data) };
  }
  return { code: error.code, description: error.message };
}

const out = {};
out.ping = await all(services.ping(name));
const id = out.ping[0].id;
out.info = await all(services.info(name, id));
out.apple = await call(jc.encode({ item: "apple" }));
out.plum = await call(jc.encode({ item: "plum" }));
out.crash = await call(jc.encode("crash"));
out.malformed = await call(new TextEncoder().encode("{not json"));
out.stats = await all(services.stats(name, id));
console.log(JSON.stringify(out));
await nc.close();
