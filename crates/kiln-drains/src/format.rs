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
    frame(out, line, token, b"- - ");
}

/// One octet-counted message of an `application/logplex-1` body, appended to `out`.
pub fn logplex_frame(out: &mut Vec<u8>, line: &LogLine) {
    frame(out, line, "host", b"- ");
}

/// `LEN <PRI>1 TIMESTAMP HOSTNAME SOURCE PROCID <nil fields>MESSAGE`, written straight into
/// `out` (this runs for every line a drain carries: no `format!`, no allocation once `out`
/// has grown). The length prefix is only known once the message is written, so the message
/// goes in first, after room for the longest prefix, and is moved up against the prefix.
fn frame(out: &mut Vec<u8>, line: &LogLine, hostname: &str, nil_fields: &[u8]) {
    // Lines are at most 10,000 bytes, so the count has at most 5 digits; 20 fits any usize.
    const ROOM: usize = 20;
    let at = out.len();
    out.resize(at + ROOM, b' ');
    let body = out.len();
    out.push(b'<');
    out.extend_from_slice(itoa::Buffer::new().format(priority(line)).as_bytes());
    out.extend_from_slice(b">1 ");
    line.time.write_log_format(out);
    out.push(b' ');
    out.extend_from_slice(hostname.as_bytes());
    out.push(b' ');
    out.extend_from_slice(line.source.as_bytes());
    out.push(b' ');
    out.extend_from_slice(procid(line).as_bytes());
    out.push(b' ');
    out.extend_from_slice(nil_fields);
    out.extend_from_slice(line.message.as_bytes());
    let len = out.len() - body;
    let mut count = itoa::Buffer::new();
    let digits = count.format(len).as_bytes();
    // `digits` and a space end right where the message begins.
    let start = body - digits.len() - 1;
    out[start..body - 1].copy_from_slice(digits);
    out[body - 1] = b' ';
    out.drain(at..start);
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
    fn frames_follow_each_other_in_one_buffer_whatever_their_length() {
        let mut out = b"before".to_vec();
        let long = "x".repeat(9_995);
        for m in ["", "a", long.as_str(), "ü\u{1b}[31m"] {
            syslog_frame(&mut out, &line("app", "", m), "d.t");
        }
        let mut rest = &out[b"before".len()..];
        let mut got = Vec::new();
        while !rest.is_empty() {
            let sp = rest.iter().position(|b| *b == b' ').unwrap();
            let n: usize = std::str::from_utf8(&rest[..sp]).unwrap().parse().unwrap();
            let msg = std::str::from_utf8(&rest[sp + 1..sp + 1 + n]).unwrap();
            got.push(msg.rsplit_once(" - - ").unwrap().1.to_string());
            rest = &rest[sp + 1 + n..];
        }
        assert_eq!(got, ["", "a", long.as_str(), "ü\u{1b}[31m"]);
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
