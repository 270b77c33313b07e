// `npm run demo`: serves this folder (the demo page, the built client, MQTT.js's browser
// module, the service worker) on http://localhost:PORT (5173, or PORT; 0 picks one) and
// prints the page's address. Only files under this folder are served.

import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const types = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".json": "application/json" };

const server = createServer(async (req, res) => {
  const path = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname));
  const file = join(root, path.endsWith("/") ? join(path, "index.html") : path);
  if (!file.startsWith(root) || file.includes(`${sep}..${sep}`)) {
    res.writeHead(403).end();
    return;
  }
  try {
    const body = await readFile(file);
    res.writeHead(200, { "Content-Type": types[extname(file)] ?? "application/octet-stream" }).end(body);
  } catch {
    res.writeHead(404).end("not found");
  }
});
server.listen(Number(process.env.PORT ?? 5173), "127.0.0.1", () => {
  console.log(`demo at http://localhost:${server.address().port}/demo/?http=…&mqtt=…&app=…&key=…`);
});
