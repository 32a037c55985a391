//! The bytes drains send, exactly as Logplex writes them.
//!
//! - syslog drains: `<PRI>1 TIMESTAMP d.TOKEN SOURCE PROCESS - - MESSAGE` (RFC 5424, the
//!   drain token as HOSTNAME, MSGID and STRUCTURED-DATA nil), each framed by octet counting
//!   (RFC 6587: the length in decimal, a space, the message);
//! - HTTPS drains: the same framing with HOSTNAME `host` and no STRUCTURED-DATA field at all
//!   (`<PRI>1 TIMESTAMP host SOURCE PROCESS - MESSAGE`), which is what Logplex's
//!   `application/logplex-1` bodies carry and what receivers written for Heroku parse.

use kiln_model::log::LogLine;

/// PRI: facility local7 (app output, API events), local3 (the platform: router, dyno
/// manager), local5 with severity warning for Logplex's own L-code lines; severity info
/// otherwise. Heroku says its facilities are "subject to change"; these are the ones it uses.
pub fn priority(line: &LogLine) -> u8 {
    match (&*line.source, &*line.process) {
        ("heroku", "logplex") => 21 * 8 + 4,
        ("heroku", _) => 19 * 8 + 6,
        _ => 23 * 8 + 6,
    }
}

fn procid(line: &LogLine) -> &str {
    if line.process.is_empty() {
        "-"
    } else {
        &line.process
    }
}

/// One octet-counted RFC 5424 message for a syslog drain, appended to `out`.
pub fn syslog_frame(out: &mut Vec<u8>, line: &LogLine, token: &str) {
    let msg = format!(
        "<{}>1 {} {} {} {} - - {}",
        priority(line),
        line.time.log_format(),
        token,
        line.source,
        procid(line),
        line.message
    );
    out.extend_from_slice(msg.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(msg.as_bytes());
}

/// One octet-counted message of an `application/logplex-1` body, appended to `out`.
pub fn logplex_frame(out: &mut Vec<u8>, line: &LogLine) {
    let msg = format!(
        "<{}>1 {} host {} {} - {}",
        priority(line),
        line.time.log_format(),
        line.source,
        procid(line),
        line.message
    );
    out.extend_from_slice(msg.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(msg.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_model::Timestamp;

    fn line(source: &'static str, process: &str, msg: &str) -> LogLine {
        let mut l = LogLine::new(source, process.to_string(), msg);
        l.time = Timestamp::parse_rfc3339("2026-12-05T10:00:00.123456Z").unwrap();
        l
    }

    #[test]
    fn syslog_frames_are_octet_counted_rfc5424() {
        let mut out = Vec::new();
        syslog_frame(&mut out, &line("app", "web.1", "héllo"), "d.abc");
        let text = String::from_utf8(out).unwrap();
        let (len, msg) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), msg.len(), "bytes, not chars");
        assert_eq!(
            msg,
            "<190>1 2026-12-05T10:00:00.123456+00:00 d.abc app web.1 - - héllo"
        );
    }

    #[test]
    fn logplex_frames_carry_no_structured_data() {
        let mut out = Vec::new();
        logplex_frame(&mut out, &line("heroku", "router", "at=info"));
        logplex_frame(&mut out, &line("heroku", "logplex", "Error L10"));
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "68 <158>1 2026-12-05T10:00:00.123456+00:00 host heroku router - at=info\
             71 <172>1 2026-12-05T10:00:00.123456+00:00 host heroku logplex - Error L10"
        );
    }
}
