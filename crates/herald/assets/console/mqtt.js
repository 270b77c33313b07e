// A small MQTT 3.1.1 client over WebSocket for the console's test device: CONNECT with
// the device's credentials, PUBLISH QoS 0 and 1 received and acknowledged, PUBLISH QoS 0
// sent (events), PINGREQ. Herald's own code: it speaks Herald's device protocol only.
"use strict";

var HeraldMqtt = (function () {
  var encoder = new TextEncoder();
  var decoder = new TextDecoder();

  function str(s) {
    var b = encoder.encode(s);
    return [b.length >> 8, b.length & 255].concat(Array.from(b));
  }

  function packet(first, body) {
    var out = [first];
    var n = body.length;
    do {
      var digit = n % 128;
      n = Math.floor(n / 128);
      out.push(n > 0 ? digit | 128 : digit);
    } while (n > 0);
    return new Uint8Array(out.concat(body));
  }

  // Connects; `on` has connected(code), message({topic, payload, qos, id, dup}), closed(reason).
  function connect(url, clientId, username, password, on) {
    var ws = new WebSocket(url, "mqtt");
    ws.binaryType = "arraybuffer";
    var buffer = new Uint8Array(0);
    var ping = null;
    ws.onopen = function () {
      var body = str("MQTT").concat([4, 0xC2, 0, 60]).concat(str(clientId)).concat(str(username)).concat(str(password));
      ws.send(packet(0x10, body));
      ping = setInterval(function () { ws.send(new Uint8Array([0xC0, 0])); }, 30000);
    };
    ws.onmessage = function (event) {
      var chunk = new Uint8Array(event.data);
      var joined = new Uint8Array(buffer.length + chunk.length);
      joined.set(buffer);
      joined.set(chunk, buffer.length);
      buffer = joined;
      for (;;) {
        var length = 0, multiplier = 1, i = 1, complete = false;
        while (i < buffer.length && i <= 4) {
          length += (buffer[i] & 127) * multiplier;
          multiplier *= 128;
          if ((buffer[i++] & 128) === 0) { complete = true; break; }
        }
        if (!complete || buffer.length < i + length) { return; }
        handle(buffer[0], buffer.subarray(i, i + length));
        buffer = buffer.slice(i + length);
      }
    };
    ws.onclose = function (event) {
      clearInterval(ping);
      on.closed("connection closed (" + event.code + ")");
    };
    function handle(first, body) {
      var type = first >> 4;
      if (type === 2) {
        on.connected(body[1]);
      } else if (type === 3) {
        var qos = (first >> 1) & 3;
        var topicLength = (body[0] << 8) | body[1];
        var topic = decoder.decode(body.subarray(2, 2 + topicLength));
        var at = 2 + topicLength;
        var id = null;
        if (qos > 0) { id = (body[at] << 8) | body[at + 1]; at += 2; }
        on.message({ topic: topic, payload: decoder.decode(body.subarray(at)), qos: qos, id: id, dup: (first & 8) !== 0 });
      }
    }
    return {
      puback: function (id) { ws.send(new Uint8Array([0x40, 2, id >> 8, id & 255])); },
      publish: function (topic, text) { ws.send(packet(0x30, str(topic).concat(Array.from(encoder.encode(text))))); },
      close: function () { ws.send(new Uint8Array([0xE0, 0])); ws.close(); }
    };
  }

  return { connect: connect };
})();
