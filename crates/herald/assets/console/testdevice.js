// The console's test device: registers a web device of the app, connects it to /mqtt and
// shows each push as it arrives; PUBACK is sent at once (the message is "arrived"), and the
// Opened button publishes the event to events/<deviceId>.
"use strict";

(function () {
  var panel = document.getElementById("test-device");
  if (!panel) { return; }
  var status = document.getElementById("td-status");
  var rows = document.querySelector("#td-messages tbody");
  var button = document.getElementById("td-connect");
  var client = null;

  function cell(row, text) {
    var td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function show(message, deviceId) {
    var data = {};
    try { data = JSON.parse(message.payload); } catch (e) { data = { type: "unreadable", content: message.payload }; }
    var row = document.createElement("tr");
    row.className = "td-message td-" + (data.type || "unknown");
    cell(row, new Date().toISOString().substring(11, 19));
    cell(row, data.type || "");
    cell(row, data.messageId || "");
    cell(row, data.title || "");
    cell(row, data.content || "");
    var acked = cell(row, "");
    if (message.qos > 0) {
      client.puback(message.id);
      acked.textContent = "sent" + (message.dup ? " (redelivery)" : "");
    }
    var open = cell(row, "");
    if (data.type === "notification") {
      var b = document.createElement("button");
      b.type = "button";
      b.textContent = "Opened";
      b.addEventListener("click", function () {
        client.publish("events/" + deviceId, JSON.stringify([{ messageId: data.messageId, event: "opened" }]));
        b.disabled = true;
        b.textContent = "opened sent";
      });
      open.appendChild(b);
    }
    rows.insertBefore(row, rows.firstChild);
  }

  button.addEventListener("click", function () {
    button.disabled = true;
    status.textContent = "Registering…";
    var body = new URLSearchParams();
    body.set("csrf", panel.dataset.csrf);
    fetch("/console/apps/" + encodeURIComponent(panel.dataset.app) + "/test-device", {
      method: "POST", body: body, credentials: "same-origin", headers: { "X-CSRF-Token": panel.dataset.csrf }
    }).then(function (r) { return r.json(); }).then(function (device) {
      if (device.error) { status.textContent = "Refused: " + device.error; button.disabled = false; return; }
      document.getElementById("td-device").textContent = device.deviceId;
      var scheme = location.protocol === "https:" ? "wss://" : "ws://";
      status.textContent = "Connecting…";
      client = HeraldMqtt.connect(scheme + location.host + panel.dataset.mqtt, device.deviceId, device.appId,
        device.deviceToken, {
          connected: function (code) {
            status.textContent = code === 0 ? "Connected as " + device.deviceId + "." : "Refused (CONNACK " + code + ").";
            panel.dataset.connected = code === 0 ? "yes" : "no";
          },
          message: function (m) { show(m, device.deviceId); },
          closed: function (reason) { status.textContent = "Disconnected: " + reason; panel.dataset.connected = "no"; button.disabled = false; }
        });
    }, function (e) { status.textContent = "Failed: " + e; button.disabled = false; });
  });
})();
