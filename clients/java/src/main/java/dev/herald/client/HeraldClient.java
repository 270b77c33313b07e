package dev.herald.client;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import javax.net.ssl.HttpsURLConnection;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.SSLSocketFactory;

/**
 * Herald's device client for Java 8 and Android: registers once (the identity kept in a
 * {@link Store}), keeps one MQTT 3.1.1 connection on its own thread (reconnecting with
 * exponential back-off and jitter), hands each notification to the {@link Listener} once
 * and then acknowledges it, surfaces revokes, and calls the device API (report, events,
 * bind). No dependency beyond the JDK. docs/clients.md describes the concepts it shares with
 * the Rust and web clients.
 */
public final class HeraldClient {
    /** The own channel's state. */
    public enum State { CONNECTING, ONLINE, OFFLINE, REFUSED }

    /** What the client tells the app; called on the client's connection thread. */
    public interface Listener {
        /** {@code reason} says why when OFFLINE or REFUSED; {@code retryInMs} when OFFLINE. */
        void onState(State state, String reason, long retryInMs);

        /** A notification the app has not had yet; acknowledged when this returns. */
        void onNotification(Notification notification);

        /** Withdraw {@code messageId} if it is shown (it may never have arrived). */
        void onRevoke(String messageId, Map<String, Object> payload);
    }

    /** A notification as the server delivered it (docs/device-protocol.md). */
    public static final class Notification {
        public final String messageId;
        public final String title;
        public final String content;
        /** The whole payload: msgKey, taskId, uri, extendedParams, expiresAt… */
        public final Map<String, Object> payload;

        Notification(Map<String, Object> payload) {
            this.messageId = Json.text(payload, "messageId");
            this.title = Json.text(payload, "title");
            this.content = Json.text(payload, "content");
            this.payload = payload;
        }
    }

    /** The server refused a device API call: its HTTP status and Herald's code. */
    public static final class RefusedException extends IOException {
        private static final long serialVersionUID = 1L;
        public final int status;
        public final String code;

        RefusedException(int status, String code, String message) {
            super("refused (" + status + " " + code + "): " + message);
            this.status = status;
            this.code = code;
        }
    }

    /** How a device finds and identifies itself. */
    public static final class Config {
        /** The device API: {@code http://host:8080} or {@code https://host:8443}. */
        public String httpUrl;
        public String mqttHost;
        public int mqttPort = 1883;
        /** MQTT over TLS (the MQTTS listener, 8883 by default). */
        public boolean mqttTls;
        public String appId;
        public String appKey;
        /** {@code android}, {@code ios}, {@code harmonyos} or {@code web}. */
        public String platform = "android";
        public String appVersion;
        public String osVersion;
        public String model;
        public int keepAliveSecs = 60;
        public long backoffInitialMs = 1000;
        public long backoffMaxMs = 120_000;
        /** Every network wait: connect, CONNACK, an HTTP call. */
        public int timeoutMs = 15_000;
        /** How many recent messageIds are kept to drop repeated deliveries. */
        public int dedupWindow = 1000;
        /** TLS for MQTT and HTTPS; {@code null}: the platform's default (its trusted CAs). */
        public SSLSocketFactory sslSocketFactory;
    }

    private final Config config;
    private final Store store;
    private final Listener listener;
    private final SecureRandom random = new SecureRandom();
    private final ArrayDeque<String> seenOrder = new ArrayDeque<String>();
    private final Set<String> seen = new HashSet<String>();
    private volatile boolean stopped;
    private volatile Socket socket;
    private Thread thread;

    public HeraldClient(Config config, Store store, Listener listener) {
        this.config = config;
        this.store = store;
        this.listener = listener;
        for (String id : store.seen()) {
            remember(id);
        }
    }

    /**
     * Registers {@code installId} (this install's stable id, 1-128 characters) unless the
     * store holds an identity, then connects on a thread of its own and stays connected.
     */
    public synchronized void start(String installId) throws IOException {
        if (store.identity() == null) {
            register(installId, null);
        }
        stopped = false;
        thread = new Thread(new Runnable() {
            @Override
            public void run() {
                loop();
            }
        }, "herald-client");
        thread.setDaemon(true);
        thread.start();
    }

