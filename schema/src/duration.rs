//! The one duration grammar of every Postern tool (the edge's and the connector's flags, the
//! provider's attributes, the test tools): one or more `<number><unit>` pairs, added up, such
//! as `30s`, `500ms`, `2m`, `1h`, `1m30s` or `1.5s`.
//!
//! - A number is decimal digits with at most one `.` (`1.5`, `.5`, `2.`); no sign, no exponent.
//! - A unit is `ms`, `s`, `m` or `h`; every number has one (`30` alone is refused, so a
//!   forgotten unit never silently means seconds).
//! - Blanks around the whole text are ignored; blanks inside it are not allowed.
//!
//! Arithmetic is exact to the nanosecond (no floating point): `0.1s` is 100 ms. [`format`]
//! writes the shortest text that [`parse`] reads back as the same duration.

use std::time::Duration;

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The text does not follow the grammar.
    #[error(
        "{text:?} is not a duration ({problem}): write a number and a unit (ms, s, m or h), e.g. \"30s\", \"2m\" or \"1m30s\""
    )]
    Malformed {
        /// The text as given.
        text: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The duration does not fit in a [`Duration`].
    #[error("{text:?} is too long a duration")]
    TooLong {
        /// The text as given.
        text: String,
    },
}

const NANOS_PER_MILLI: u128 = 1_000_000;
const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// The units, longest first so that `ms` is not read as `m` followed by `s`.
const UNITS: [(&str, u128); 4] = [
    ("ms", NANOS_PER_MILLI),
    ("s", NANOS_PER_SECOND),
    ("m", 60 * NANOS_PER_SECOND),
    ("h", 3600 * NANOS_PER_SECOND),
];

/// At most this many fractional digits count (the 21st digit of an hour is below 1 ns).
const MAX_FRACTION_DIGITS: usize = 20;

/// Parses a duration written in the grammar of this module.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let malformed = |problem: String| DurationError::Malformed {
        text: text.to_string(),
        problem,
    };
    let too_long = || DurationError::TooLong {
        text: text.to_string(),
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(malformed("it is empty".into()));
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_len);
        if number.is_empty() {
            return Err(malformed(format!("{rest:?} does not start with a number")));
        }
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        if unit.is_empty() {
            return Err(malformed(format!("{number} has no unit")));
        }
        let Some((_, unit_nanos)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(malformed(format!("{unit:?} is not a unit")));
        };
        let nanos = nanos_of(number, *unit_nanos)
            .ok_or_else(|| malformed(format!("{number} is not a number")))?
            .ok_or_else(too_long)?;
        total = total.checked_add(nanos).ok_or_else(too_long)?;
        rest = tail;
    }
    let seconds = u64::try_from(total / NANOS_PER_SECOND).map_err(|_| too_long())?;
    // The remainder of a division by 10^9 always fits in u32.
    let nanos = (total % NANOS_PER_SECOND) as u32;
    Ok(Duration::new(seconds, nanos))
}

/// `number` (digits with at most one `.`) times `unit_nanos`, truncated to whole
/// nanoseconds: `None` if `number` is not a number, `Some(None)` if the product overflows.
fn nanos_of(number: &str, unit_nanos: u128) -> Option<Option<u128>> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return None;
    }
    let mut whole_value: u128 = 0;
    for digit in whole.bytes() {
        let Some(next) = whole_value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u128::from(digit - b'0')))
        else {
            return Some(None);
        };
        whole_value = next;
    }
    let fraction = &fraction[..fraction.len().min(MAX_FRACTION_DIGITS)];
    let mut numerator: u128 = 0;
    let mut denominator: u128 = 1;
    for digit in fraction.bytes() {
        numerator = numerator * 10 + u128::from(digit - b'0');
        denominator *= 10;
    }
    // numerator < 10^20 and unit_nanos <= 3.6 * 10^12: the product fits in u128.
    let fraction_nanos = numerator * unit_nanos / denominator;
    Some(
        whole_value
            .checked_mul(unit_nanos)
            .and_then(|nanos| nanos.checked_add(fraction_nanos)),
    )
}

