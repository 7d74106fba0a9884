//! Durations as Terraform users write them (`"30s"`, `"1m30s"`): the provider's
//! `rollout_timeout` and an enrolment token's `ttl`, in the grammar every part of Postern
//! shares. The one place the provider parses them.

use std::time::Duration;

/// Parses a duration as Terraform users write them, in the grammar the edge, the connector
/// and the tools share (`postern_schema::duration`: one or more `<number><unit>` parts with
/// units `ms`, `s`, `m` and `h`, e.g. `"30s"`, `"1m30s"`, `"500ms"`, `"0s"`), at most 24 hours.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let total = postern_schema::duration::parse(text).map_err(|e| e.to_string())?;
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
