// The web client against the real `herald` binary, in Node (MQTT.js over WebSocket on the
// HTTP listener, fetch for the device API).

import mqtt from "mqtt";
import { afterEach, expect, test } from "vitest";
import { HeraldClient, MemoryStore, RefusedError, type Listener, type State } from "../src/index.js";
import { Node } from "./node.js";

/** What the listener saw, in order, with a way to wait for the next of a kind. */
class Seen implements Listener {
  events: string[] = [];
  waits: number[] = [];
  titles = new Map<string, string>();
  private wake: (() => void) | null = null;

  onState(s: State) {
    if (s.kind === "offline") this.waits.push(s.retryInMs);
    this.push(`state:${s.kind}`);
  }
  onNotification(n: { messageId: string; title: string }) {
    this.titles.set(n.messageId, n.title);
    this.push(`notification:${n.messageId}`);
  }
  onRevoke(messageId: string) {
    this.push(`revoke:${messageId}`);
  }
  private push(e: string) {
    this.events.push(e);
    this.wake?.();
  }
  /** The next event starting with `prefix` (skipping others); what follows the prefix. */
  async next(prefix: string): Promise<string> {
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const i = this.events.findIndex((e) => e.startsWith(prefix));
      if (i >= 0) {
        const e = this.events[i];
        this.events.splice(0, i + 1);
        return e.slice(prefix.length);
      }
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, 100);
      });
    }
    throw new Error(`no ${prefix} in time; saw ${this.events}`);
  }
}

const nodes: Node[] = [];
afterEach(async () => {
  for (const n of nodes.splice(0)) await n.kill();
});

function config(node: Node) {
  return {
    httpUrl: node.http, mqttUrl: node.ws, appId: node.app.appId, appKey: node.app.appKey,
    appVersion: "1.0", backoffInitialMs: 200, backoffMaxMs: 2000, timeoutMs: 5000,
  };
}

test("registers, receives, reports, binds and surfaces a revoke", async () => {
  const node = await Node.start();
  nodes.push(node);
  const seen = new Seen();
  const store = new MemoryStore();
  const client = new HeraldClient(config(node), store, seen);
  await client.start("web-install-1");
  expect((await store.identity())?.deviceId).toBe(client.deviceId);
  await seen.next("state:online");

  const [taskId, messageId] = await node.push(client.deviceId, "k-1", "Hello");
  expect(await seen.next("notification:")).toBe(messageId);
  expect(seen.titles.get(messageId)).toBe("Hello");
  expect(taskId).toMatch(/^t/);
  await node.waitStatus(messageId, "delivered");
  await client.event(messageId, "opened");
  await node.waitStatus(messageId, "opened");

  const subscription = {
    endpoint: "https://push.example.net/send/abc",
    // A P-256 public key (uncompressed) and 16 bytes, as a browser's subscription holds.
    keys: {
      p256dh: "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM",
      auth: "tBHItJI5svbpez7KI4CCXg",
    },
  };
  await client.report({ webpush: subscription }, "1.1");
  const view = (await node.signed("GET", `/v1/devices/${client.deviceId}`)).resultContent.data;
  expect([view.appVersion, view.vendorChannels]).toEqual(["1.1", ["webpush"]]);

  const expiresAt = Date.now() + 60_000;
  const bindProof = node.bindProof(client.deviceId, "ann", expiresAt);
  await client.bind("ann", { bindProof, expiresAt });
  const replayed = await client.bind("bob", { bindProof, expiresAt }).catch((e) => e);
  expect(replayed).toBeInstanceOf(RefusedError);
  expect([replayed.status, replayed.code]).toEqual([403, "BIND_PROOF_INVALID"]);
  const [, toUser] = await node.push("ann", "k-2", "For Ann", 3);
  expect(await seen.next("notification:")).toBe(toUser);

  await node.signed("POST", "/v1/push/revoke", JSON.stringify({ messageId: "k-2", targetId: "ann" }));
  expect(await seen.next("revoke:")).toBe(toUser);
  await client.unbind();
  await client.stop();
});

test("a message the app already has is dropped when the server delivers it again", async () => {
  const node = await Node.start();
  nodes.push(node);
  const store = new MemoryStore();
  const firstSeen = new Seen();
  const first = new HeraldClient(config(node), store, firstSeen);
  await first.start("web-install-2");
  await firstSeen.next("state:online");
  await first.stop();
  const id = (await store.identity())!;
  // A plain connection of the same device takes the push and never acknowledges it, as a
  // client does that gave it to the app and was closed before its PUBACK.
  const raw = await mqtt.connectAsync(node.ws, {
    clientId: id.deviceId, username: node.app.appId, password: id.deviceToken, protocolVersion: 5,
    reconnectPeriod: 0, customHandleAcks: () => {},
  });
  const got = new Promise<void>((resolve) => raw.on("packetreceive", (p) => p.cmd === "publish" && resolve()));
  const [, firstId] = await node.push(id.deviceId, "k-1", "First");
  await got;
  raw.end(true);
  await store.saveSeen([firstId]);

  const seen = new Seen();
  const client = new HeraldClient(config(node), store, seen);
  await client.start("web-install-2");
  expect(client.deviceId).toBe(id.deviceId);
  await seen.next("state:online");
  await node.waitStatus(firstId, "delivered");
  const [, secondId] = await node.push(id.deviceId, "k-2", "Second");
  expect(await seen.next("notification:")).toBe(secondId);
  expect(seen.titles.has(firstId)).toBe(false);
  await client.stop();
});

test("reconnects with back-off after the server restarts and loses nothing", async () => {
  const node = await Node.start();
  nodes.push(node);
  const seen = new Seen();
  const client = new HeraldClient(config(node), new MemoryStore(), seen);
  await client.start("web-install-3");
  await seen.next("state:online");
  await node.kill();
  while (seen.waits.length < 4) await seen.next("state:offline");
  const ranges = [[100, 200], [200, 400], [400, 800], [800, 1600]];
  seen.waits.slice(0, 4).forEach((w, i) => {
    expect(w, `back-off ${seen.waits}`).toBeGreaterThanOrEqual(ranges[i][0]);
    expect(w, `back-off ${seen.waits}`).toBeLessThanOrEqual(ranges[i][1]);
  });
  await node.run();
  const [, messageId] = await node.push(client.deviceId, "k-1", "While away");
  await seen.next("state:online");
  expect(await seen.next("notification:")).toBe(messageId);
  await client.stop();
}, 30_000);
