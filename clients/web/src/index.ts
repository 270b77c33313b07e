// Herald's device client for browsers (MQTT over WebSocket with MQTT.js, Web Push) and Node.
// The same concepts as the Rust and Java clients (docs/clients.md): register once and keep
// the identity in a replaceable Store, stay connected with back-off and jitter, hand each
// notification to the app once and then acknowledge it, surface revokes, report tokens,
// send events, bind a user with a proof from the app's server.

import mqtt from "mqtt";
import type { MqttClient } from "mqtt";

export interface Identity {
  installId: string;
  deviceId: string;
  deviceToken: string;
}

/** What a device keeps across restarts. */
export interface Store {
  identity(): Promise<Identity | null>;
  saveIdentity(identity: Identity): Promise<void>;
  /** The messageIds already given to the app, oldest first. */
  seen(): Promise<string[]>;
  saveSeen(ids: string[]): Promise<void>;
}

/** Everything in memory: lost when the page or process ends. */
export class MemoryStore implements Store {
  private id: Identity | null = null;
  private ids: string[] = [];
  async identity() {
    return this.id;
  }
  async saveIdentity(identity: Identity) {
    this.id = { ...identity };
  }
  async seen() {
    return [...this.ids];
  }
  async saveSeen(ids: string[]) {
    this.ids = [...ids];
  }
}

/** The browser's IndexedDB: one object store of two keys, `identity` and `seen`. */
export class IndexedDBStore implements Store {
  constructor(private readonly name = "herald-device") {}

  private open(): Promise<IDBDatabase> {
    return new Promise((resolve, reject) => {
      const request = indexedDB.open(this.name, 1);
      request.onupgradeneeded = () => request.result.createObjectStore("device");
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  }

  private async run<T>(mode: IDBTransactionMode, work: (s: IDBObjectStore) => IDBRequest<T>): Promise<T> {
    const db = await this.open();
    try {
      return await new Promise<T>((resolve, reject) => {
        const tx = db.transaction("device", mode);
        const request = work(tx.objectStore("device"));
        tx.oncomplete = () => resolve(request.result);
        tx.onerror = () => reject(tx.error);
      });
    } finally {
      db.close();
    }
  }

  async identity() {
    return ((await this.run("readonly", (s) => s.get("identity"))) as Identity | undefined) ?? null;
  }
  async saveIdentity(identity: Identity) {
    await this.run("readwrite", (s) => s.put(identity, "identity"));
  }
  async seen() {
    return ((await this.run("readonly", (s) => s.get("seen"))) as string[] | undefined) ?? [];
  }
  async saveSeen(ids: string[]) {
    await this.run("readwrite", (s) => s.put(ids, "seen"));
  }
}

export type State =
  | { kind: "connecting" }
  | { kind: "online" }
  | { kind: "offline"; reason: string; retryInMs: number }
  | { kind: "refused"; reason: string };

export interface Notification {
  messageId: string;
  title: string;
  content: string;
  /** The whole payload: msgKey, taskId, uri, extendedParams, expiresAt… */
  payload: Record<string, unknown>;
}

/** What the client tells the app. A notification is acknowledged once its handler settles. */
export interface Listener {
  onState?(state: State): void;
  onNotification?(notification: Notification): void | Promise<void>;
  onRevoke?(messageId: string, payload: Record<string, unknown>): void | Promise<void>;
}

export interface Config {
  /** The device API: `http://host:8080` or `https://host:8443`. */
  httpUrl: string;
  /** MQTT over WebSocket: `ws://host:8080/mqtt` or `wss://host:8443/mqtt` (Node: also `mqtt://`, `mqtts://`). */
  mqttUrl: string;
  appId: string;
  appKey: string;
  /** `web` in a browser. */
  platform?: string;
  appVersion?: string;
  osVersion?: string;
  model?: string;
  keepAliveSecs?: number;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /** Every network wait: connect, CONNACK, an HTTP call. */
  timeoutMs?: number;
  /** How many recent messageIds are kept to drop repeated deliveries. */
  dedupWindow?: number;
}

/** The server refused a device API call: its HTTP status and Herald's code (docs/errors.md). */
export class RefusedError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(`refused (${status} ${code}): ${message}`);
  }
}

export type Outcome = "arrived" | "opened" | "ignored";

