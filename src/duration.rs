//! The one duration syntax of every option and URL parameter: humantime
//! (`30s`, `5m`, `1h30m`, `250ms`) or a bare number of seconds (as
//! flock(1)'s `-w`), checked against a [`Bounds`] where it is parsed, so
//! that no later sum or `Instant + Duration` can overflow.

use std::fmt;
use std::time::Duration;

/// The range a duration must fall in, with the upper bound as people read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    pub min: Duration,
    pub max: Duration,
    max_text: &'static str,
}

impl Bounds {
    /// Any duration option (`--wait`, `--kill-after`, `--max-time`): up to
    /// ten years. Anything longer is a typo.
    pub(crate) const OPTION: Bounds = Bounds {
        min: Duration::ZERO,
        max: Duration::from_secs(315_576_000),
        max_text: "10 years",
    };

    /// A lease (`--ttl`, Redis `max-ttl`): renewals every ttl/3 make longer
    /// leases pointless, and a restarted Redis refuses grants for max-ttl.
    pub(crate) const TTL: Bounds = Bounds {
        min: Duration::from_secs(1),
        max: Duration::from_secs(24 * 3600),
        max_text: "24h",
    };

    /// A backend's request timeout, poll or check interval (the CloudShell
    /// URL options): no sane one is longer than an hour, and the bound keeps
    /// the release budget and settle time far from overflow.
    pub(crate) const BACKEND_INTERVAL: Bounds = Bounds {
        min: Duration::ZERO,
        max: Duration::from_secs(3600),
        max_text: "1h",
    };
}

/// Why a text is not a duration within its bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DurationError {
    NotADuration,
    Negative,
    TooShort(Bounds),
    TooLong(Bounds),
}

const HINT: &str =
    "use a number and a unit, e.g. 30s, 5m, 1h30m, 250ms (a bare number means seconds)";

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::NotADuration => write!(f, "not a duration; {HINT}"),
            DurationError::Negative => f.write_str("must not be negative"),
            DurationError::TooShort(b) => {
                write!(f, "must be at least {}", humantime::format_duration(b.min))
            }
            DurationError::TooLong(b) => write!(f, "must be at most {}", b.max_text),
        }
    }
}

impl std::error::Error for DurationError {}

/// Parse `text` (surrounding blanks ignored) as a duration within `bounds`.
pub(crate) fn parse(text: &str, bounds: Bounds) -> Result<Duration, DurationError> {
    let text = text.trim();
    let duration = if let Ok(secs) = text.parse::<f64>() {
        if secs < 0.0 {
            return Err(DurationError::Negative);
        }
        // NaN, infinities and huge values must not reach
        // Duration::from_secs_f64 (which panics).
        Duration::try_from_secs_f64(secs).map_err(|_| DurationError::NotADuration)?
    } else {
        humantime::parse_duration(text).map_err(|_| DurationError::NotADuration)?
    };
    if duration < bounds.min {
        return Err(DurationError::TooShort(bounds));
    }
    if duration > bounds.max {
        return Err(DurationError::TooLong(bounds));
    }
    Ok(duration)
}

/// clap value parser for [`Bounds::OPTION`].
pub(crate) fn option(text: &str) -> Result<Duration, DurationError> {
    parse(text, Bounds::OPTION)
}

/// clap value parser for [`Bounds::TTL`].
pub(crate) fn ttl(text: &str) -> Result<Duration, DurationError> {
    parse(text, Bounds::TTL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax() {
        assert_eq!(option("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(option(" 2.5 "), Ok(Duration::from_millis(2500)));
        assert_eq!(option("0"), Ok(Duration::ZERO));
        assert_eq!(option("-1"), Err(DurationError::Negative));
        for bad in [
            "soon",
            "",
            "1e300",
            "NaN",
            "inf",
            "1e19",
            "300000000000y",
            "1y2",
        ] {
            assert!(option(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bounds() {
        assert!(option("10y").is_ok());
        assert!(option("11y").is_err());
        assert_eq!(ttl("10ms"), Err(DurationError::TooShort(Bounds::TTL)));
        assert!(ttl("24h").is_ok());
        assert_eq!(ttl("25h"), Err(DurationError::TooLong(Bounds::TTL)));
        let interval = Bounds::BACKEND_INTERVAL;
        assert_eq!(parse("1h", interval), Ok(Duration::from_secs(3600)));
        for bad in ["3601", "2h", "1e19", "99999999999999h"] {
            assert!(parse(bad, interval).is_err(), "{bad}");
        }
    }

    #[test]
    fn messages() {
        assert_eq!(ttl("10ms").unwrap_err().to_string(), "must be at least 1s");
        assert_eq!(ttl("25h").unwrap_err().to_string(), "must be at most 24h");
        assert_eq!(
            option("11y").unwrap_err().to_string(),
            "must be at most 10 years"
        );
        assert!(option("soon").unwrap_err().to_string().contains("e.g. 30s"));
        assert_eq!(
            parse("2h", Bounds::BACKEND_INTERVAL)
                .unwrap_err()
                .to_string(),
            "must be at most 1h"
        );
    }
}
