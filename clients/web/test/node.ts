// The real `herald` binary (HERALD_BIN) on SQLite in a directory of its own, on fixed free
// ports (a restart keeps them), and an app's backend calling it: the admin API, signed
// pushes (docs/api.md's HMAC signature), bind proofs.

import { spawn, type ChildProcess } from "node:child_process";
import { createHash, createHmac, randomBytes } from "node:crypto";
import { mkdtempSync, openSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

const ADMIN_TOKEN = "web-client-test-admin-token";

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export class Node {
  dir = mkdtempSync(join(tmpdir(), "herald-web-"));
  httpPort = 0;
  mqttPort = 0;
  app: Record<string, string> = {};
  private process: ChildProcess | null = null;

  static async start(): Promise<Node> {
    const node = new Node();
    // A port free when picked may be taken before herald binds it (other tests open
    // connections all the time): herald then exits, and the node starts on others.
    for (let attempt = 1; ; attempt++) {
      node.httpPort = await freePort();
      node.mqttPort = await freePort();
      try {
        await node.run();
        break;
      } catch (e) {
        if (attempt === 3) throw e;
      }
    }
    node.app = (await node.call("POST", "/admin/v1/apps", JSON.stringify({ name: "web" }), {
      Authorization: `Bearer ${ADMIN_TOKEN}`,
    })) as Record<string, string>;
    return node;
  }

  get http() {
    return `http://127.0.0.1:${this.httpPort}`;
  }

  get ws() {
    return `ws://127.0.0.1:${this.httpPort}/mqtt`;
  }

  async run(): Promise<void> {
    const bin = process.env.HERALD_BIN;
    if (!bin) throw new Error("HERALD_BIN must name the herald binary");
    const log = openSync(join(this.dir, "herald.log"), "a");
    const child = spawn(
      bin,
      ["serve", "--data-dir", join(this.dir, "data"), "--http-addr", `127.0.0.1:${this.httpPort}`,
        "--mqtt-addr", `127.0.0.1:${this.mqttPort}`],
      { env: { ...process.env, HERALD_ADMIN_TOKEN: ADMIN_TOKEN }, stdio: ["ignore", "pipe", log] },
    );
    this.process = child;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`herald not ready; see ${this.dir}/herald.log`)), 20_000);
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`herald exited (${code}) before it was ready; see ${this.dir}/herald.log`));
      });
      createInterface({ input: child.stdout! }).on("line", (line) => {
        if (line.startsWith("herald ready ")) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  }

  async kill(): Promise<void> {
    const child = this.process;
    if (!child || child.exitCode !== null) return;
    await new Promise((resolve) => {
      child.once("exit", resolve);
      child.kill("SIGKILL");
    });
  }

  async call(method: string, path: string, body: string, headers: Record<string, string>): Promise<any> {
    const response = await fetch(this.http + path, {
      method,
      headers: body ? { ...headers, "Content-Type": "application/json" } : headers,
      body: body || undefined,
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${path} answered ${response.status}: ${text}`);
    return JSON.parse(text);
  }

  /** A signed server API call. */
  async signed(method: string, path: string, body = ""): Promise<any> {
    const ts = String(Date.now());
    const nonce = randomBytes(12).toString("hex");
    const hash = createHash("sha256").update(body).digest("hex");
    const canonical = `${method}\n${path}\n\n${ts}\n${nonce}\n${hash}`;
    const signature = createHmac("sha256", this.app.apiSecret).update(canonical).digest("base64url");
    return this.call(method, path, body, {
      "X-Herald-Key": this.app.apiKeyId,
      "X-Herald-Timestamp": ts,
      "X-Herald-Nonce": nonce,
      "X-Herald-Signature": signature,
    });
  }

  /** Pushes to one device (deliveryType 1) or user (3): [taskId, messageId]. */
  async push(target: string, msgKey: string, title: string, deliveryType = 1): Promise<[string, string]> {
    const body = JSON.stringify({
      deliveryType, targetMsgkey: { [target]: msgKey }, title, content: "body", expiredSeconds: 300,
    });
    const answer = await this.signed("POST", "/v1/push/simple", body);
    return [answer.pushResult.data, answer.pushResult.targets[0].messageId];
  }

  async waitStatus(messageId: string, want: string): Promise<void> {
    const deadline = Date.now() + 10_000;
    let status = "";
    while (Date.now() < deadline) {
      status = (await this.signed("GET", `/v1/messages/${messageId}`)).resultContent.data.status;
      if (status === want) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`message ${messageId} is ${status}, not ${want}`);
  }

  bindProof(deviceId: string, userId: string, expiresAt: number): string {
    return createHmac("sha256", this.app.bindSecret).update(`${deviceId}\n${userId}\n${expiresAt}`).digest("base64url");
  }
}