    /** Sends DISCONNECT, closes the connection and stops reconnecting. */
    public void stop() {
        stopped = true;
        Socket s = socket;
        if (s != null) {
            try {
                Mqtt.write(s.getOutputStream(), Mqtt.disconnect());
            } catch (IOException ignored) {
                // Closing anyway.
            }
            closeQuietly(s);
        }
        Thread t = thread;
        if (t != null) {
            t.interrupt();
            try {
                t.join(5000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }

    /** This device's id (the target of DeliveryType 1 pushes), or null before registering. */
    public String deviceId() {
        String[] id = store.identity();
        return id == null ? null : id[1];
    }

    /** Vendor tokens ({@code apns, fcm, hms, xiaomi, webpush}; a null value removes one) and the app's version. */
    public void report(Map<String, Object> vendorTokens, String appVersion) throws IOException {
        Map<String, Object> body = new LinkedHashMap<String, Object>();
        body.put("vendorTokens", vendorTokens);
        if (appVersion != null) {
            body.put("appVersion", appVersion);
        }
        deviceCall("/device/v1/report", body);
    }

    /** What became of a notification: {@code opened}, {@code ignored}, or {@code arrived} (through a vendor). */
    public void event(String messageId, String event) throws IOException {
        Map<String, Object> body = new LinkedHashMap<String, Object>();
        body.put("messageId", messageId);
        body.put("event", event);
        deviceCall("/device/v1/events", body);
    }

    /** Binds a user with the proof the app's server made; {@code proof} null when the app trusts client binds. */
    public void bind(String userId, String proof, long expiresAt) throws IOException {
        Map<String, Object> body = new LinkedHashMap<String, Object>();
        body.put("userId", userId);
        if (proof != null) {
            body.put("bindProof", proof);
            body.put("expiresAt", expiresAt);
        }
        deviceCall("/device/v1/bind", body);
    }

    public void unbind() throws IOException {
        deviceCall("/device/v1/unbind", new LinkedHashMap<String, Object>());
    }

    // --- the device API

    private void register(String installId, String currentToken) throws IOException {
        Map<String, Object> body = new LinkedHashMap<String, Object>();
        body.put("platform", config.platform);
        body.put("installId", installId);
        putIfSet(body, "appVersion", config.appVersion);
        putIfSet(body, "osVersion", config.osVersion);
        putIfSet(body, "model", config.model);
        Map<String, String> headers = new LinkedHashMap<String, String>();
        headers.put("X-Herald-App", config.appId);
        headers.put("X-Herald-App-Key", config.appKey);
        if (currentToken != null) {
            headers.put("Authorization", "Bearer " + currentToken);
        }
        Map<String, Object> answer = post("/device/v1/register", headers, body);
        String deviceId = Json.text(answer, "deviceId");
        String token = Json.text(answer, "deviceToken");
        if (deviceId.isEmpty() || token.isEmpty()) {
            throw new IOException("the registration answered no deviceId or deviceToken");
        }
        store.saveIdentity(installId, deviceId, token);
    }

    private static void putIfSet(Map<String, Object> body, String key, String value) {
        if (value != null) {
            body.put(key, value);
        }
    }

    private Map<String, Object> deviceCall(String path, Map<String, Object> body) throws IOException {
        String[] id = store.identity();
        if (id == null) {
            throw new IOException("not registered");
        }
        Map<String, String> headers = new LinkedHashMap<String, String>();
        headers.put("Authorization", "Bearer " + id[2]);
        return post(path, headers, body);
    }

    private Map<String, Object> post(String path, Map<String, String> headers, Map<String, Object> body)
            throws IOException {
        HttpURLConnection c = (HttpURLConnection) new URL(config.httpUrl + path).openConnection();
        try {
            if (c instanceof HttpsURLConnection && config.sslSocketFactory != null) {
                ((HttpsURLConnection) c).setSSLSocketFactory(config.sslSocketFactory);
            }
            c.setConnectTimeout(config.timeoutMs);
            c.setReadTimeout(config.timeoutMs);
            c.setRequestMethod("POST");
            c.setDoOutput(true);
            c.setRequestProperty("Content-Type", "application/json");
            for (Map.Entry<String, String> h : headers.entrySet()) {
                c.setRequestProperty(h.getKey(), h.getValue());
            }
            OutputStream out = c.getOutputStream();
            out.write(Json.write(body).getBytes(StandardCharsets.UTF_8));
            out.close();
            int status = c.getResponseCode();
            InputStream in = status >= 400 ? c.getErrorStream() : c.getInputStream();
            Map<String, Object> answer = Json.object(in == null ? "" : readAll(in));
            if (status < 200 || status >= 300) {
                throw new RefusedException(status, Json.text(answer, "resultCode"), Json.text(answer, "resultMessage"));
            }
            return answer;
        } finally {
            c.disconnect();
        }
    }

    private static String readAll(InputStream in) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        byte[] buf = new byte[4096];
        int n;
        while ((n = in.read(buf)) > 0 && out.size() < 65_536) {
            out.write(buf, 0, n);
        }
        in.close();
        return new String(out.toByteArray(), StandardCharsets.UTF_8);
    }

    // --- the connection

    /** How one connection ended: refused for good, or lost (after being online or not). */
    private static final class End {
        final boolean refused;
        final boolean online;
        final String reason;

        End(boolean refused, boolean online, String reason) {
            this.refused = refused;
            this.online = online;
            this.reason = reason;
        }
    }

    private void loop() {
        int failures = 0;
        while (!stopped) {
            listener.onState(State.CONNECTING, "", 0);
            End end = connection();
            if (stopped) {
                return;
            }
            if (end.refused) {
                listener.onState(State.REFUSED, end.reason, 0);
                return;
            }
            failures = end.online ? 0 : failures + 1;
            long ceiling = Math.min(config.backoffInitialMs << Math.min(failures, 16), config.backoffMaxMs);
            long wait = ceiling / 2 + (long) (random.nextDouble() * (ceiling - ceiling / 2 + 1));
            wait = Math.min(wait, ceiling);
            listener.onState(State.OFFLINE, end.reason, wait);
            try {
                Thread.sleep(wait);
            } catch (InterruptedException e) {
                return;
            }
        }
    }

    private End connection() {
        String[] id = store.identity();
        if (id == null) {
            return new End(true, false, "not registered");
        }
        Socket s = null;
        try {
            s = new Socket();
            s.connect(new InetSocketAddress(config.mqttHost, config.mqttPort), config.timeoutMs);
            s.setTcpNoDelay(true);
            if (config.mqttTls) {
                SSLSocketFactory factory = config.sslSocketFactory != null
                    ? config.sslSocketFactory
                    : (SSLSocketFactory) SSLSocketFactory.getDefault();
                SSLSocket tls = (SSLSocket) factory.createSocket(s, config.mqttHost, config.mqttPort, true);
                // A raw SSLSocket checks the chain but not the name: ask for the name too.
                SSLParameters params = tls.getSSLParameters();
                params.setEndpointIdentificationAlgorithm("HTTPS");
                tls.setSSLParameters(params);
                tls.setSoTimeout(config.timeoutMs);
                tls.startHandshake();
                s = tls;
            }
            s.setSoTimeout(config.timeoutMs);
            socket = s;
            if (stopped) {
                return new End(false, false, "stopped");
            }
            final OutputStream out = s.getOutputStream();
            InputStream in = new java.io.BufferedInputStream(s.getInputStream());
            Mqtt.write(out, Mqtt.connect(id[1], config.appId, id[2], config.keepAliveSecs));
            Mqtt.Packet ack = Mqtt.read(in);
            if (ack.type != Mqtt.CONNACK || ack.body.length < 2) {
                return new End(false, false, "expected CONNACK");
            }
            int code = ack.body[1] & 0xff;
            if (code == 4) {
                // The token is not (or no longer) this device's: register again with it,
                // which the server allows only to the device itself.
                try {
                    register(id[0], id[2]);
                    return new End(false, true, "the server asked the device to register again");
                } catch (RefusedException e) {
                    // The server said no: the install is another device's now.
                    return new End(true, false, "the credentials were refused and it could not register again: " + e.getMessage());
                } catch (IOException e) {
                    return new End(false, false, "registering again failed: " + e.getMessage());
                }
            }
            if (code == 2 || code == 5) {
                return new End(true, false, "CONNACK " + code);
            }
            if (code != 0) {
                return new End(false, false, "CONNACK " + code);
            }
            Mqtt.write(out, Mqtt.subscribe(1, "push/" + id[1]));
            listener.onState(State.ONLINE, "", 0);
            return online(s, in, out);
        } catch (IOException e) {
            return new End(false, false, stopped ? "stopped" : String.valueOf(e.getMessage()));
        } finally {
            if (s != null) {
                closeQuietly(s);
            }
            socket = null;
        }
    }

    /** Reads deliveries until the connection ends; a keep-alive thread pings and watches. */
    private End online(final Socket s, InputStream in, final OutputStream out) throws IOException {
        final long keepAliveMs = config.keepAliveSecs * 1000L;
        final long[] heard = {System.currentTimeMillis()};
        Thread pinger = null;
        if (keepAliveMs > 0) {
            pinger = new Thread(new Runnable() {
                @Override
                public void run() {
                    try {
                        while (!s.isClosed()) {
                            Thread.sleep(keepAliveMs / 2);
                            if (System.currentTimeMillis() - heard[0] > keepAliveMs * 3 / 2) {
                                closeQuietly(s); // silent: taken as lost
                                return;
                            }
                            Mqtt.write(out, Mqtt.pingreq());
                        }
                    } catch (InterruptedException | IOException e) {
                        // The connection ended.
                    }
                }
            }, "herald-client-keepalive");
            pinger.setDaemon(true);
            pinger.start();
        }
        s.setSoTimeout(0);
        try {
            while (true) {
                Mqtt.Packet p;
                try {
                    p = Mqtt.read(in);
                } catch (IOException e) {
                    return new End(false, true, stopped ? "stopped" : String.valueOf(e.getMessage()));
                }
                heard[0] = System.currentTimeMillis();
                if (p.type != Mqtt.PUBLISH) {
                    continue;
                }
                Object[] publish = p.publish();
                deliver((byte[]) publish[2]);
                int packetId = (Integer) publish[1];
                if (packetId != 0) {
                    Mqtt.write(out, Mqtt.puback(packetId));
                }
            }
        } finally {
            if (pinger != null) {
                pinger.interrupt();
            }
        }
    }

    /** Gives a delivery to the app unless it already had it, then records it as seen. */
    private void deliver(byte[] bytes) {
        Map<String, Object> payload = Json.object(new String(bytes, StandardCharsets.UTF_8));
        String type = Json.text(payload, "type");
        String key;
        if ("notification".equals(type)) {
            key = Json.text(payload, "messageId");
        } else if ("revoke".equals(type)) {
            key = "revoke:" + Json.text(payload, "revokeId");
        } else {
            return;
        }
        synchronized (seen) {
            if (seen.contains(key)) {
                return;
            }
        }
        if ("notification".equals(type)) {
            listener.onNotification(new Notification(payload));
        } else {
            listener.onRevoke(Json.text(payload, "messageId"), payload);
        }
        synchronized (seen) {
            remember(key);
            try {
                store.saveSeen(new ArrayList<String>(seenOrder));
            } catch (IOException e) {
                // Kept in memory: a repeat is still dropped until the app restarts.
            }
        }
    }

    private void remember(String id) {
        if (seen.add(id)) {
            seenOrder.addLast(id);
        }
        while (seenOrder.size() > Math.max(1, config.dedupWindow)) {
            seen.remove(seenOrder.removeFirst());
        }
    }

    private static void closeQuietly(Socket s) {
        try {
            s.close();
        } catch (IOException ignored) {
            // Already closed.
        }
    }
}
