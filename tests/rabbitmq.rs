//! The RabbitMQ destination against the real broker on 127.0.0.1:5672 (guest/guest): every
//! message arrives with its routing key, message id and headers, also when the broker closes
//! Aorta's connection in the middle of the run; unroutable messages come back and are handled
//! as configured.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aorta::store::Store;
use common::{adt, connect, engine_with, exchange, field, settle};
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};

const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

fn broker_up() -> bool {
    let up = std::net::TcpStream::connect_timeout(
        &"127.0.0.1:5672".parse().unwrap(),
        Duration::from_secs(2),
    )
    .is_ok();
    if !up {
        assert!(
            std::env::var_os("CI").is_none(),
            "RabbitMQ must answer on 127.0.0.1:5672 in CI"
        );
        eprintln!("skipped: RabbitMQ is not running on 127.0.0.1:5672");
    }
    up
}

async fn amqp() -> Connection {
    let props = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio::current());
    Connection::connect(URL, props).await.unwrap()
}

/// Declares `exchange` and a durable queue bound to it with `binding`; returns the channel.
async fn bind(conn: &Connection, exchange: &str, queue: &str, binding: &str) -> lapin::Channel {
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_declare(
        exchange,
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_declare(
        queue,
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_purge(queue, QueuePurgeOptions::default())
        .await
        .unwrap();
    ch.queue_bind(
        queue,
        exchange,
        binding,
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch
}

fn destination(exchange: &str, extra: &str) -> String {
    format!(
        "[destinations.mq]\nkind = \"rabbitmq\"\nurl = \"env:AORTA_TEST_AMQP_URL\"\nexchange = \"{exchange}\"\nrouting_key = \"hl7.${{MSH-9-1}}.${{MSH-9-2}}\"\nconfirm_timeout_secs = 5\nretry = {{ initial_ms = 50, max_ms = 500 }}\n{extra}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_arrives_even_when_the_broker_drops_the_connection() {
    if !broker_up() {
        return;
    }
    std::env::set_var("AORTA_TEST_AMQP_URL", URL);
    let tag = format!("aorta-test-{}", std::process::id());
    let (exchange_name, queue) = (format!("{tag}-x"), format!("{tag}-q"));
    let consumer_conn = amqp().await;
    let ch = bind(&consumer_conn, &exchange_name, &queue, "hl7.ADT.*").await;
    let route = "from = \"test\"\n[[to]]\ndestination = \"mq\"\n";
    let (e, _dir) = engine_with(
        "rabbit",
        "",
        &[("mq.toml", route)],
        &[&destination(&exchange_name, "")],
    )
    .await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    // Send, start the broker closing every client connection (Aorta's included) after 50
    // messages, and keep sending until that is done and 100 more have gone.
    let closer = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(300));
        std::process::Command::new("rabbitmqctl")
            .args(["close_all_connections", "test: connection path restart"])
            .output()
    });
    let mut total = 0;
    let mut after_close = None;
    loop {
        exchange(&mut c, &adt(&format!("R-{total}"))).await;
        total += 1;
        if after_close.is_none() && closer.is_finished() {
            after_close = Some(total);
        }
        if after_close.is_some_and(|n| total >= n + 100) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let out = closer.join().unwrap().expect("rabbitmqctl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    settle(&e.store).await;
    let until = Instant::now() + Duration::from_secs(60);
    while e.store.queue_stats("mq").await.unwrap().depth > 0 {
        assert!(Instant::now() < until, "deliveries were not all confirmed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Read everything from the queue (the consumer's own connection may have been closed too).
    let conn = amqp().await;
    let ch2 = conn.create_channel().await.unwrap();
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    loop {
        let got = ch2
            .basic_get(queue.as_str(), BasicGetOptions { no_ack: true })
            .await
            .unwrap();
        let Some(m) = got else { break };
        let d = &m.delivery;
        assert_eq!(d.routing_key.as_str(), "hl7.ADT.A01");
        let props = &d.properties;
        assert_eq!(props.delivery_mode(), &Some(2));
        let headers = props.headers().as_ref().unwrap();
        let control = headers
            .inner()
            .get("x-hl7-control-id")
            .and_then(|v| v.as_long_string())
            .map(|s| s.to_string())
            .unwrap();
        assert_eq!(field(&d.data, "MSH-10"), control);
        let kind = headers
            .inner()
            .get("x-hl7-message-type")
            .and_then(|v| v.as_long_string())
            .map(|s| s.to_string());
        assert_eq!(kind.as_deref(), Some("ADT^A01"));
        assert_eq!(headers.inner().len(), 2, "{headers:?}");
        assert_eq!(
            props.content_type().as_ref().map(|c| c.as_str()),
            Some("x-application/hl7-v2+er7")
        );
        let message_id = props.message_id().as_ref().unwrap().to_string();
        assert!(message_id.ends_with(":mq"));
        seen.entry(control).or_default().push(message_id);
    }
    for i in 0..total {
        let ids = seen
            .get(&format!("R-{i}"))
            .unwrap_or_else(|| panic!("R-{i} was lost"));
        // A copy is possible only where the connection dropped before the confirm; it carries
        // the same message id, so the consumer can drop it.
        assert!(ids.iter().all(|x| x == &ids[0]), "R-{i}: {ids:?}");
    }
    let duplicates: usize = seen.values().map(|v| v.len() - 1).sum();
    let m = e.metrics.render();
    eprintln!(
        "{} messages, {duplicates} duplicates, closed after {:?}; {}",
        seen.len(),
        after_close,
        m.lines()
            .filter(|l| l.starts_with("aorta_deliveries_retried_total"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    assert_eq!(seen.len(), total);
    let _ = ch2
        .queue_delete(queue.as_str(), QueueDeleteOptions::default())
        .await;
    let _ = ch2
        .exchange_delete(exchange_name.as_str(), ExchangeDeleteOptions::default())
        .await;
    drop(ch);
    e.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unroutable_messages_are_rejected_when_configured() {
    if !broker_up() {
        return;
    }
    std::env::set_var("AORTA_TEST_AMQP_URL", URL);
    let exchange_name = format!("aorta-test-{}-unroutable", std::process::id());
    let route = "from = \"test\"\n[[to]]\ndestination = \"mq\"\n";
    let dest = destination(&exchange_name, "unroutable = \"reject\"");
    let (e, _dir) = engine_with("rabbit-unroutable", "", &[("mq.toml", route)], &[&dest]).await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    exchange(&mut c, &adt("U-1")).await;
    settle(&e.store).await;
    let m = e.store.find_by_control_id("U-1").await.unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let d = e.store.deliveries_for(m[0].id).await.unwrap();
        if d[0].state == "dead" {
            assert!(
                d[0].last_error
                    .as_deref()
                    .unwrap()
                    .starts_with("unroutable"),
                "{:?}",
                d[0]
            );
            break;
        }
        assert!(Instant::now() < until, "{:?}", d[0]);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let conn = amqp().await;
    let ch = conn.create_channel().await.unwrap();
    let _ = ch
        .exchange_delete(exchange_name.as_str(), ExchangeDeleteOptions::default())
        .await;
    e.stop().await.unwrap();
}
