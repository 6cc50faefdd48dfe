//! Instants of `report --since/--until`: RFC 3339 (or a bare UTC date) and ages
//! relative to now (`30m`, `24h`, `7d`), as nanoseconds since the Unix epoch;
//! and their UTC calendar form for output. Written here (proleptic Gregorian,
//! days-from-civil, shared with the price table's effective dates) rather than
//! pulling a date-time crate for two functions.

use claudewatch_enrich::pricing::days_from_civil;

/// Nanoseconds in a second, an hour and a day.
pub const SECOND_NS: i64 = 1_000_000_000;
/// Nanoseconds in an hour.
pub const HOUR_NS: i64 = 3_600 * SECOND_NS;
/// Nanoseconds in a day.
pub const DAY_NS: i64 = 86_400 * SECOND_NS;

/// Parses `text` as an instant, in nanoseconds since the Unix epoch: RFC 3339
/// (`2026-11-23T08:00:00Z`, `2026-11-23 08:00:00.5+01:00`), a UTC date
/// (`2026-11-23`, its midnight), `now`, or an age before `now_ns` (`90s`,
/// `30m`, `24h`, `7d`, `2w`).
pub fn parse_instant(text: &str, now_ns: i64) -> Result<i64, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("now") {
        return Ok(now_ns);
    }
    if let Some(age) = parse_age(t) {
        let age = age.ok_or_else(|| format!("{text:?}: age out of range"))?;
        return now_ns
            .checked_sub(age)
            .filter(|v| *v >= 0)
            .ok_or_else(|| format!("{text:?}: before 1970"));
    }
    parse_rfc3339(t).map_err(|why| {
        format!("{text:?}: {why} (expected RFC 3339 such as 2026-11-23T08:00:00Z, a date such as 2026-11-23, or an age such as 30m, 24h, 7d)")
    })
}

/// `Some(Some(ns))` for a well-formed age, `Some(None)` when it overflows,
/// `None` when `t` is not an age at all.
fn parse_age(t: &str) -> Option<Option<i64>> {
    let unit_at = t.find(|c: char| !c.is_ascii_digit())?;
    if unit_at == 0 {
        return None;
    }
    let unit = match &t[unit_at..] {
        "s" => SECOND_NS,
        "m" | "min" => 60 * SECOND_NS,
        "h" => HOUR_NS,
        "d" => DAY_NS,
        "w" => 7 * DAY_NS,
        _ => return None,
    };
    let n: i64 = match t[..unit_at].parse() {
        Ok(n) => n,
        Err(_) => return Some(None),
    };
    Some(n.checked_mul(unit))
}

/// Parses RFC 3339 (`T`, `t` or a space between date and time; `Z`, `z` or
/// `±HH:MM`), or a bare date (midnight UTC). Fractions beyond nanoseconds
/// are cut. Years 1970 to 2262 (the nanosecond range of the table).
pub fn parse_rfc3339(t: &str) -> Result<i64, String> {
    let b = t.as_bytes();
    let num = |from: usize, len: usize| -> Result<i64, String> {
        let part = t.get(from..from + len).ok_or("too short")?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return Err(format!("{part:?} is not a number"));
        }
        part.parse::<i64>().map_err(|e| e.to_string())
    };
    let sep = |at: usize, allowed: &[u8]| -> Result<(), String> {
        match b.get(at) {
            Some(c) if allowed.contains(c) => Ok(()),
            _ => Err(format!("expected {:?} at offset {at}", allowed[0] as char)),
        }
    };
    let year = num(0, 4)?;
    sep(4, b"-")?;
    let month = num(5, 2)?;
    sep(7, b"-")?;
    let day = num(8, 2)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err("no such date".into());
    }
    let days = days_from_civil(year, month, day);
    if b.len() == 10 {
        return checked_ns(days, 0, 0);
    }
    sep(10, b"Tt ")?;
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    sep(13, b":")?;
    sep(16, b":")?;
    if hour > 23 || minute > 59 || second > 59 {
        return Err("no such time of day".into());
    }
    let mut i = 19;
    let mut frac_ns = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 9 {
                frac_ns = frac_ns * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return Err("empty fraction of a second".into());
        }
        for _ in (i - start).min(9)..9 {
            frac_ns *= 10;
        }
    }
    let offset_s = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() => {
            sep(i + 3, b":")?;
            let (oh, om) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if oh > 23 || om > 59 {
                return Err("no such UTC offset".into());
            }
            let s = oh * 3600 + om * 60;
            if *sign == b'+' {
                s
            } else {
                -s
            }
        }
        _ => return Err("expected Z or a UTC offset (+HH:MM) at the end".into()),
    };
    checked_ns(days, hour * 3600 + minute * 60 + second - offset_s, frac_ns)
}

