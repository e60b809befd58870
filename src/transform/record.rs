//! The record that flows through a transform chain.

/// One Kafka header. Kafka allows repeated keys and null values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header name.
    pub key: String,
    /// Header value; `None` is a null value, not an empty one.
    pub value: Option<Vec<u8>>,
}

/// A record between input and output.
///
/// Key, value, headers and timestamp are carried over from the input unless a
/// step changes them. A `None` value is a tombstone and stays one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Destination topic; `None` means the configured `output.topic`.
    pub topic: Option<String>,
    /// Record key; the output partition follows it.
    pub key: Option<Vec<u8>>,
    /// Record value.
    pub value: Option<Vec<u8>>,
    /// Headers, in order.
    pub headers: Vec<Header>,
    /// Timestamp in milliseconds since the epoch, if the input had one.
    pub timestamp: Option<i64>,
}

impl Record {
    /// Bytes of key and value: what batch size limits count.
    pub fn payload_len(&self) -> usize {
        self.key.as_ref().map_or(0, Vec::len) + self.value.as_ref().map_or(0, Vec::len)
    }

    /// Bytes librdkafka counts against `message.max.bytes`: key, value and
    /// headers (with a few bytes of framing per header).
    pub fn wire_len(&self) -> usize {
        self.payload_len()
            + self
                .headers
                .iter()
                .map(|h| h.key.len() + h.value.as_ref().map_or(0, Vec::len) + 4)
                .sum::<usize>()
    }
}

/// Kafka's own rule for topic names: 1-249 characters of `[a-zA-Z0-9._-]`,
/// not `.` or `..`.
pub fn is_legal_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
