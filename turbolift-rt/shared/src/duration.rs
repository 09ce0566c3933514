//! The duration grammar of `timeout = "30s"` and of the `TURBOLIFT_TIMEOUT*` variables:
//! one or more `<integer><unit>` groups, unit one of `ms`, `s`, `m`, `h` (`"1m30s"`).

use std::fmt;
use std::time::Duration;

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid duration `{}`: {}; write it like \"500ms\", \"30s\", \"2m\" or \"1h30m\"",
            self.input, self.reason
        )
    }
}

impl std::error::Error for DurationError {}

/// Parses `"500ms"`, `"30s"`, `"2m"`, `"1h30m"`. Zero is rejected: a call needs time.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        input: input.to_owned(),
        reason,
    };
    let text = input.trim();
    if text.is_empty() {
        return Err(err("it is empty"));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err("expected a number"));
        }
        let value: u64 = rest[..digits]
            .parse()
            .map_err(|_| err("number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "" => return Err(err("a number needs a unit (ms, s, m, h)")),
            _ => return Err(err("unknown unit (use ms, s, m or h)")),
        };
        rest = &rest[unit_len..];
        let part = unit
            .checked_mul(u32::try_from(value).map_err(|_| err("number too large"))?)
            .ok_or_else(|| err("duration too large"))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| err("duration too large"))?;
    }
    if total.is_zero() {
        return Err(err("it must be longer than zero"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration(" 1s500ms "), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn rejects_bad_input_with_a_reason() {
        for bad in [
            "",
            "30",
            "s",
            "3x",
            "0s",
            "-1s",
            "99999999999999999999s",
            "1.5s",
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.to_string().contains("invalid duration"), "{bad}: {e}");
        }
    }
}