fn checked_ns(days: i64, secs: i64, frac_ns: i64) -> Result<i64, String> {
    days.checked_mul(DAY_NS)
        .and_then(|d| d.checked_add(secs.checked_mul(SECOND_NS)?))
        .and_then(|v| v.checked_add(frac_ns))
        .filter(|v| *v >= 0)
        .ok_or_else(|| "outside 1970 to 2262".into())
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The date (year, month, day) of a day number since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `YYYY-MM-DD` of the UTC day holding `ns`.
pub fn format_date(ns: i64) -> String {
    let (y, m, d) = civil_from_days(ns.div_euclid(DAY_NS));
    format!("{y:04}-{m:02}-{d:02}")
}

/// RFC 3339 in UTC, with the nanoseconds when there are any.
pub fn format_rfc3339(ns: i64) -> String {
    let secs = ns.rem_euclid(DAY_NS) / SECOND_NS;
    let frac = ns.rem_euclid(SECOND_NS);
    let base = format!(
        "{}T{:02}:{:02}:{:02}",
        format_date(ns),
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if frac == 0 {
        format!("{base}Z")
    } else {
        format!("{base}.{frac:09}Z")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_393_612_088_952_249; // 2026-11-23T00:26:52.088952249Z

    #[test]
    fn rfc3339_forms() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_rfc3339("2026-11-23T00:26:52.088952249Z"),
            Ok(NOW),
            "nanoseconds exactly"
        );
        assert_eq!(
            parse_rfc3339("2026-11-23 01:26:52.088952249+01:00"),
            Ok(NOW)
        );
        assert_eq!(
            parse_rfc3339("2026-11-22t19:26:52.0889522491234-05:00"),
            Ok(NOW),
            "digits past nanoseconds cut"
        );
        assert_eq!(
            parse_rfc3339("2026-11-23T00:26:52.5Z"),
            Ok(NOW - 88_952_249 + 500_000_000)
        );
        assert_eq!(parse_rfc3339("2026-11-23"), Ok(NOW - NOW % DAY_NS));
        assert_eq!(parse_rfc3339("2024-02-29").map(|v| v % DAY_NS), Ok(0));
        for bad in [
            "2026-11-23T00:26:52",
            "2026-13-01",
            "2025-02-29",
            "2026-11-23T24:00:00Z",
            "2026-11-23T00:00:00.Z",
            "2026-11-23T00:00:00+0100",
            "1969-12-31",
            "2300-01-01",
            "yesterday",
            "",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ages_and_now() {
        assert_eq!(parse_instant("24h", NOW), Ok(NOW - DAY_NS));
        assert_eq!(parse_instant("7d", NOW), Ok(NOW - 7 * DAY_NS));
        assert_eq!(parse_instant("30m", NOW), Ok(NOW - 30 * 60 * SECOND_NS));
        assert_eq!(parse_instant("2w", NOW), Ok(NOW - 14 * DAY_NS));
        assert_eq!(parse_instant("90s", NOW), Ok(NOW - 90 * SECOND_NS));
        assert_eq!(parse_instant("now", NOW), Ok(NOW));
        assert!(parse_instant("99999999999999d", NOW).is_err());
        assert!(parse_instant("3y", NOW).unwrap_err().contains("RFC 3339"));
        assert!(parse_instant("h", NOW).is_err());
    }

    #[test]
    fn calendar_round_trip() {
        for days in (-1000..200_000).step_by(37) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(format_rfc3339(NOW), "2026-11-23T00:26:52.088952249Z");
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_date(NOW), "2026-11-23");
        assert_eq!(
            parse_rfc3339(&format_rfc3339(NOW)),
            Ok(NOW),
            "output parses back"
        );
    }
}
