//! The scenario of `tests/delivery.rs` with `ack/1` on every socket: one
//! PUSH, two PULLs over tcp, 10,000 numbered messages, one PULL closed
//! half-way. Without the layer each message is received once or counted
//! lost; with it every message reaches an application exactly once: what
//! the closing PULL's application never took (its receive queue, the
//! kernel's buffers, the wire) was never acknowledged, so the PUSH sends it
//! to the other PULL.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::wire::within;
use spstack::reliable::ack::Ack;
use spstack::{Socket, Stats};

const N: u32 = 10_000;
const LONG: Duration = Duration::from_secs(30);

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(LONG, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn numbered(i: u32) -> Vec<u8> {
    let mut v = i.to_be_bytes().to_vec();
    v.extend_from_slice(&[0x5a; 60]);
    v
}

fn id_of(body: &[u8]) -> u32 {
    u32::from_be_bytes([body[0], body[1], body[2], body[3]])
}

fn reader(s: Socket, got: Arc<Mutex<Vec<u32>>>, slow: Option<Duration>) {
    tokio::spawn(async move {
        while let Ok(m) = s.recv().await {
            got.lock().unwrap().push(id_of(m.body()));
            if let Some(d) = slow {
                tokio::time::sleep(d).await;
            }
        }
    });
}

async fn one_pull_closed_half_way(slow: Option<Duration>) {
    let (a, b) = (
        spstack::pull0().pipe_layer(Ack::new().layer()).build(),
        spstack::pull0().pipe_layer(Ack::new().layer()).build(),
    );
    let ea = a.listen("tcp://127.0.0.1:0").await.unwrap();
    let eb = b.listen("tcp://127.0.0.1:0").await.unwrap();
    let ack = Ack::new();
    let pushed = ack.stats();
    let push = spstack::push0().pipe_layer(ack.layer()).build();
    within("dial a", push.dial(ea.url())).await.unwrap();
    within("dial b", push.dial(eb.url())).await.unwrap();
    until("two pipes", || push.pipes().len() == 2).await;
    let (got_a, got_b) = (Arc::default(), Arc::default());
    reader(a.clone(), Arc::clone(&got_a), slow);
    reader(b.clone(), Arc::clone(&got_b), None);

    let closer = {
        let (a, got_a) = (a.clone(), Arc::clone(&got_a));
        tokio::spawn(async move {
            until("a's half", || got_a.lock().unwrap().len() >= 1000).await;
            a.shutdown().await
        })
    };
    for i in 0..N {
        tokio::time::timeout(LONG, push.send(numbered(i)))
            .await
            .expect("send in time")
            .expect("send");
    }
    let a_final: Stats = within("a closes", closer).await.unwrap();
    let delivered = || got_a.lock().unwrap().len() + got_b.lock().unwrap().len();
    until("every message delivered", || delivered() >= N as usize).await;
    // a moment for a second copy to show
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ids: Vec<u32> = got_a.lock().unwrap().clone();
    let taken_by_a = ids.len();
    ids.extend(got_b.lock().unwrap().iter());
    let unique: HashSet<u32> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a message was delivered twice");
    assert_eq!(unique, (0..N).collect(), "a message was lost");
    let st = push.stats();
    let p = pushed.snapshot();
    assert_eq!(st.total_drops(), 0, "{st}");
    // what a threw away unread (its queue, what it read while closing) is
    // among what the pusher handed back and sent to b
    assert!(a_final.total_drops() <= p.returned, "{a_final} {p:?}");
    until("the pusher's counters settle", || {
        let st = push.stats();
        st.msgs_out - st.returned + st.total_drops() == N as u64
    })
    .await;
    println!(
        "{N} sent, {N} delivered once ({taken_by_a} by the closed PULL); \
         {} discarded by its close, {} handed back and resent: {:?}",
        a_final.total_drops(),
        p.returned,
        p
    );
    push.close();
    b.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_to_two_pulls_one_closed_half_way_delivers_every_message_once() {
    one_pull_closed_half_way(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_to_two_pulls_one_slow_reader_closed_half_way_delivers_every_message_once() {
    one_pull_closed_half_way(Some(Duration::from_micros(200))).await;
}
