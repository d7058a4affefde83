//! Typed identifiers: a party, a job, a round, and the role a party plays in a job.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A participating institution, named as in its TLS certificate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PartyId(pub String);

/// A training job.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JobId(pub String);

/// A round within a job, counted from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RoundId(pub u64);

impl fmt::Display for PartyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for RoundId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a party does in a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Holds the label (vertical): the bank.
    LabelHolder,
    /// Holds features about the same enterprises (vertical): tax bureau, platform.
    FeatureHolder,
    /// Holds rows with the same columns as its peers (horizontal).
    Bank,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_display_and_serialize_plainly() {
        assert_eq!(PartyId("bank1".into()).to_string(), "bank1");
        assert_eq!(RoundId(7).to_string(), "7");
        assert_eq!(serde_json::to_string(&Role::LabelHolder).unwrap(), "\"label_holder\"");
    }
}
