package dev.herald.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.BufferedInputStream;
import java.io.InputStream;
import java.net.Socket;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** The Java client against the real {@code herald} binary. */
class HeraldClientTest {
    /** What the listener saw, in order: "state:ONLINE", "notification:<id>", "revoke:<id>". */
    static final class Seen implements HeraldClient.Listener {
        final BlockingQueue<String> events = new LinkedBlockingQueue<String>();
        final List<Long> waits = Collections.synchronizedList(new ArrayList<Long>());
        final Map<String, HeraldClient.Notification> notifications = new java.util.concurrent.ConcurrentHashMap<>();

        @Override
        public void onState(HeraldClient.State state, String reason, long retryInMs) {
            if (state == HeraldClient.State.OFFLINE) {
                waits.add(retryInMs);
            }
            events.add("state:" + state);
        }

        @Override
        public void onNotification(HeraldClient.Notification n) {
            notifications.put(n.messageId, n);
            events.add("notification:" + n.messageId);
        }

        @Override
        public void onRevoke(String messageId, Map<String, Object> payload) {
            events.add("revoke:" + messageId);
        }

        /** The next event starting with {@code prefix}, skipping others. */
        String next(String prefix) throws InterruptedException {
            long deadline = System.currentTimeMillis() + 10_000;
            while (true) {
                String e = events.poll(Math.max(1, deadline - System.currentTimeMillis()), TimeUnit.MILLISECONDS);
                if (e == null) {
                    throw new AssertionError("no " + prefix + " in time");
                }
                if (e.startsWith(prefix)) {
                    return e.substring(prefix.length());
                }
            }
        }
    }

    static HeraldClient.Config config(Node node) {
        HeraldClient.Config c = new HeraldClient.Config();
        c.httpUrl = node.http();
        c.mqttHost = "127.0.0.1";
        c.mqttPort = node.mqttPort;
        c.appId = node.appId;
        c.appKey = node.appKey;
        c.appVersion = "1.0";
        c.backoffInitialMs = 200;
        c.backoffMaxMs = 2000;
        c.timeoutMs = 5000;
        return c;
    }

    @Test
    void registersReceivesReportsBindsAndSurfacesARevoke() throws Exception {
        try (Node node = new Node()) {
            Seen seen = new Seen();
            MemoryStore store = new MemoryStore();
            HeraldClient client = new HeraldClient(config(node), store, seen);
            client.start("java-install-1");
            String deviceId = client.deviceId();
            assertNotNull(store.identity(), "the identity is kept");
            seen.next("state:ONLINE");

            String[] pushed = node.push(deviceId, "k-1", "Hello", 1);
            assertEquals(pushed[1], seen.next("notification:"));
            assertEquals("Hello", seen.notifications.get(pushed[1]).title);
            assertEquals(pushed[0], seen.notifications.get(pushed[1]).payload.get("taskId"));
            node.waitStatus(pushed[1], "delivered");
            client.event(pushed[1], "opened");
            node.waitStatus(pushed[1], "opened");

            Map<String, Object> tokens = new LinkedHashMap<String, Object>();
            tokens.put("fcm", "fcm-token-1");
            client.report(tokens, "1.1");
            Map<String, Object> view = node.data("/v1/devices/" + deviceId);
            assertEquals("1.1", view.get("appVersion"));
            assertEquals(Collections.singletonList("fcm"), view.get("vendorChannels"));

            long expiresAt = System.currentTimeMillis() + 60_000;
            String proof = node.bindProof(deviceId, "ann", expiresAt);
            client.bind("ann", proof, expiresAt);
            HeraldClient.RefusedException replayed =
                assertThrows(HeraldClient.RefusedException.class, () -> client.bind("bob", proof, expiresAt));
            assertEquals(403, replayed.status);
            assertEquals("BIND_PROOF_INVALID", replayed.code);
            String[] toUser = node.push("ann", "k-2", "For Ann", 3);
            assertEquals(toUser[1], seen.next("notification:"));

            node.signed("POST", "/v1/push/revoke", "{\"messageId\":\"k-2\",\"targetId\":\"ann\"}");
            assertEquals(toUser[1], seen.next("revoke:"));
            client.unbind();
            client.stop();
        }
    }

