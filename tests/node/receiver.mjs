// A webhook receiver written the way the seed SDK's backend verifies: the body parsed as `express.json()` does,
// then HMAC-SHA256 over `JSON.stringify(req.body)`; beside it, the same checks over the raw bytes received.
// Only Node's built-ins. Usage: WEBHOOK_SECRET=... node receiver.mjs
//   stdout, first line: {"port": N}   (it listens on 127.0.0.1, a free port)
//   POST any path: a webhook; answers 200 when every check passes, else 401 (as a receiver that refuses it)
//   GET /deliveries: [{"webhookId", "raw": {"hex", "standard"}, "reserialized": {"hex", "standard"}, "same"}]
import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";

const secret = process.env.WEBHOOK_SECRET;
if (!secret) {
  console.error("set WEBHOOK_SECRET");
  process.exit(2);
}
// Standard Webhooks: a `whsec_` secret is base64 after its prefix; any other is its UTF-8 bytes.
const standardKey = secret.startsWith("whsec_") ? Buffer.from(secret.slice(6), "base64") : Buffer.from(secret, "utf8");
const deliveries = [];

function equal(expected, given) {
  const a = Buffer.from(expected);
  const b = Buffer.from(given ?? "");
  return a.length === b.length && timingSafeEqual(a, b);
}

// X-Webhook-Signature: lowercase hex HMAC-SHA256(secret, body), as the SDK's createHmac("sha256", secret).
function hexValid(body, header) {
  return equal(createHmac("sha256", secret).update(body).digest("hex"), header);
}

// webhook-signature: space-separated "v1,<base64 HMAC-SHA256(key, id.timestamp.body)>"; any one may match.
function standardValid(body, headers) {
  const signed = `${headers["webhook-id"]}.${headers["webhook-timestamp"]}.`;
  const expected = "v1," + createHmac("sha256", standardKey).update(signed).update(body).digest("base64");
  return (headers["webhook-signature"] ?? "").split(" ").some((given) => equal(expected, given));
}

function check(raw, headers) {
  const reserialized = JSON.stringify(JSON.parse(raw.toString("utf8")));
  return {
    webhookId: headers["webhook-id"],
    raw: { hex: hexValid(raw, headers["x-webhook-signature"]), standard: standardValid(raw, headers) },
    reserialized: {
      hex: hexValid(reserialized, headers["x-webhook-signature"]),
      standard: standardValid(reserialized, headers),
    },
    same: reserialized === raw.toString("utf8"),
  };
}

const server = createServer((req, res) => {
  if (req.method === "GET" && req.url === "/deliveries") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(deliveries));
    return;
  }
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    let result;
    try {
      result = check(Buffer.concat(chunks), req.headers);
    } catch (error) {
      result = { webhookId: req.headers["webhook-id"], error: String(error) };
    }
    deliveries.push(result);
    const valid = !result.error && Object.values({ ...result.raw, ...result.reserialized }).every(Boolean);
    res.writeHead(valid ? 200 : 401, { "content-type": "text/plain" });
    res.end(valid ? "ok" : "signature mismatch");
  });
});

server.listen(0, "127.0.0.1", () => {
  console.log(JSON.stringify({ port: server.address().port }));
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
