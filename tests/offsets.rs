//! Rule 5 of the contract, at the seam where it is decided: a transaction
//! that holds records never commits without the next offset of every
//! partition it consumed from. librdkafka clears the assignment of a fatal
//! consumer without a rebalance callback (and rust-rdkafka's default drops it
//! after a rebalance error); the positions of those partitions are gone then,
//! and the commit must be refused, not made with fewer offsets.

mod support;

use std::time::Duration;

use exactly::engine::offsets::positions_to_commit;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use support::*;

fn consumer_reading(topic: &str, partitions: i32) -> BaseConsumer {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker().bootstrap)
        .set("group.id", unique("positions"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    c
}

#[test]
fn positions_are_refused_when_a_consumed_partition_left_the_assignment() {
    let topic = unique("positions-in");
    create_topic(&topic, 2);
    produce(&topic, &input_records(200, 31));

    let c = consumer_reading(&topic, 2);
    let mut consumed = std::collections::BTreeSet::new();
    wait_until("a record from each partition", || {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            use rdkafka::Message;
            consumed.insert(m.partition());
        }
        consumed.len() == 2
    });
    let batch = vec![(topic.clone(), 0), (topic.clone(), 1)];

    // While both are assigned, each has its next offset.
    let offsets = positions_to_commit(&c, &batch).expect("positions of assigned partitions");
    assert_eq!(offsets.count(), 2);
    for e in offsets.elements() {
        assert!(
            matches!(e.offset(), Offset::Offset(o) if o > 0),
            "{}[{}] at {:?}",
            e.topic(),
            e.partition(),
            e.offset()
        );
    }

    // The assignment is cleared behind the transaction's back.
    c.unassign().unwrap();
    let refused = positions_to_commit(&c, &batch);
    assert!(
        refused.is_err(),
        "a commit without the consumed partitions' offsets must be refused; got {:?} offsets",
        refused.map(|t| t.count())
    );
}
