//! Which routed output topics exist. A record routed to a topic that does
//! not exist fails for good (it goes to the failure policy); but only the
//! broker's own answer says a topic does not exist. A metadata request that
//! times out or cannot reach a broker says nothing about the topic: the
//! transaction is aborted and retried instead, so that no record is
//! dead-lettered or skipped because of a network blip.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::client::{Client, ClientContext};
use rdkafka::types::RDKafkaErrorCode;

/// How long the answer "does not exist" is trusted before asking again (the
/// topic may be created meanwhile). "Exists" is trusted for good.
const MISSING_FOR: Duration = Duration::from_secs(30);
/// How long one metadata request may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// What the cluster says about a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicState {
    /// It exists and has partitions.
    Exists,
    /// The broker answered that it does not exist.
    Missing,
    /// The broker answered that this client may not see or write it.
    NotAuthorized,
}

/// The answers about routed topics so far.
#[derive(Debug, Default)]
pub struct OutputTopics {
    known: HashMap<String, (TopicState, Instant)>,
}

impl OutputTopics {
    /// What the cluster says about `topic`: from the cache, or asked now.
    /// `Err` when there is no authoritative answer (timeout, transport
    /// error, a leader election): nothing is cached then.
    pub fn state<C: ClientContext>(
        &mut self,
        client: &Client<C>,
        topic: &str,
    ) -> Result<TopicState, String> {
        if let Some((state, at)) = self.known.get(topic) {
            if *state == TopicState::Exists || at.elapsed() < MISSING_FOR {
                return Ok(state.clone());
            }
        }
        let state = ask(client, topic)?;
        self.known
            .insert(topic.to_owned(), (state.clone(), Instant::now()));
        Ok(state)
    }
}

/// One metadata request for `topic`.
pub fn ask<C: ClientContext>(client: &Client<C>, topic: &str) -> Result<TopicState, String> {
    let metadata = client
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(|e| format!("metadata request for `{topic}` failed: {e}"))?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(format!("the metadata answer does not mention `{topic}`"));
    };
    match t.error().map(RDKafkaErrorCode::from) {
        None if !t.partitions().is_empty() => Ok(TopicState::Exists),
        None => Err(format!("`{topic}` has no partitions yet")),
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
            Ok(TopicState::Missing)
        }
        Some(RDKafkaErrorCode::TopicAuthorizationFailed) => Ok(TopicState::NotAuthorized),
        Some(code) => Err(format!("metadata for `{topic}`: {code}")),
    }
}
