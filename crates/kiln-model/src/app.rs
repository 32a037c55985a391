//! App names, as Heroku defines them.

use crate::Invalid;
use std::fmt;

/// A validated app name: 3 to 30 characters, lowercase letters, digits and dashes, starting
/// with a letter and ending with a letter or digit. The name is also a DNS label under the
/// platform's domain, which is why the rule is strict.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppName(String);

pub const MIN_LEN: usize = 3;
pub const MAX_LEN: usize = 30;

/// The adjectives of generated names (apps, add-ons).
pub(crate) const ADJECTIVES: &[&str] = &[
    "ancient",
    "autumn",
    "billowing",
    "bitter",
    "black",
    "blue",
    "bold",
    "brave",
    "calm",
    "cool",
    "crimson",
    "damp",
    "dark",
    "dawn",
    "delicate",
    "divine",
    "dry",
    "empty",
    "falling",
    "fierce",
    "floral",
    "fragrant",
    "frosty",
    "gentle",
    "green",
    "hidden",
    "holy",
    "icy",
    "jolly",
    "late",
    "lingering",
    "little",
    "lively",
    "long",
    "lucky",
    "misty",
    "morning",
    "muddy",
    "nameless",
    "noisy",
    "odd",
    "old",
    "orange",
    "patient",
    "plain",
    "polished",
    "proud",
    "purple",
    "quiet",
    "rapid",
    "red",
    "restless",
    "rough",
    "round",
    "royal",
    "shiny",
    "shy",
    "silent",
    "small",
    "snowy",
    "soft",
    "solitary",
    "sparkling",
    "spring",
    "still",
    "summer",
    "sweet",
    "tight",
    "tiny",
    "twilight",
    "wandering",
    "weathered",
    "white",
    "wild",
    "winter",
    "wispy",
    "young",
];

impl AppName {
    pub fn parse(name: &str) -> Result<AppName, Invalid> {
        if name.len() > MAX_LEN {
            return Err(Invalid::new(
                "name",
                format!("Name is too long (maximum is {MAX_LEN} characters)"),
            ));
        }
        if name.len() < MIN_LEN {
            return Err(Invalid::new(
                "name",
                format!("Name is too short (minimum is {MIN_LEN} characters)"),
            ));
        }
        let bytes = name.as_bytes();
        let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
        if !bytes[0].is_ascii_lowercase()
            || !(bytes[bytes.len() - 1].is_ascii_lowercase()
                || bytes[bytes.len() - 1].is_ascii_digit())
            || !bytes.iter().all(|&b| allowed(b))
        {
            return Err(Invalid::new(
                "name",
                "Name must start with a letter, end with a letter or digit and can only contain lowercase letters, digits, and dashes.",
            ));
        }
        Ok(AppName(name.to_string()))
    }

    /// A random Heroku-style name such as `quiet-river-4821`, for `apps:create` without a name.
    pub fn generate() -> AppName {
        const NOUN: &[&str] = &[
            "bird",
            "breeze",
            "brook",
            "bush",
            "butterfly",
            "cherry",
            "cloud",
            "darkness",
            "dawn",
            "dew",
            "dream",
            "dust",
            "feather",
            "field",
            "fire",
            "firefly",
            "flower",
            "fog",
            "forest",
            "frog",
            "frost",
            "glade",
            "glitter",
            "grass",
            "haze",
            "hill",
            "lake",
            "leaf",
            "meadow",
            "moon",
            "morning",
            "mountain",
            "night",
            "paper",
            "pine",
            "pond",
            "rain",
            "resonance",
            "river",
            "sea",
            "shadow",
            "shape",
            "silence",
            "sky",
            "smoke",
            "snow",
            "snowflake",
            "sound",
            "star",
            "sun",
            "sunset",
            "surf",
            "thunder",
            "tree",
            "violet",
            "voice",
            "water",
            "waterfall",
            "wave",
            "wildflower",
            "wind",
            "wood",
        ];
        let adj = ADJECTIVES[fastrand::usize(..ADJECTIVES.len())];
        let noun = NOUN[fastrand::usize(..NOUN.len())];
        AppName(format!("{adj}-{noun}-{:04}", fastrand::u32(1000..10000)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_heroku_style_names() {
        for ok in ["foo", "my-app-2", "a12", "abcdefghijklmnopqrstuvwxyz1234"] {
            assert!(AppName::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_bad_names_with_a_reason() {
        for bad in [
            "",
            "ab",
            "Foo",
            "1abc",
            "abc-",
            "a_b_c",
            "my app",
            "../etc",
            "abcdefghijklmnopqrstuvwxyz12345",
            "ünï",
        ] {
            let err = AppName::parse(bad).unwrap_err();
            assert_eq!(err.field, "name");
            assert!(!err.message.is_empty());
        }
    }

    #[test]
    fn generated_names_are_valid() {
        for _ in 0..200 {
            let n = AppName::generate();
            AppName::parse(n.as_str()).unwrap();
        }
    }
}

/// Whether an app id may name a file of its own (log history, metrics series). App ids are
/// UUIDs; anything else, such as a path with `/` or `..`, never names a file.
pub fn id_names_a_file(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}
