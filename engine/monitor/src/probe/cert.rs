//! The one thing a probe needs from a server's certificate: when it
//! expires. A minimal DER walk to `tbsCertificate.validity.notAfter`
//! (RFC 5280 §4.1), bounded by the input and never panicking on it.

/// `notAfter` of a DER-encoded X.509 certificate, in seconds since the epoch.
pub fn not_after_unix(der: &[u8]) -> Option<i64> {
    let (tag, certificate, _) = tlv(der)?;
    expect(tag, SEQUENCE)?;
    let (tag, tbs, _) = tlv(certificate)?;
    expect(tag, SEQUENCE)?;
    let mut rest = tbs;
    // [0] EXPLICIT version, present from v2 on.
    let (tag, _, after) = tlv(rest)?;
    if tag == 0xa0 {
        rest = after;
    }
    // serialNumber, signature, issuer, then validity.
    for _ in 0..3 {
        rest = tlv(rest)?.2;
    }
    let (tag, validity, _) = tlv(rest)?;
    expect(tag, SEQUENCE)?;
    let (_, _, after_not_before) = tlv(validity)?;
    let (tag, not_after, _) = tlv(after_not_before)?;
    let text = std::str::from_utf8(not_after).ok()?;
    match tag {
        UTC_TIME => parse_time(text, false),
        GENERALIZED_TIME => parse_time(text, true),
        _ => None,
    }
}

const SEQUENCE: u8 = 0x30;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

fn expect(tag: u8, want: u8) -> Option<()> {
    (tag == want).then_some(())
}

/// One tag-length-value: (tag, contents, what follows).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (len, header) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = input.get(2..2 + n)?;
        let len = bytes.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    Some((tag, input.get(header..end)?, input.get(end..)?))
}

/// `YYMMDDHHMMSSZ` (UTCTime: 50–99 are 19xx) or `YYYYMMDDHHMMSSZ`.
fn parse_time(text: &str, four_digit_year: bool) -> Option<i64> {
    let text = text.strip_suffix('Z')?;
    let digits = |s: &str| -> Option<i64> {
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse().ok())
            .flatten()
    };
    let (year, rest) = if four_digit_year {
        (digits(text.get(..4)?)?, text.get(4..)?)
    } else {
        let yy = digits(text.get(..2)?)?;
        (if yy >= 50 { 1900 + yy } else { 2000 + yy }, text.get(2..)?)
    };
    // Fractions of a second (GeneralizedTime may carry them) do not matter.
    let rest = rest.split('.').next()?;
    if rest.len() != 10 {
        return None;
    }
    let field = |i: usize| digits(&rest[i..i + 2]);
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    let date = chrono::NaiveDate::from_ymd_opt(year as i32, month as u32, day as u32)?;
    let time = date.and_hms_opt(hour as u32, minute as u32, second as u32)?;
    Some(time.and_utc().timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wraps `contents` in a tag and a DER length.
    fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match contents.len() {
            n if n < 0x80 => out.push(n as u8),
            n if n < 0x100 => out.extend([0x81, n as u8]),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(contents);
        out
    }

    fn certificate(not_after: &[u8]) -> Vec<u8> {
        let version = der(0xa0, &der(0x02, &[2]));
        let serial = der(0x02, &[1, 2, 3]);
        let algorithm = der(SEQUENCE, &der(0x06, &[42, 134, 72]));
        let issuer = der(SEQUENCE, &der(0x31, &[0; 150]));
        let validity = der(
            SEQUENCE,
            &[der(UTC_TIME, b"250101000000Z"), not_after.to_vec()].concat(),
        );
        let tbs = der(
            SEQUENCE,
            &[version, serial, algorithm, issuer, validity].concat(),
        );
        der(
            SEQUENCE,
            &[tbs, der(SEQUENCE, &[]), der(0x03, &[0])].concat(),
        )
    }

    #[test]
    fn reads_not_after_in_both_time_forms() {
        let utc = certificate(&der(UTC_TIME, b"270315120000Z"));
        assert_eq!(not_after_unix(&utc), Some(1_805_112_000));
        let generalized = certificate(&der(GENERALIZED_TIME, b"20500101000000Z"));
        assert_eq!(not_after_unix(&generalized), Some(2_524_608_000));
    }

    #[test]
    fn never_panics_on_any_prefix_or_corruption() {
        let cert = certificate(&der(UTC_TIME, b"270315120000Z"));
        for len in 0..cert.len() {
            let _ = not_after_unix(&cert[..len]);
        }
        for i in 0..cert.len() {
            for byte in [0x00, 0x7f, 0x80, 0x84, 0xff] {
                let mut bad = cert.clone();
                bad[i] = byte;
                let _ = not_after_unix(&bad);
            }
        }
        assert_eq!(
            not_after_unix(&certificate(&der(UTC_TIME, b"271315120000Z"))),
            None
        );
    }
}
