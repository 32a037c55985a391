//! Heroku's router error codes: what each means, the status the client gets and the level
//! the router log line is written at (`shared/reference/heroku-runtime.md` §2.7).

use http::StatusCode;

/// A router error code, as it appears in `code=` of a router log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HCode {
    /// Web dynos exist but all crashed.
    H10,
    /// No response head from the dyno within the first-byte timeout.
    H12,
    /// The dyno closed the connection without answering.
    H13,
    /// The web process is scaled to zero.
    H14,
    /// The dyno sent nothing for the idle window after its response had started.
    H15,
    /// The dyno's response was not valid HTTP/1.1.
    H17,
    /// The dyno's connection broke after its response had started.
    H18,
    /// No dyno accepted a connection within the connect timeout.
    H19,
    /// No web dyno came up while the request was held.
    H20,
    /// Every dyno tried refused the connection.
    H21,
    /// The request was malformed or over Heroku's limits (refused by the router, 4xx).
    H26,
    /// The client went away before the response was delivered.
    H27,
    /// The client went idle for the idle window: it stopped sending its request body or
    /// stopped reading the response.
    H28,
    /// The app is in maintenance mode.
    H80,
    /// Nothing has been deployed to the app yet.
    H81,
}

/// `at=` of a router log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warning,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

impl HCode {
    pub fn as_str(self) -> &'static str {
        match self {
            HCode::H10 => "H10",
            HCode::H12 => "H12",
            HCode::H13 => "H13",
            HCode::H14 => "H14",
            HCode::H15 => "H15",
            HCode::H17 => "H17",
            HCode::H18 => "H18",
            HCode::H19 => "H19",
            HCode::H20 => "H20",
            HCode::H21 => "H21",
            HCode::H26 => "H26",
            HCode::H27 => "H27",
            HCode::H28 => "H28",
            HCode::H80 => "H80",
            HCode::H81 => "H81",
        }
    }

    /// `desc=` exactly as Heroku logs it (H14's differs from its documentation title).
    pub fn desc(self) -> &'static str {
        match self {
            HCode::H10 => "App crashed",
            HCode::H12 => "Request timeout",
            HCode::H13 => "Connection closed without response",
            HCode::H14 => "No web processes running",
            HCode::H15 => "Idle connection",
            HCode::H17 => "Poorly formatted HTTP response",
            HCode::H18 => "Server Request Interrupted",
            HCode::H19 => "Backend connection timeout",
            HCode::H20 => "App boot timeout",
            HCode::H21 => "Backend connection refused",
            HCode::H26 => "Request Error",
            HCode::H27 => "Client Request Interrupted",
            HCode::H28 => "Client Connection Idle",
            HCode::H80 => "Maintenance mode",
            HCode::H81 => "Blank app",
        }
    }

    /// The status logged (and, where the router answers, sent). The 499 of H27 and H28
    /// means "the client's fault"; H27's client is gone and H28's gets a 408. H26's is the
    /// usual one (a malformed body); refused heads log their own (414, 431, ...).
    pub fn status(self) -> StatusCode {
        match self {
            HCode::H27 | HCode::H28 => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            HCode::H26 => StatusCode::BAD_REQUEST,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Maintenance and blank apps are the owner's choice, not failures.
    pub fn level(self) -> Level {
        match self {
            HCode::H80 | HCode::H81 => Level::Info,
            HCode::H27 | HCode::H28 => Level::Warning,
            _ => Level::Error,
        }
    }

    /// Errors that happen mid-stream say which side's socket failed (`sock=`).
    pub fn sock(self) -> Option<&'static str> {
        match self {
            HCode::H18 => Some("backend"),
            HCode::H27 => Some("client"),
            _ => None,
        }
    }
}

impl std::fmt::Display for HCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
