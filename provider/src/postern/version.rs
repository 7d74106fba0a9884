//! The version of the object on the edge (its ETag), kept in Terraform's private state
//! so that updates and deletes send `If-Match` and never silently overwrite a change
//! someone else made. Private state, because a resource has exactly the attributes of
//! the design and no hidden ones.

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Private {
    version: u64,
}

/// The private state recording `version`.
pub(crate) fn encode(version: u64) -> Vec<u8> {
    serde_json::to_vec(&Private { version }).unwrap_or_default()
}

/// The version recorded in private state; `None` when there is none (a state written
/// before the object was read), and then no `If-Match` is sent.
pub(crate) fn decode(private: &[u8]) -> Option<u64> {
    serde_json::from_slice::<Private>(private)
        .ok()
        .map(|p| p.version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_round_trip_and_garbage_is_none() {
        assert_eq!(decode(&encode(7)), Some(7));
        assert_eq!(decode(b""), None);
        assert_eq!(decode(b"not json"), None);
    }
}
