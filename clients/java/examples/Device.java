import dev.herald.client.FileStore;
import dev.herald.client.HeraldClient;
import java.io.File;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

/**
 * A device on the command line: registers once (its identity kept in a file), stays
 * connected, prints each push's payload and reports it opened. Run with clients/java/device.sh:
 *
 * <pre>
 * clients/java/device.sh --http http://127.0.0.1:8080 --mqtt-host 127.0.0.1 --mqtt-port 1884 \
 *     --app APP_ID --app-key APP_KEY [--store device.properties] [--count N]
 * </pre>
 */
public final class Device {
    public static void main(String[] args) throws Exception {
        HeraldClient.Config config = new HeraldClient.Config();
        config.httpUrl = need(args, "--http");
        config.mqttHost = need(args, "--mqtt-host");
        config.mqttPort = Integer.parseInt(arg(args, "--mqtt-port", "1883"));
        config.mqttTls = Boolean.parseBoolean(arg(args, "--mqtt-tls", "false"));
        config.appId = need(args, "--app");
        config.appKey = need(args, "--app-key");
        int count = Integer.parseInt(arg(args, "--count", "0"));
        final CountDownLatch done = new CountDownLatch(count > 0 ? count : 1);
        final HeraldClient[] client = new HeraldClient[1];
        client[0] = new HeraldClient(config, new FileStore(new File(arg(args, "--store", "herald-device.properties"))),
            new HeraldClient.Listener() {
                @Override
                public void onState(HeraldClient.State state, String reason, long retryInMs) {
                    System.err.println("state: " + state + (reason.isEmpty() ? "" : " (" + reason + ")"));
                }

                @Override
                public void onNotification(HeraldClient.Notification n) {
                    System.out.println(dev.herald.client.Json.write(n.payload));
                    try {
                        client[0].event(n.messageId, "opened");
                    } catch (java.io.IOException e) {
                        System.err.println("opened not reported: " + e.getMessage());
                    }
                    done.countDown();
                }

                @Override
                public void onRevoke(String messageId, Map<String, Object> payload) {
                    System.out.println("{\"revoked\":\"" + messageId + "\"}");
                }
            });
        client[0].start(arg(args, "--install-id", "example-java-device"));
        System.err.println("deviceId " + client[0].deviceId());
        if (count > 0) {
            done.await();
            client[0].stop();
        } else {
            Thread.currentThread().join();
        }
    }

    private static String arg(String[] args, String name, String otherwise) {
        for (int i = 0; i + 1 < args.length; i++) {
            if (args[i].equals(name)) {
                return args[i + 1];
            }
        }
        return otherwise;
    }

    private static String need(String[] args, String name) {
        String v = arg(args, name, null);
        if (v == null) {
            throw new IllegalArgumentException(name + " is required");
        }
        return v;
    }
}
