//! Times as a person reads them: relative to the store's clock ("2 minutes ago", "in 23 hours"), with
//! the absolute time (UTC) in a `<time datetime=…>` element that a small script turns into the
//! browser's local time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::esc;

/// `at` relative to `now`, with the absolute time below it (HTML).
pub(super) fn when_html(now: SystemTime, at: SystemTime) -> String {
    format!(
        r#"<span class="rel">{}</span> <time class="abs" datetime="{}">{}</time>"#,
        esc(&relative(now, at)),
        esc(&rfc3339(at)),
        esc(&absolute(at)),
    )
}

/// "just now", "2 minutes ago", "in 23 hours", "in 30 days" (whole units, rounded down).
pub(super) fn relative(now: SystemTime, at: SystemTime) -> String {
    match at.duration_since(now) {
        Ok(ahead) if ahead.is_zero() => "just now".to_owned(),
        Ok(ahead) if ahead < Duration::from_secs(1) => "in a moment".to_owned(),
        Ok(ahead) => format!("in {}", amount(ahead.as_secs())),
        Err(past) => {
            let seconds = past.duration().as_secs();
            if seconds < 5 {
                "just now".to_owned()
            } else {
                format!("{} ago", amount(seconds))
            }
        }
    }
}

/// A span of time in its largest whole unit: "45 seconds", "1 minute", "23 hours", "30 days".
fn amount(seconds: u64) -> String {
    let (n, unit) = match seconds {
        0..60 => (seconds, "second"),
        60..3_600 => (seconds / 60, "minute"),
        3_600..86_400 => (seconds / 3_600, "hour"),
        _ => (seconds / 86_400, "day"),
    };
    plural(n, unit)
}

/// A configured length of time, exact when it is a whole number of days, hours or minutes: "30 minutes",
/// "1 day", "25 hours", "90 seconds".
pub(super) fn duration_text(seconds: u64) -> String {
    for (size, unit) in [(86_400, "day"), (3_600, "hour"), (60, "minute")] {
        if seconds >= size && seconds.is_multiple_of(size) {
            return plural(seconds / size, unit);
        }
    }
    plural(seconds, "second")
}

fn plural(n: u64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// RFC 3339 in UTC, whole seconds: the `datetime` attribute.
pub(super) fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

/// "27 Nov 2026, 17:31 UTC" (the text without JavaScript).
pub(super) fn absolute(at: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let seconds = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .min(253_402_300_799); // 9999-12-31T23:59:59Z
    let (year, month, day) = civil_from_days(seconds / 86_400);
    let minutes = seconds % 86_400 / 60;
    format!(
        "{day} {} {year}, {:02}:{:02} UTC",
        MONTHS[month - 1],
        minutes / 60,
        minutes % 60
    )
}

/// The proleptic Gregorian date of a day number counted from 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, usize, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, usize::try_from(month).unwrap_or(1), day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn relative_times_read_naturally() {
        let now = at(1_000_000_000);
        let cases = [
            (0_i64, "just now"),
            (-4, "just now"),
            (-45, "45 seconds ago"),
            (-60, "1 minute ago"),
            (-150, "2 minutes ago"),
            (-7_200, "2 hours ago"),
            (-86_400 * 3, "3 days ago"),
            (1, "in 1 second"),
            (23 * 3_600 + 58 * 60, "in 23 hours"),
            (86_400 * 30, "in 30 days"),
        ];
        for (offset, text) in cases {
            let t = if offset < 0 {
                now - Duration::from_secs(offset.unsigned_abs())
            } else {
                now + Duration::from_secs(offset.unsigned_abs())
            };
            assert_eq!(relative(now, t), text, "{offset}");
        }
        assert_eq!(
            relative(now, now + Duration::from_millis(300)),
            "in a moment"
        );
    }

    #[test]
    fn durations_and_absolute_dates() {
        assert_eq!(duration_text(1_800), "30 minutes");
        assert_eq!(duration_text(86_400), "1 day");
        assert_eq!(duration_text(90_000), "25 hours");
        assert_eq!(duration_text(90), "90 seconds");
        assert_eq!(duration_text(2_592_000), "30 days");
        assert_eq!(absolute(at(0)), "1 Jan 1970, 00:00 UTC");
        // 2026-11-27T17:31:09Z and a leap day.
        assert_eq!(absolute(at(1_795_800_669)), "27 Nov 2026, 17:31 UTC");
        assert_eq!(rfc3339(at(1_795_800_669)), "2026-11-27T17:31:09Z");
        assert_eq!(absolute(at(951_782_400)), "29 Feb 2000, 00:00 UTC");
    }
}
