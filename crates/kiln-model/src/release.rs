//! The release ledger's rules. The ledger is kept by the store (in one transaction per
//! change, so the rules hold under concurrency and crashes); what the rules are lives here,
//! the same for every store backend:
//!
//! - a release is never edited; only its status moves, once, from `pending` to `succeeded`
//!   or `failed`;
//! - versions count up from 1 without gaps, per app;
//! - an app starts with v1, "Initial release";
//! - a config change appends exactly one release, carrying the newest release's slug, and
//!   none when nothing changed.

use crate::Invalid;
use crate::config::{self, ConfigVars};
use crate::records::NewRelease;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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

/// The version after `last` (0 for an app without releases), if there is one.
pub fn next_version(last: u32) -> Option<u32> {
    last.checked_add(1)
}

/// Release v1 of a new app.
pub fn initial_release(owner_id: &str) -> NewRelease {
    NewRelease {
        description: "Initial release".to_string(),
        status: ReleaseStatus::Succeeded,
        slug_id: None,
        config: ConfigVars::new(),
        user_id: owner_id.to_string(),
    }
}

/// The release a config PATCH appends to an app whose config is `current` and whose newest
/// release runs `newest_slug`: the new config and the release, or `None` when the patch
/// changes nothing. With code to run the release is pending (it goes live once the platform
/// has run the release phase and restarted the dynos); without, there is nothing to wait for.
pub fn config_release(
    current: &ConfigVars,
    patch: &BTreeMap<String, Option<String>>,
    newest_slug: Option<String>,
    user_id: &str,
) -> Result<Option<(ConfigVars, NewRelease)>, Invalid> {
    let (next, change) = config::apply_patch(current, patch)?;
    if change.is_empty() {
        return Ok(None);
    }
    let status = if newest_slug.is_some() {
        ReleaseStatus::Pending
    } else {
        ReleaseStatus::Succeeded
    };
    let release = NewRelease {
        description: change.description(),
        status,
        slug_id: newest_slug,
        config: next.clone(),
        user_id: user_id.to_string(),
    };
    Ok(Some((next, release)))
}

/// How a release is named in a request: `v12` or `12` (a version), else an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseRef<'a> {
    Version(u32),
    Id(&'a str),
    /// All digits, but more than any version can be: a release that cannot exist.
    Impossible,
}

impl<'a> ReleaseRef<'a> {
    pub fn parse(id_or_version: &'a str) -> ReleaseRef<'a> {
        let digits = id_or_version.strip_prefix('v').unwrap_or(id_or_version);
        // Only plain digits are a version: u32's parser would also take "+3".
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            digits
                .parse()
                .map_or(ReleaseRef::Impossible, ReleaseRef::Version)
        } else {
            ReleaseRef::Id(id_or_version)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_move_once_from_pending() {
        use ReleaseStatus::*;
        for (from, to, ok) in [
            (Pending, Succeeded, true),
            (Pending, Failed, true),
            (Pending, Pending, false),
            (Succeeded, Failed, false),
            (Failed, Succeeded, false),
            (Succeeded, Pending, false),
        ] {
            assert_eq!(from.can_become(to), ok, "{from:?} -> {to:?}");
        }
        assert_eq!(ReleaseStatus::parse("succeeded"), Some(Succeeded));
        assert_eq!(ReleaseStatus::parse("Succeeded"), None);
        assert_eq!(next_version(0), Some(1));
        assert_eq!(next_version(u32::MAX), None);
    }

    #[test]
    fn a_config_change_appends_one_release_with_the_newest_slug() {
        let current: ConfigVars = [("A".to_string(), "1".to_string())].into();
        let patch = |items: &[(&str, Option<&str>)]| {
            items
                .iter()
                .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
                .collect::<BTreeMap<_, _>>()
        };
        // No change: no release.
        assert_eq!(
            config_release(
                &current,
                &patch(&[("A", Some("1")), ("GONE", None)]),
                Some("s".into()),
                "u"
            ),
            Ok(None)
        );
        // With a slug the release waits for the restart; without, it is live at once.
        let (next, r) = config_release(
            &current,
            &patch(&[("B", Some("2")), ("A", None)]),
            Some("s".into()),
            "u",
        )
        .unwrap()
        .unwrap();
        assert_eq!(next, [("B".to_string(), "2".to_string())].into());
        assert_eq!(
            r,
            NewRelease {
                description: "Set B and remove A config vars".into(),
                status: ReleaseStatus::Pending,
                slug_id: Some("s".into()),
                config: next.clone(),
                user_id: "u".into()
            }
        );
        let (_, r) = config_release(&current, &patch(&[("B", Some("2"))]), None, "u")
            .unwrap()
            .unwrap();
        assert_eq!(r.status, ReleaseStatus::Succeeded);
        // A bad key changes nothing.
        assert!(
            config_release(
                &current,
                &patch(&[("B", Some("2")), ("BAD KEY", Some("x"))]),
                None,
                "u"
            )
            .is_err()
        );
        assert_eq!(initial_release("o").description, "Initial release");
        assert_eq!(initial_release("o").status, ReleaseStatus::Succeeded);
    }

    #[test]
    fn releases_are_named_by_version_or_id() {
        assert_eq!(ReleaseRef::parse("v12"), ReleaseRef::Version(12));
        assert_eq!(ReleaseRef::parse("12"), ReleaseRef::Version(12));
        assert_eq!(ReleaseRef::parse("v0"), ReleaseRef::Version(0));
        assert_eq!(ReleaseRef::parse("+3"), ReleaseRef::Id("+3"));
        assert_eq!(ReleaseRef::parse("v"), ReleaseRef::Id("v"));
        assert_eq!(ReleaseRef::parse(""), ReleaseRef::Id(""));
        assert_eq!(
            ReleaseRef::parse("v99999999999999999999"),
            ReleaseRef::Impossible
        );
        assert_eq!(
            ReleaseRef::parse("0f8fad5b-d9cb-469f-a165-70867728950e"),
            ReleaseRef::Id("0f8fad5b-d9cb-469f-a165-70867728950e")
        );
    }
}
