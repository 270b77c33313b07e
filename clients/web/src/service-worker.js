// A service worker for Herald's Web Push: shows each push as a notification and reports
// `arrived` when shown and `opened` when clicked (docs/clients.md). Register it from the
// page (navigator.serviceWorker.register("/service-worker.js")) after
// HeraldClient.subscribeWebPush; the page gives it the device API's address and token
// with postMessage({herald: {httpUrl, deviceToken}}) so that it can report events.

let herald = null;

self.addEventListener("message", (event) => {
  if (event.data && event.data.herald) herald = event.data.herald;
});

async function report(messageId, kind) {
  if (!herald || !messageId) return;
  await fetch(`${herald.httpUrl}/device/v1/events`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${herald.deviceToken}` },
    body: JSON.stringify({ messageId, event: kind }),
  }).catch(() => {});
}

self.addEventListener("push", (event) => {
  let payload = {};
  try {
    payload = event.data ? event.data.json() : {};
  } catch {
    payload = { title: event.data ? event.data.text() : "" };
  }
  if (payload.type === "revoke") {
    // Withdraw the notification it names, if shown.
    event.waitUntil(
      self.registration.getNotifications({ tag: payload.messageId }).then((shown) => shown.forEach((n) => n.close())),
    );
    return;
  }
  event.waitUntil(
    self.registration
      .showNotification(payload.title || "", { body: payload.content || "", tag: payload.messageId, data: payload })
      .then(() => report(payload.messageId, "arrived")),
  );
});

self.addEventListener("notificationclick", (event) => {
  const payload = event.notification.data || {};
  event.notification.close();
  event.waitUntil(
    Promise.all([report(payload.messageId, "opened"), payload.uri ? self.clients.openWindow(payload.uri) : null]),
  );
});