/// Writes `duration` in the grammar of this module, largest unit first and without zero
/// parts: `1m30s`, `500ms`, `1h`, `0s`; a part below a millisecond is a decimal of `ms`
/// (`1.5ms`). [`parse`] reads the text back as exactly `duration`.
pub fn format(duration: Duration) -> String {
    if duration.is_zero() {
        return "0s".into();
    }
    let seconds = duration.as_secs();
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    let millis = duration.subsec_millis();
    let sub_milli = duration.subsec_nanos() % 1_000_000;
    let mut text = String::new();
    for (value, unit) in [(hours, "h"), (minutes, "m"), (seconds, "s")] {
        if value > 0 {
            text.push_str(&format!("{value}{unit}"));
        }
    }
    match (millis, sub_milli) {
        (0, 0) => {}
        (millis, 0) => text.push_str(&format!("{millis}ms")),
        (millis, nanos) => {
            let fraction = format!("{nanos:06}");
            text.push_str(&format!("{millis}.{}ms", fraction.trim_end_matches('0')));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_users_write_them() {
        for (text, expected) in [
            ("30s", Duration::from_secs(30)),
            ("0s", Duration::ZERO),
            ("500ms", Duration::from_millis(500)),
            ("1m30s", Duration::from_secs(90)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("1h2m3s4ms", Duration::from_millis(3_723_004)),
            ("1.5s", Duration::from_millis(1500)),
            ("0.1s", Duration::from_millis(100)),
            (".5s", Duration::from_millis(500)),
            ("2.s", Duration::from_secs(2)),
            ("1.5ms", Duration::from_micros(1500)),
            (" 10s ", Duration::from_secs(10)),
            ("30s1m", Duration::from_secs(90)),
            ("100h", Duration::from_secs(360_000)),
        ] {
            assert_eq!(parse(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn one_minute_thirty_is_ninety_seconds() {
        assert_eq!(parse("1m30s"), parse("90s"));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
    }

    #[test]
    fn malformed_durations_are_refused_saying_what_is_wrong() {
        for (text, problem) in [
            ("", "it is empty"),
            ("   ", "it is empty"),
            ("30", "30 has no unit"),
            ("1s2", "2 has no unit"),
            ("s", "\"s\" does not start with a number"),
            ("10x", "\"x\" is not a unit"),
            ("1 s", "\" s\" is not a unit"),
            ("1m 30s", "\"m \" is not a unit"),
            ("1sec", "\"sec\" is not a unit"),
            ("-1s", "\"-1s\" does not start with a number"),
            ("1.2.3s", "1.2.3 is not a number"),
            (".s", ". is not a number"),
            ("1e3s", "\"e\" is not a unit"),
        ] {
            match parse(text) {
                Err(DurationError::Malformed { problem: found, .. }) => {
                    assert_eq!(found, problem, "{text:?}")
                }
                other => panic!("{text:?} should be malformed, got {other:?}"),
            }
        }
        let message = parse("30").expect_err("refused").to_string();
        assert_eq!(
            message,
            "\"30\" is not a duration (30 has no unit): write a number and a unit (ms, s, m or h), e.g. \"30s\", \"2m\" or \"1m30s\""
        );
    }

    #[test]
    fn durations_too_long_for_a_duration_are_refused() {
        for text in [
            "99999999999999999999999999999999999999999h",
            "9999999999999999h",
            "5124095576030432h",
        ] {
            assert!(
                matches!(parse(text), Err(DurationError::TooLong { .. })),
                "{text}"
            );
        }
        assert!(parse("5124095576030431h").is_ok());
    }

    #[test]
    fn formatted_durations_read_back_the_same() {
        for (duration, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_millis(1500), "1s500ms"),
            (Duration::from_secs(25 * 3600 + 1), "25h1s"),
            (Duration::from_micros(1500), "1.5ms"),
            (Duration::from_nanos(1), "0.000001ms"),
            (
                Duration::new(u64::MAX, 999_999_999),
                "5124095576030431h15s999.999999ms",
            ),
        ] {
            assert_eq!(format(duration), text, "{duration:?}");
            assert_eq!(parse(text), Ok(duration), "{text}");
        }
    }
}
