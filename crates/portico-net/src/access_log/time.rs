//! UTC calendar fields of a time, for the access-log formats (no time-zone database: lines
//! are in UTC, as `+0000` / `Z` say).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A UTC calendar time broken into fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millis: u32,
}

impl Civil {
    /// Break a system time into UTC fields (times before 1970 clamp to the epoch).
    pub fn from_system(t: SystemTime) -> Civil {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let secs = d.as_secs();
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
            millis: d.subsec_millis(),
        }
    }

    /// nginx `$time_local` in UTC: `21/Nov/2026:05:20:00 +0000`.
    pub fn write_clf(&self, out: &mut String) {
        let mon = MONTHS[(self.month.clamp(1, 12) - 1) as usize];
        let _ = write!(
            out,
            "{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000",
            self.day, mon, self.year, self.hour, self.minute, self.second
        );
    }

    /// RFC 3339 with milliseconds: `2026-11-21T05:20:00.000Z`.
    pub fn write_rfc3339(&self, out: &mut String) {
        let _ = write!(
            out,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.millis
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        let t = |s: u64| Civil::from_system(UNIX_EPOCH + Duration::from_secs(s));
        let mut s = String::new();
        t(0).write_clf(&mut s);
        assert_eq!(s, "01/Jan/1970:00:00:00 +0000");
        s.clear();
        t(951_782_400).write_clf(&mut s); // leap day 2000
        assert_eq!(s, "29/Feb/2000:00:00:00 +0000");
        s.clear();
        Civil::from_system(UNIX_EPOCH + Duration::from_millis(1_795_238_400_007))
            .write_rfc3339(&mut s);
        assert_eq!(s, "2026-11-21T05:20:00.007Z");
        s.clear();
        t(4_102_444_799).write_clf(&mut s);
        assert_eq!(s, "31/Dec/2099:23:59:59 +0000");
        s.clear();
        t(4_107_542_400).write_clf(&mut s); // 2100 is not a leap year
        assert_eq!(s, "01/Mar/2100:00:00:00 +0000");
    }
}
