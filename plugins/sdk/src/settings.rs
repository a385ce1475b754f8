use serde::de::DeserializeOwned;
use std::fmt;

/// A plugin's settings: deserialized from the policy's `settings` and checked
/// once when the policy loads.
pub trait Settings: DeserializeOwned {
    /// Check what serde cannot: ranges, non-empty lists, consistency.
    fn validate(&self) -> Result<(), SettingsError> {
        Ok(())
    }
}

/// A rejected setting, with the field it concerns (`tolerations[0].effect`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError {
    field: String,
    message: String,
}

impl SettingsError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }

    pub fn field(&self) -> &str {
        &self.field
    }
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() || self.field == "." {
            write!(f, "settings: {}", self.message)
        } else {
            write!(f, "settings.{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for SettingsError {}

/// Parse and validate settings; serde's errors keep the path of the field.
pub(crate) fn parse<S: Settings>(json: &str) -> Result<S, SettingsError> {
    let de = &mut serde_json::Deserializer::from_str(json);
    let settings: S = serde_path_to_error::deserialize(de)
        .map_err(|err| SettingsError::new(err.path().to_string(), err.inner().to_string()))?;
    settings.validate()?;
    Ok(settings)
}
