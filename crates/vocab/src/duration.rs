//! A span of time as a workflow writes it (`"30m"`, `"2h 30m"`), parsed
//! once when the TOML is read, so that a bad value is reported at its key
//! and nothing downstream parses it again.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(std::time::Duration);

impl Duration {
    pub const fn from_secs(secs: u64) -> Duration {
        Duration(std::time::Duration::from_secs(secs))
    }

    /// Whole seconds, at least 1: a limit of zero would end everything at once.
    pub fn secs(&self) -> u64 {
        self.0.as_secs().max(1)
    }

    pub fn std(&self) -> std::time::Duration {
        self.0
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Duration {
        Duration(d)
    }
}

impl FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Duration, String> {
        humantime::parse_duration(s).map(Duration).map_err(|_| format!("`{s}` is not a duration (write e.g. \"30m\")"))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A duration: \"90s\", \"30m\", \"2h 30m\", \"1day\".",
        })
    }
}

/// A duration setting as read: parsed when the TOML is read, but kept
/// with its text when it does not parse, so that the settings' validation
/// reports it together with the file's other problems instead of stopping
/// at it. Validation turns it into a [`Duration`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationText(Result<Duration, String>);

impl DurationText {
    pub const fn from_secs(secs: u64) -> DurationText {
        DurationText(Ok(Duration::from_secs(secs)))
    }

    /// The duration, or the text that is not one.
    pub fn parsed(&self) -> Result<Duration, &str> {
        self.0.as_ref().map(|d| *d).map_err(String::as_str)
    }
}

impl From<Duration> for DurationText {
    fn from(d: Duration) -> DurationText {
        DurationText(Ok(d))
    }
}

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<DurationText, D::Error> {
        let text = String::deserialize(d)?;
        Ok(DurationText(text.parse().map_err(|_| text)))
    }
}

impl Serialize for DurationText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Ok(d) => s.collect_str(d),
            Err(text) => s.serialize_str(text),
        }
    }
}

impl JsonSchema for DurationText {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        Duration::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        Duration::json_schema(generator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_once_and_prints_back() {
        let d: Duration = "2h 30m".parse().unwrap();
        assert_eq!(d.secs(), 9000);
        assert_eq!(d.to_string(), "2h 30m");
        assert_eq!("0s".parse::<Duration>().unwrap().secs(), 1);
        assert!("soon".parse::<Duration>().unwrap_err().contains("`soon` is not a duration"));
    }

    #[test]
    fn a_bad_setting_is_kept_for_validation_to_report() {
        let ok: DurationText = serde_json::from_str("\"30m\"").unwrap();
        assert_eq!(ok.parsed().unwrap().secs(), 1800);
        let bad: DurationText = serde_json::from_str("\"soon\"").unwrap();
        assert_eq!(bad.parsed(), Err("soon"));
        assert_eq!(serde_json::to_string(&bad).unwrap(), "\"soon\"");
    }
}
