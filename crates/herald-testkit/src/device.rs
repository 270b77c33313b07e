//! [`TestDevice`]: a real MQTT 3.1.1 client (rumqttc) connected as a device.

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::WAIT;
use crate::client::Creds;

/// What the event loop of a [`TestDevice`] saw.
#[derive(Debug)]
pub enum Seen {
    Publish(Publish),
    SubAck(Vec<rumqttc::SubscribeReasonCode>),
    Closed(String),
}

/// A real MQTT 3.1.1 client connected as a device.
pub struct TestDevice {
    pub client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl TestDevice {
    /// Connects and waits for CONNACK; panics when refused.
    pub async fn connect(creds: &Creds) -> TestDevice {
        Self::connect_with(creds.options(), false).await.expect("CONNACK accepted")
    }

    /// Connects with manual acknowledgements: the test decides when to PUBACK.
    pub async fn connect_manual_ack(creds: &Creds) -> TestDevice {
        Self::connect_with(creds.options(), true).await.expect("CONNACK accepted")
    }

    /// Connects; `Err` carries the refusal (e.g. the CONNACK code).
    pub async fn connect_with(mut opts: MqttOptions, manual_acks: bool) -> Result<TestDevice, String> {
        opts.set_manual_acks(manual_acks);
        let (client, mut eventloop) = AsyncClient::new(opts, 100);
        first_connack(&mut eventloop).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send(Seen::Publish(p));
                    }
                    Ok(Event::Incoming(Packet::SubAck(s))) => {
                        let _ = tx.send(Seen::SubAck(s.return_codes));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = tx.send(Seen::Closed(e.to_string()));
                        return;
                    }
                }
            }
        });
        Ok(TestDevice { client, rx, task })
    }

    pub async fn next(&mut self) -> Seen {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("nothing from the server in time")
            .expect("event loop ended")
    }

    /// True when nothing arrives for `d`.
    pub async fn quiet_for(&mut self, d: std::time::Duration) -> bool {
        tokio::time::timeout(d, self.rx.recv()).await.is_err()
    }

    /// The next delivery, as (publish, parsed payload).
    pub async fn next_push(&mut self) -> (Publish, Value) {
        match self.next().await {
            Seen::Publish(p) => {
                let v: Value = serde_json::from_slice(&p.payload).expect("payload is JSON");
                (p, v)
            }
            other => panic!("expected a delivery, got {other:?}"),
        }
    }

    /// Waits until the server closes the connection.
    pub async fn closed(&mut self) -> String {
        loop {
            match self.next().await {
                Seen::Closed(why) => return why,
                _ => continue,
            }
        }
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

async fn first_connack(eventloop: &mut EventLoop) -> Result<(), String> {
    let result = tokio::time::timeout(WAIT, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => continue,
                Err(e) => return Err(format!("{e:?}")),
            }
        }
    })
    .await;
    result.unwrap_or_else(|_| Err("no CONNACK in time".into()))
}

/// A publish to the events topic of `device`.
pub async fn publish_event(device: &TestDevice, device_id: &str, body: Value) {
    device
        .client
        .publish(format!("events/{device_id}"), QoS::AtLeastOnce, false, body.to_string())
        .await
        .expect("publish");
}
