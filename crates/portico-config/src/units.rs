//! Duration and size syntax: `"250ms"`, `"5s"`, `"2m"`, `"1h"`, `"30d"` (also compound,
//! `"1m30s"`, and `"0"`), and `"512"`, `"64k"`, `"10m"`, `"1g"` (binary multiples, as nginx).

use std::time::Duration;

/// Parses a duration: one or more `NUMBER UNIT` parts (`ms`, `s`, `m`, `h`, `d`), e.g. `"250ms"`,
/// `"5s"`, `"1m30s"`, `"30d"`. A bare `"0"` is zero. The error is a one-line reason.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    if text.bytes().all(|b| b == b'0') {
        return Ok(Duration::ZERO);
    }
    let mut total_ms: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "`{text}` is not a duration (expected a number then ms, s, m, h or d)"
            ));
        }
        let (num, after) = rest.split_at(digits);
        let unit_len = after
            .bytes()
            .take_while(|b| b.is_ascii_alphabetic())
            .count();
        let (unit, after) = after.split_at(unit_len);
        let factor: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => {
                return Err(format!(
                    "`{text}` has a number without a unit (ms, s, m, h or d)"
                ));
            }
            other => {
                return Err(format!(
                    "`{text}` has an unknown unit `{other}` (use ms, s, m, h or d)"
                ));
            }
        };
        let n: u64 = num
            .parse()
            .map_err(|_| format!("`{text}` is too large a duration"))?;
        total_ms = n
            .checked_mul(factor)
            .and_then(|v| total_ms.checked_add(v))
            .ok_or_else(|| format!("`{text}` is too large a duration"))?;
        rest = after;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Parses a size in bytes: `"512"`, `"64k"`, `"10m"`, `"1g"` (k = 1024; upper case accepted).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let text = s.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(format!(
            "`{text}` is not a size (expected a number, optionally followed by k, m or g)"
        ));
    }
    let (num, unit) = text.split_at(digits);
    let factor: u64 = match unit {
        "" => 1,
        "k" | "K" => 1 << 10,
        "m" | "M" => 1 << 20,
        "g" | "G" => 1 << 30,
        other => {
            return Err(format!(
                "`{text}` has an unknown size unit `{other}` (use k, m or g)"
            ));
        }
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| format!("`{text}` is too large a size"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
    }

    #[test]
    fn bad_durations() {
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5").unwrap_err().contains("without a unit"));
        assert!(
            parse_duration("5sec")
                .unwrap_err()
                .contains("unknown unit `sec`")
        );
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1.5s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
        assert!(parse_duration("999999999999999d").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("64k"), Ok(64 * 1024));
        assert_eq!(parse_size("10m"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("0"), Ok(0));
    }

    #[test]
    fn bad_sizes() {
        assert!(parse_size("").is_err());
        assert!(parse_size("k").is_err());
        assert!(
            parse_size("10mb")
                .unwrap_err()
                .contains("unknown size unit")
        );
        assert!(parse_size("99999999999999999g").is_err());
    }
}