    @Test
    void aMessageTheAppAlreadyHasIsDroppedWhenDeliveredAgain() throws Exception {
        try (Node node = new Node()) {
            MemoryStore store = new MemoryStore();
            Seen seen = new Seen();
            HeraldClient client = new HeraldClient(config(node), store, seen);
            client.start("java-install-2");
            seen.next("state:ONLINE");
            client.stop();
            String[] id = store.identity();
            // A plain connection of the same device takes the push and never acknowledges it,
            // as a client does that gave it to the app and was killed before its PUBACK.
            Socket raw = new Socket("127.0.0.1", node.mqttPort);
            raw.setSoTimeout(10_000);
            Mqtt.write(raw.getOutputStream(), Mqtt.connect(id[1], node.appId, id[2], 60));
            InputStream in = new BufferedInputStream(raw.getInputStream());
            assertEquals(Mqtt.CONNACK, Mqtt.read(in).type);
            String[] first = node.push(id[1], "k-1", "First", 1);
            Mqtt.Packet p;
            do {
                p = Mqtt.read(in);
            } while (p.type != Mqtt.PUBLISH);
            raw.close();
            store.saveSeen(Collections.singletonList(first[1]));

            Seen again = new Seen();
            HeraldClient restarted = new HeraldClient(config(node), store, again);
            restarted.start("java-install-2");
            assertEquals(id[1], restarted.deviceId(), "the stored identity, not a new registration");
            again.next("state:ONLINE");
            node.waitStatus(first[1], "delivered");
            String[] second = node.push(id[1], "k-2", "Second", 1);
            assertEquals(second[1], again.next("notification:"), "the repeat of " + first[1] + " was dropped");
            assertFalse(again.notifications.containsKey(first[1]));
            restarted.stop();
        }
    }

    @Test
    void reconnectsWithBackOffAfterTheServerRestartsAndLosesNothing() throws Exception {
        try (Node node = new Node()) {
            Seen seen = new Seen();
            HeraldClient client = new HeraldClient(config(node), new MemoryStore(), seen);
            client.start("java-install-3");
            seen.next("state:ONLINE");
            node.kill();
            while (seen.waits.size() < 4) {
                seen.next("state:OFFLINE");
            }
            long[][] ranges = {{100, 200}, {200, 400}, {400, 800}, {800, 1600}};
            for (int i = 0; i < 4; i++) {
                long w = seen.waits.get(i);
                assertTrue(w >= ranges[i][0] && w <= ranges[i][1], "back-off " + seen.waits);
            }
            node.start();
            String[] pushed = node.push(client.deviceId(), "k-1", "While away", 1);
            seen.next("state:ONLINE");
            assertEquals(pushed[1], seen.next("notification:"));
            client.stop();
        }
    }

    /** Trusts the test CA of HERALD_TEST_TLS_DIR (made by test.sh). */
    static javax.net.ssl.SSLSocketFactory trustingTestCa() throws Exception {
        java.security.cert.Certificate ca;
        try (java.io.InputStream in =
                new java.io.FileInputStream(new java.io.File(System.getenv("HERALD_TEST_TLS_DIR"), "ca.pem"))) {
            ca = java.security.cert.CertificateFactory.getInstance("X.509").generateCertificate(in);
        }
        java.security.KeyStore roots = java.security.KeyStore.getInstance(java.security.KeyStore.getDefaultType());
        roots.load(null, null);
        roots.setCertificateEntry("test-ca", ca);
        javax.net.ssl.TrustManagerFactory tmf =
            javax.net.ssl.TrustManagerFactory.getInstance(javax.net.ssl.TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(roots);
        javax.net.ssl.SSLContext context = javax.net.ssl.SSLContext.getInstance("TLS");
        context.init(null, tmf.getTrustManagers(), null);
        return context.getSocketFactory();
    }

    @Test
    void speaksTlsToTheDeviceApiAndMqttAndRefusesAnUntrustedCertificate() throws Exception {
        try (Node node = new Node(true)) {
            HeraldClient.Config c = config(node);
            c.httpUrl = "https://localhost:" + node.httpsPort;
            c.mqttHost = "localhost";
            c.mqttPort = node.mqttsPort;
            c.mqttTls = true;
            c.sslSocketFactory = trustingTestCa();
            Seen seen = new Seen();
            HeraldClient client = new HeraldClient(c, new MemoryStore(), seen);
            client.start("java-tls");
            seen.next("state:ONLINE");
            String[] pushed = node.push(client.deviceId(), "k-1", "Over TLS", 1);
            assertEquals(pushed[1], seen.next("notification:"));
            client.stop();

            // The platform's roots do not include the test CA: registration is refused by TLS.
            c.sslSocketFactory = null;
            HeraldClient untrusting = new HeraldClient(c, new MemoryStore(), new Seen());
            assertThrows(javax.net.ssl.SSLException.class, () -> untrusting.start("java-untrusted"));
        }
    }
}
