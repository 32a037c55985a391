//! `logs`: creates a log session, then reads its `logplex_url` as Server-Sent Events and
//! prints each line as it arrives.

use super::{Ctx, resolve_app};
use crate::api::USER_AGENT;
use crate::cli::AppFlags;
use crate::format::str_at;
use crate::sse::SseParser;
use crate::transport::{ConnectError, HttpClient, next_chunk, segment};
use anyhow::{Result, anyhow, bail};
use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::Full;
use serde_json::json;

pub struct LogOptions {
    pub lines: u32,
    pub tail: bool,
    pub dyno: Option<String>,
    pub source: Option<String>,
    /// RFC 3339 times (Kiln's search over the retained history).
    pub since: Option<String>,
    pub until: Option<String>,
    pub grep: Option<String>,
}

/// `--since`/`--until`: an age (`30s`, `15m`, `2h`, `3d`, counted back from `now`) or a time
/// (RFC 3339), as the RFC 3339 time the API takes.
pub fn when(s: &str, now: kiln_model::Timestamp) -> Result<String> {
    let s = s.trim();
    if let Some(t) = kiln_model::Timestamp::parse_rfc3339(s) {
        return Ok(t.log_format());
    }
    let unit = match s.chars().last() {
        Some('s') => 1,
        Some('m') => 60,
        Some('h') => 3600,
        Some('d') => 86_400,
        _ => 0,
    };
    let n: Option<i64> = s[..s.len().saturating_sub(1)].parse().ok();
    match (n, unit) {
        (Some(n), unit) if unit > 0 && (0..=100 * 365).contains(&(n * unit / 86_400)) && n >= 0 => {
            // To the microsecond: "since 0s" means from now, not from the start of this second.
            Ok(kiln_model::Timestamp(now.0 - n * unit * 1_000_000).log_format())
        }
        _ => bail!("{s:?} is not an age (30s, 15m, 2h, 3d) or a time (2026-12-05T10:00:00Z)"),
    }
}

pub async fn logs(ctx: &mut Ctx<'_>, flags: &AppFlags, opts: LogOptions) -> Result<()> {
    let app = resolve_app(ctx.env, flags, None)?;
    let api = ctx.api()?;
    // The Heroku CLI sends `dyno` (not the schema's `dyno_name`) and leaves out absent filters.
    let mut body = json!({ "lines": opts.lines, "tail": opts.tail });
    if let Some(dyno) = &opts.dyno {
        body["dyno"] = json!(dyno);
    }
    if let Some(source) = &opts.source {
        body["source"] = json!(source);
    }
    for (k, v) in [
        ("since", &opts.since),
        ("until", &opts.until),
        ("grep", &opts.grep),
    ] {
        if let Some(v) = v {
            body[k] = json!(v);
        }
    }
    let session = api
        .post(&format!("/apps/{}/log-sessions", segment(&app)), &body)
        .await?;
    let url = str_at(&session, "/logplex_url");
    if url.is_empty() {
        bail!("The API created a log session without a logplex_url.");
    }
    stream(ctx, url, opts.tail).await
}

/// Reads the event stream at `url` until the server closes it, printing the data lines of
/// each message event. The URL carries its own secret, so no Authorization header is sent
/// (the key never goes to a host other than the API).
pub async fn stream(ctx: &mut Ctx<'_>, url: &str, tail: bool) -> Result<()> {
    let request = Request::get(url)
        .header(header::ACCEPT, "text/event-stream")
        .header(header::USER_AGENT, USER_AGENT)
        .body(Full::new(Bytes::new()))
        .map_err(|e| anyhow!("the log session's URL {url:?} is not usable: {e}"))?;
    let response =
        HttpClient::new()
            .send(request)
            .await
            .map_err(|e| match e.downcast::<ConnectError>() {
                Ok(c) => anyhow!(
                    "Could not connect to the log stream at {} ({}).",
                    c.url,
                    c.reason
                ),
                Err(e) => e,
            })?;
    let status = response.status();
    let is_sse = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        });
    if tail && matches!(status, StatusCode::NOT_FOUND | StatusCode::FORBIDDEN) {
        bail!("Log stream timed out. Please try again.");
    }
    if status != StatusCode::OK || !is_sse {
        let reason = status.canonical_reason().unwrap_or("");
        let what = if status == StatusCode::OK {
            " (not an event stream)"
        } else {
            ""
        };
        bail!(
            "Logs eventsource failed with: {} {reason}{what}",
            status.as_u16()
        );
    }

    let mut body = response.into_body();
    let mut parser = SseParser::new();
    while let Some(chunk) = next_chunk(&mut body).await? {
        let events = parser.feed(&chunk)?;
        print_events(ctx, &events)?;
    }
    let rest = parser.finish();
    print_events(ctx, &rest)
}

fn print_events(ctx: &mut Ctx<'_>, events: &[crate::sse::SseEvent]) -> Result<()> {
    let mut text = String::new();
    for event in events.iter().filter(|e| e.is_message()) {
        for line in event.data.split('\n') {
            text.push_str(line);
            text.push('\n');
        }
    }
    if text.is_empty() {
        Ok(())
    } else {
        ctx.out(&text)
    }
}

#[cfg(test)]
mod when_tests {
    use super::when;
    use kiln_model::Timestamp;

    #[test]
    fn ages_and_times() {
        let now = Timestamp::parse_rfc3339("2026-12-05T10:00:00Z").unwrap();
        // To the microsecond, in the log format (which the API parses back).
        assert_eq!(when("2h", now).unwrap(), "2026-12-05T08:00:00.000000+00:00");
        assert_eq!(
            when("30s", now).unwrap(),
            "2026-12-05T09:59:30.000000+00:00"
        );
        assert_eq!(when("3d", now).unwrap(), "2026-12-02T10:00:00.000000+00:00");
        assert_eq!(
            when("2026-12-01T00:00:00.5Z", now).unwrap(),
            "2026-12-01T00:00:00.500000+00:00"
        );
        for bad in ["", "h", "2x", "-2h", "99999999999d", "yesterday", "2h; rm"] {
            assert!(when(bad, now).is_err(), "{bad}");
        }
    }
}
