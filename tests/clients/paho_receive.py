"""Receives one delivery with paho-mqtt over WebSocket and prints its payload.

python paho_receive.py [--mqtt5] URL CLIENT_ID USERNAME PASSWORD TOPIC [CA_FILE]
URL: ws://host:port/mqtt or wss://host:port/mqtt (then CA_FILE is the only trusted root).
With --mqtt5 the client speaks MQTT 5 and prints a second line: the delivery's properties
as JSON ({"messageExpiryInterval": seconds, "userProperties": {name: value}}).
"""
import json
import sys
import threading
from urllib.parse import urlparse

import paho.mqtt.client as mqtt

args = sys.argv[1:]
mqtt5 = bool(args) and args[0] == "--mqtt5"
if mqtt5:
    args = args[1:]
url, client_id, username, password, topic = args[0:5]
ca_file = args[5] if len(args) > 5 else None
target = urlparse(url)
client = mqtt.Client(
    mqtt.CallbackAPIVersion.VERSION2,
    client_id=client_id,
    protocol=mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311,
    transport="websockets",
)
client.ws_set_options(path=target.path)
client.username_pw_set(username, password)
if target.scheme == "wss":
    client.tls_set(ca_certs=ca_file)
done = threading.Event()


def on_connect(client, userdata, flags, reason_code, properties):
    if reason_code.is_failure:
        print(f"CONNACK refused: {reason_code}", file=sys.stderr)
        sys.exit(1)
    client.subscribe(topic, qos=1)


def on_message(client, userdata, message):
    # paho acknowledges a QoS 1 message (PUBACK) once this callback returns.
    print(message.payload.decode(), flush=True)
    if mqtt5:
        props = message.properties
        print(
            json.dumps(
                {
                    "messageExpiryInterval": getattr(props, "MessageExpiryInterval", None),
                    "userProperties": dict(getattr(props, "UserProperty", [])),
                }
            ),
            flush=True,
        )
    done.set()


client.on_connect = on_connect
client.on_message = on_message
client.connect(target.hostname, target.port)
client.loop_start()
if not done.wait(20):
    print("no delivery within 20 s", file=sys.stderr)
    sys.exit(1)
# Let the PUBACK go out before the connection closes.
threading.Event().wait(0.5)
client.disconnect()
client.loop_stop()
