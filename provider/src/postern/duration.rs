//! Durations as Terraform users write them (`"30s"`, `"1m30s"`): the provider's
//! `rollout_timeout` and an enrolment token's `ttl`. The one place the provider parses them.

use std::time::Duration;

/// Parses a duration as Terraform users write them: one or more `<number><unit>` parts with
/// units `ms`, `s`, `m` and `h` (`"30s"`, `"1m30s"`, `"500ms"`, `"0s"`).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || {
        format!(
            "{text:?} is not a duration: write a number and a unit (ms, s, m or h), \
             e.g. \"30s\", \"2m\" or \"1m30s\""
        )
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(invalid)?;
        let (number, tail) = rest.split_at(digits);
        let number: f64 = number.parse().map_err(|_| invalid())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let seconds = match unit {
            "ms" => number / 1000.0,
            "s" => number,
            "m" => number * 60.0,
            "h" => number * 3600.0,
            _ => return Err(invalid()),
        };
        total += Duration::try_from_secs_f64(seconds).map_err(|_| invalid())?;
        rest = tail;
    }
    if total > Duration::from_secs(24 * 3600) {
        return Err(format!("{text:?} is longer than 24h"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_terraform_users_write_them() {
        for (text, millis) in [
            ("30s", 30_000),
            ("0s", 0),
            ("500ms", 500),
            ("1m30s", 90_000),
            ("2m", 120_000),
            ("1h", 3_600_000),
            ("1.5s", 1_500),
            (" 10s ", 10_000),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(millis)),
                "{text}"
            );
        }
        for text in ["", "30", "s", "10x", "-1s", "1s2", "25h", "1.2.3s"] {
            assert!(parse_duration(text).is_err(), "{text} should be refused");
        }
    }
}
