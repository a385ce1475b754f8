use crate::Patch;

/// What a plugin decided, with warnings for the user.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub decision: Decision,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Allow,
    Deny { message: String, code: u16 },
    Mutate(Patch),
}

impl Verdict {
    pub fn allow() -> Self {
        Self { decision: Decision::Allow, warnings: Vec::new() }
    }

    /// Deny with code 403.
    pub fn deny(message: impl Into<String>) -> Self {
        Self::deny_with_code(message, 403)
    }

    pub fn deny_with_code(message: impl Into<String>, code: u16) -> Self {
        Self { decision: Decision::Deny { message: message.into(), code }, warnings: Vec::new() }
    }

    /// Mutate with `patch`; an empty patch is an allow, so reinvocation over
    /// a plugin's own output is visibly a no-op.
    pub fn mutate(patch: Patch) -> Self {
        if patch.is_empty() {
            return Self::allow();
        }
        Self { decision: Decision::Mutate(patch), warnings: Vec::new() }
    }

    pub fn with_warning(mut self, warning: impl Into<String>) -> Self {
        self.warnings.push(warning.into());
        self
    }

    pub fn is_allowed(&self) -> bool {
        !matches!(self.decision, Decision::Deny { .. })
    }

    pub fn patch(&self) -> Option<&Patch> {
        match &self.decision {
            Decision::Mutate(patch) => Some(patch),
            _ => None,
        }
    }
}
