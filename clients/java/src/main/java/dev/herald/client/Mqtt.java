package dev.herald.client;

import java.io.ByteArrayOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;

/**
 * The MQTT 3.1.1 packets a Herald device uses, and nothing more: CONNECT, CONNACK,
 * SUBSCRIBE, SUBACK, PUBLISH (received, QoS 0 and 1), PUBACK, PINGREQ, PINGRESP, DISCONNECT.
 */
final class Mqtt {
    static final int CONNACK = 2, PUBLISH = 3, PUBACK = 4, SUBACK = 9, PINGRESP = 13;
    /** The largest packet read (the server's own limit is 64 KiB by default). */
    static final int MAX_PACKET = 1 << 20;

    private Mqtt() {}

    /** One packet as read: its type, header flags and body. */
    static final class Packet {
        final int type;
        final int flags;
        final byte[] body;

        Packet(int type, int flags, byte[] body) {
            this.type = type;
            this.flags = flags;
            this.body = body;
        }

        int qos() {
            return (flags >> 1) & 3;
        }

        /** A PUBLISH's topic, packet id (0 for QoS 0) and payload. */
        Object[] publish() throws IOException {
            if (body.length < 2) {
                throw new IOException("short PUBLISH");
            }
            int topicLength = ((body[0] & 0xff) << 8) | (body[1] & 0xff);
            int at = 2 + topicLength;
            int packetId = 0;
            if (qos() > 0) {
                if (body.length < at + 2) {
                    throw new IOException("short PUBLISH");
                }
                packetId = ((body[at] & 0xff) << 8) | (body[at + 1] & 0xff);
                at += 2;
            }
            if (at > body.length) {
                throw new IOException("short PUBLISH");
            }
            String topic = new String(body, 2, topicLength, StandardCharsets.UTF_8);
            byte[] payload = new byte[body.length - at];
            System.arraycopy(body, at, payload, 0, payload.length);
            return new Object[] {topic, packetId, payload};
        }
    }

    static byte[] connect(String clientId, String username, String password, int keepAliveSecs) {
        ByteArrayOutputStream v = new ByteArrayOutputStream();
        string(v, "MQTT");
        v.write(4); // protocol level 3.1.1
        v.write(0x80 | 0x40 | 0x02); // user name, password, clean session
        v.write(keepAliveSecs >> 8);
        v.write(keepAliveSecs & 0xff);
        string(v, clientId);
        string(v, username);
        string(v, password);
        return packet(0x10, v.toByteArray());
    }

    static byte[] subscribe(int packetId, String topic) {
        ByteArrayOutputStream v = new ByteArrayOutputStream();
        v.write(packetId >> 8);
        v.write(packetId & 0xff);
        string(v, topic);
        v.write(1); // QoS 1
        return packet(0x82, v.toByteArray());
    }

    static byte[] puback(int packetId) {
        return new byte[] {0x40, 2, (byte) (packetId >> 8), (byte) packetId};
    }

    static byte[] pingreq() {
        return new byte[] {(byte) 0xc0, 0};
    }

    static byte[] disconnect() {
        return new byte[] {(byte) 0xe0, 0};
    }

    private static void string(ByteArrayOutputStream out, String s) {
        byte[] b = s.getBytes(StandardCharsets.UTF_8);
        out.write(b.length >> 8);
        out.write(b.length & 0xff);
        out.write(b, 0, b.length);
    }

    private static byte[] packet(int header, byte[] body) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.write(header);
        int n = body.length;
        do {
            int digit = n % 128;
            n /= 128;
            out.write(n > 0 ? digit | 0x80 : digit);
        } while (n > 0);
        out.write(body, 0, body.length);
        return out.toByteArray();
    }

    /** Reads one whole packet; {@link EOFException} when the server closed the connection. */
    static Packet read(InputStream in) throws IOException {
        int header = in.read();
        if (header < 0) {
            throw new EOFException("the server closed the connection");
        }
        int length = 0;
        for (int shift = 0, i = 0; ; shift += 7, i++) {
            int b = in.read();
            if (b < 0) {
                throw new EOFException("the server closed the connection");
            }
            if (i == 4) {
                throw new IOException("malformed remaining length");
            }
            length |= (b & 0x7f) << shift;
            if ((b & 0x80) == 0) {
                break;
            }
        }
        if (length > MAX_PACKET) {
            throw new IOException("packet of " + length + " bytes");
        }
        byte[] body = new byte[length];
        int got = 0;
        while (got < length) {
            int n = in.read(body, got, length - got);
            if (n < 0) {
                throw new EOFException("the server closed the connection");
            }
            got += n;
        }
        return new Packet(header >> 4, header & 0x0f, body);
    }

    static void write(OutputStream out, byte[] packet) throws IOException {
        synchronized (out) {
            out.write(packet);
            out.flush();
        }
    }
}
