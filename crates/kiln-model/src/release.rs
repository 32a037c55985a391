//! Release statuses. The ledger itself lives in the store; the rule here is that a release
//! is never edited, only its status moves once from `pending` to `succeeded` or `failed`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseStatus {
    Pending,
    Succeeded,
    Failed,
}

impl ReleaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseStatus::Pending => "pending",
            ReleaseStatus::Succeeded => "succeeded",
            ReleaseStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<ReleaseStatus> {
        match s {
            "pending" => Some(ReleaseStatus::Pending),
            "succeeded" => Some(ReleaseStatus::Succeeded),
            "failed" => Some(ReleaseStatus::Failed),
            _ => None,
        }
    }

    /// The only moves the ledger allows.
    pub fn can_become(self, next: ReleaseStatus) -> bool {
        self == ReleaseStatus::Pending && next != ReleaseStatus::Pending
    }
}