export class HeraldClient {
  private readonly c: Required<Omit<Config, "appVersion" | "osVersion" | "model">> & Config;
  private id: Identity | null = null;
  private seenOrder: string[] = [];
  private seenSet = new Set<string>();
  private mqtt: MqttClient | null = null;
  private stopped = true;
  private failures = 0;
  private wasOnline = false;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    config: Config,
    private readonly store: Store,
    private readonly listener: Listener = {},
  ) {
    this.c = {
      platform: "web",
      keepAliveSecs: 60,
      backoffInitialMs: 1000,
      backoffMaxMs: 120_000,
      timeoutMs: 15_000,
      dedupWindow: 1000,
      ...config,
    };
  }

  /** Registers `installId` unless the store holds an identity, then connects and stays connected. */
  async start(installId: string): Promise<void> {
    this.id = await this.store.identity();
    for (const seen of await this.store.seen()) this.remember(seen);
    if (!this.id) await this.register(installId);
    this.stopped = false;
    this.connect();
  }

  /** This device's id (the target of DeliveryType 1 pushes). */
  get deviceId(): string {
    return this.id?.deviceId ?? "";
  }

  /** Vendor tokens (`webpush`, `fcm`…; null removes one) and the app's version. */
  async report(vendorTokens: Record<string, unknown>, appVersion?: string): Promise<void> {
    await this.deviceCall("POST", "/device/v1/report", appVersion ? { vendorTokens, appVersion } : { vendorTokens });
  }

  async event(messageId: string, event: Outcome): Promise<void> {
    await this.deviceCall("POST", "/device/v1/events", { messageId, event });
  }

  /** Binds a user with the proof the app's server made (none when the app trusts client binds). */
  async bind(userId: string, proof?: { bindProof: string; expiresAt: number }): Promise<void> {
    await this.deviceCall("POST", "/device/v1/bind", { userId, ...proof });
  }

  async unbind(): Promise<void> {
    await this.deviceCall("POST", "/device/v1/unbind", {});
  }

  /** The app's VAPID public key (base64url), for `pushManager.subscribe`. */
  async webPushKey(): Promise<string> {
    const answer = await this.deviceCall("GET", "/device/v1/webpush-key");
    return String(answer.publicKey ?? "");
  }

  /**
   * Subscribes the browser to Web Push with Herald's VAPID key and reports the subscription:
   * Herald then reaches this browser while the page is closed (the service worker shows it,
   * src/service-worker.js).
   */
  async subscribeWebPush(registration: ServiceWorkerRegistration): Promise<PushSubscription> {
    const key = await this.webPushKey();
    const subscription = await registration.pushManager.subscribe({
      userVisibleOnly: true,
      applicationServerKey: base64urlToBytes(key),
    });
    await this.report({ webpush: subscription.toJSON() });
    return subscription;
  }

  /** Closes the connection (DISCONNECT) and stops reconnecting. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    const client = this.mqtt;
    this.mqtt = null;
    if (!client) return;
    // DISCONNECT when connected; a connection still being made is just closed.
    if (client.connected) {
      const timeout = new Promise<void>((resolve) => setTimeout(resolve, this.c.timeoutMs));
      await Promise.race([client.endAsync(), timeout]);
    }
    client.end(true);
  }

  // --- the device API

  private async register(installId: string, currentToken?: string): Promise<void> {
    const c = this.c;
    const body: Record<string, unknown> = { platform: c.platform, installId };
    for (const k of ["appVersion", "osVersion", "model"] as const) if (c[k]) body[k] = c[k];
    const headers: Record<string, string> = { "X-Herald-App": c.appId, "X-Herald-App-Key": c.appKey };
    if (currentToken) headers.Authorization = `Bearer ${currentToken}`;
    const answer = await this.http("POST", "/device/v1/register", headers, body);
    if (typeof answer.deviceId !== "string" || typeof answer.deviceToken !== "string") {
      throw new Error("the registration answered no deviceId or deviceToken");
    }
    this.id = { installId, deviceId: answer.deviceId, deviceToken: answer.deviceToken };
    await this.store.saveIdentity(this.id);
  }

  private async deviceCall(method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
    if (!this.id) throw new Error("not registered");
    return this.http(method, path, { Authorization: `Bearer ${this.id.deviceToken}` }, body);
  }

  private async http(
    method: string,
    path: string,
    headers: Record<string, string>,
    body?: unknown,
  ): Promise<Record<string, unknown>> {
    const response = await fetch(this.c.httpUrl.replace(/\/$/, "") + path, {
      method,
      headers: body === undefined ? headers : { ...headers, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(this.c.timeoutMs),
    });
    const text = await response.text();
    let answer: Record<string, unknown> = {};
    try {
      answer = JSON.parse(text);
    } catch {
      // Not JSON: the status says.
    }
    if (!response.ok) {
      throw new RefusedError(response.status, String(answer.resultCode ?? ""), String(answer.resultMessage ?? text));
    }
    return answer;
  }

  // --- the connection

  private state(state: State) {
    this.listener.onState?.(state);
  }

  private connect() {
    if (this.stopped || !this.id) return;
    const id = this.id;
    this.state({ kind: "connecting" });
    this.wasOnline = false;
    const client = mqtt.connect(this.c.mqttUrl, {
      clientId: id.deviceId,
      username: this.c.appId,
      password: id.deviceToken,
      // MQTT 5: MQTT.js lets the app hold the PUBACK until it has the message only on 5.
      protocolVersion: 5,
      clean: true,
      keepalive: this.c.keepAliveSecs,
      connectTimeout: this.c.timeoutMs,
      // Herald's back-off, not MQTT.js's fixed period.
      reconnectPeriod: 0,
      customHandleAcks: (_topic, message, _packet, done) => {
        this.deliver(message).then(
          () => done(0),
          () => done(0),
        );
      },
    });
    this.mqtt = client;
    let ended = false;
    const end = (reason: string) => {
      if (ended) return;
      ended = true;
      client.end(true);
      if (this.mqtt === client) this.mqtt = null;
      this.lost(reason);
    };
    client.on("connect", () => {
      this.wasOnline = true;
      client.subscribe(`push/${id.deviceId}`, { qos: 1 });
      this.state({ kind: "online" });
    });
    client.on("error", (error: Error & { code?: number }) => {
      if (error.code === 0x86) {
        // The token is not (or no longer) this device's: register again with it.
        ended = true;
        client.end(true);
        this.register(id.installId, id.deviceToken).then(
          () => {
            this.wasOnline = true;
            this.lost("the server asked the device to register again");
          },
          (e) =>
            e instanceof RefusedError
              ? this.refuse(`the credentials were refused and it could not register again: ${e.message}`)
              : this.lost(`registering again failed: ${e}`),
        );
      } else if (error.code === 0x85 || error.code === 0x87) {
        ended = true;
        client.end(true);
        this.refuse(`CONNACK ${error.code}`);
      } else {
        end(error.message);
      }
    });
    client.on("close", () => end("the connection closed"));
  }

  private refuse(reason: string) {
    this.stopped = true;
    this.state({ kind: "refused", reason });
  }

  private lost(reason: string) {
    if (this.stopped) return;
    this.failures = this.wasOnline ? 0 : this.failures + 1;
    const ceiling = Math.min(this.c.backoffInitialMs * 2 ** Math.min(this.failures, 16), this.c.backoffMaxMs);
    const wait = Math.floor(ceiling / 2 + Math.random() * (ceiling - ceiling / 2));
    this.state({ kind: "offline", reason, retryInMs: wait });
    this.timer = setTimeout(() => this.connect(), wait);
  }

  /** Gives a delivery to the app unless it already had it, then records it as seen. */
  private async deliver(message: Uint8Array): Promise<void> {
    let payload: Record<string, unknown>;
    try {
      payload = JSON.parse(new TextDecoder().decode(message));
    } catch {
      return;
    }
    const text = (k: string) => (typeof payload[k] === "string" ? (payload[k] as string) : "");
    let key: string;
    if (payload.type === "notification") key = text("messageId");
    else if (payload.type === "revoke") key = `revoke:${text("revokeId")}`;
    else return;
    if (this.seenSet.has(key)) return;
    if (payload.type === "notification") {
      await this.listener.onNotification?.({
        messageId: text("messageId"),
        title: text("title"),
        content: text("content"),
        payload,
      });
    } else {
      await this.listener.onRevoke?.(text("messageId"), payload);
    }
    this.remember(key);
    await this.store.saveSeen([...this.seenOrder]);
  }

  private remember(id: string) {
    if (this.seenSet.has(id)) return;
    this.seenSet.add(id);
    this.seenOrder.push(id);
    while (this.seenOrder.length > Math.max(1, this.c.dedupWindow)) {
      this.seenSet.delete(this.seenOrder.shift()!);
    }
  }
}

function base64urlToBytes(text: string): Uint8Array<ArrayBuffer> {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
  const raw = atob(b64);
  const bytes = new Uint8Array(new ArrayBuffer(raw.length));
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}
