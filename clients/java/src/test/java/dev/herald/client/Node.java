package dev.herald.client;

import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.ServerSocket;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.security.MessageDigest;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * The real {@code herald} binary ({@code HERALD_BIN}) on SQLite in a data directory of its
 * own, on fixed free ports (so that a restart keeps them), and an app's backend calling it:
 * the admin API, signed pushes (docs/api.md's HMAC signature), bind proofs.
 */
final class Node implements AutoCloseable {
    static final String ADMIN_TOKEN = "java-client-test-admin-token";
    final File dir;
    final int httpPort;
    final int mqttPort;
    /** With TLS: the HTTPS and MQTTS ports (certificate for localhost from HERALD_TEST_TLS_DIR). */
    final boolean tls;
    int httpsPort;
    int mqttsPort;
    private Process process;
    String appId, appKey, keyId, secret, bindSecret;

    Node() throws Exception {
        this(false);
    }

    Node(boolean tls) throws Exception {
        this.tls = tls;
        dir = Files.createTempDirectory("herald-java").toFile();
        httpPort = freePort();
        mqttPort = freePort();
        if (tls) {
            httpsPort = freePort();
            mqttsPort = freePort();
        }
        start();
        Map<String, Object> app = Json.object(call("POST", "/admin/v1/apps", "{\"name\":\"java\"}", admin()));
        appId = Json.text(app, "appId");
        appKey = Json.text(app, "appKey");
        keyId = Json.text(app, "apiKeyId");
        secret = Json.text(app, "apiSecret");
        bindSecret = Json.text(app, "bindSecret");
    }

    static int freePort() throws IOException {
        ServerSocket s = new ServerSocket(0);
        int port = s.getLocalPort();
        s.close();
        return port;
    }

    String http() {
        return "http://127.0.0.1:" + httpPort;
    }

    void start() throws Exception {
        String bin = System.getenv("HERALD_BIN");
        if (bin == null) {
            throw new IllegalStateException("HERALD_BIN must name the herald binary");
        }
        java.util.List<String> args = new java.util.ArrayList<String>(java.util.Arrays.asList(bin, "serve",
            "--data-dir", new File(dir, "data").getPath(),
            "--http-addr", "127.0.0.1:" + httpPort, "--mqtt-addr", "127.0.0.1:" + mqttPort));
        if (tls) {
            File certs = new File(System.getenv("HERALD_TEST_TLS_DIR"));
            args.addAll(java.util.Arrays.asList("--tls-cert", new File(certs, "cert.pem").getPath(),
                "--tls-key", new File(certs, "key.pem").getPath(),
                "--https-addr", "127.0.0.1:" + httpsPort, "--mqtts-addr", "127.0.0.1:" + mqttsPort));
        }
        ProcessBuilder pb = new ProcessBuilder(args);
        pb.environment().put("HERALD_ADMIN_TOKEN", ADMIN_TOKEN);
        pb.redirectError(new File(dir, "herald.log"));
        process = pb.start();
        BufferedReader out = new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8));
        long deadline = System.currentTimeMillis() + 20_000;
        String line;
        while ((line = out.readLine()) != null) {
            if (line.startsWith("herald ready ")) {
                return;
            }
            if (System.currentTimeMillis() > deadline) {
                break;
            }
        }
        throw new IllegalStateException("herald did not become ready; see " + new File(dir, "herald.log"));
    }

    void kill() throws InterruptedException {
        process.destroyForcibly();
        process.waitFor(10, TimeUnit.SECONDS);
    }

    @Override
    public void close() {
        try {
            kill();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static Map<String, String> admin() {
        Map<String, String> h = new LinkedHashMap<String, String>();
        h.put("Authorization", "Bearer " + ADMIN_TOKEN);
        return h;
    }

    /** A signed server API call: the answer's body; throws unless 2xx. */
    String signed(String method, String path, String body) throws Exception {
        String ts = Long.toString(System.currentTimeMillis());
        String nonce = UUID.randomUUID().toString().replace("-", "");
        String canonical = method + "\n" + path + "\n\n" + ts + "\n" + nonce + "\n" + hex(sha256(body));
        Map<String, String> h = new LinkedHashMap<String, String>();
        h.put("X-Herald-Key", keyId);
        h.put("X-Herald-Timestamp", ts);
        h.put("X-Herald-Nonce", nonce);
        h.put("X-Herald-Signature", b64(hmac(secret, canonical)));
        return call(method, path, body, h);
    }

    /** Pushes to one device: {taskId, messageId}. */
    String[] push(String target, String msgKey, String title, int deliveryType) throws Exception {
        String body = "{\"deliveryType\":" + deliveryType + ",\"targetMsgkey\":{\"" + target + "\":\"" + msgKey
            + "\"},\"title\":\"" + title + "\",\"content\":\"body\",\"expiredSeconds\":300}";
        Map<String, Object> answer = Json.object(signed("POST", "/v1/push/simple", body));
        @SuppressWarnings("unchecked")
        Map<String, Object> result = (Map<String, Object>) answer.get("pushResult");
        @SuppressWarnings("unchecked")
        Map<String, Object> first = (Map<String, Object>) ((java.util.List<Object>) result.get("targets")).get(0);
        return new String[] {Json.text(result, "data"), Json.text(first, "messageId")};
    }

    @SuppressWarnings("unchecked")
    Map<String, Object> data(String path) throws Exception {
        Map<String, Object> answer = Json.object(signed("GET", path, ""));
        return (Map<String, Object>) ((Map<String, Object>) answer.get("resultContent")).get("data");
    }

    /** Waits until the message's status is {@code want}. */
    void waitStatus(String messageId, String want) throws Exception {
        long deadline = System.currentTimeMillis() + 10_000;
        String status = "";
        while (System.currentTimeMillis() < deadline) {
            status = Json.text(data("/v1/messages/" + messageId), "status");
            if (want.equals(status)) {
                return;
            }
            Thread.sleep(50);
        }
        throw new AssertionError("message " + messageId + " is " + status + ", not " + want);
    }

    /** What the app's server makes for a bind (docs/device-protocol.md). */
    String bindProof(String deviceId, String userId, long expiresAt) throws Exception {
        return b64(hmac(bindSecret, deviceId + "\n" + userId + "\n" + expiresAt));
    }

    private String call(String method, String path, String body, Map<String, String> headers) throws IOException {
        HttpURLConnection c = (HttpURLConnection) new URL(http() + path).openConnection();
        c.setRequestMethod(method);
        c.setConnectTimeout(5000);
        c.setReadTimeout(10_000);
        for (Map.Entry<String, String> e : headers.entrySet()) {
            c.setRequestProperty(e.getKey(), e.getValue());
        }
        if (!body.isEmpty()) {
            c.setDoOutput(true);
            c.setRequestProperty("Content-Type", "application/json");
            OutputStream out = c.getOutputStream();
            out.write(body.getBytes(StandardCharsets.UTF_8));
            out.close();
        }
        int status = c.getResponseCode();
        InputStream in = status >= 400 ? c.getErrorStream() : c.getInputStream();
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        byte[] buf = new byte[4096];
        int n;
        while (in != null && (n = in.read(buf)) > 0) {
            bytes.write(buf, 0, n);
        }
        String text = new String(bytes.toByteArray(), StandardCharsets.UTF_8);
        if (status / 100 != 2) {
            throw new IOException(method + " " + path + " answered " + status + ": " + text);
        }
        return text;
    }

    private static byte[] sha256(String s) throws Exception {
        return MessageDigest.getInstance("SHA-256").digest(s.getBytes(StandardCharsets.UTF_8));
    }

    private static byte[] hmac(String key, String text) throws Exception {
        Mac mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec(key.getBytes(StandardCharsets.UTF_8), "HmacSHA256"));
        return mac.doFinal(text.getBytes(StandardCharsets.UTF_8));
    }

    private static String hex(byte[] b) {
        StringBuilder s = new StringBuilder();
        for (byte x : b) {
            s.append(String.format("%02x", x));
        }
        return s.toString();
    }

    private static String b64(byte[] b) {
        return Base64.getUrlEncoder().withoutPadding().encodeToString(b);
    }
}
