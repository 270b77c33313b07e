// Receives one delivery with MQTT.js over WebSocket and prints its payload.
// node mqttjs_receive.js URL CLIENT_ID USERNAME PASSWORD TOPIC [CA_FILE]
// URL: ws://host:port/mqtt or wss://host:port/mqtt (then CA_FILE is the only trusted root).
const fs = require('fs');
const mqtt = require('mqtt');

const [url, clientId, username, password, topic, caFile] = process.argv.slice(2);
const options = { clientId, username, password, protocolVersion: 4, clean: true, reconnectPeriod: 0, connectTimeout: 10000 };
if (caFile) options.ca = fs.readFileSync(caFile);
const client = mqtt.connect(url, options);
const fail = (why) => { console.error(why); process.exit(1); };
setTimeout(() => fail('no delivery within 20 s'), 20000).unref();
client.on('error', (e) => fail(`error: ${e.message}`));
client.on('connect', () => client.subscribe(topic, { qos: 1 }, (e) => { if (e) fail(`subscribe: ${e.message}`); }));
client.on('message', (_topic, payload) => {
  console.log(payload.toString());
  // MQTT.js has sent PUBACK for the QoS 1 delivery; end once it is out.
  client.end(false, () => process.exit(0));
});
