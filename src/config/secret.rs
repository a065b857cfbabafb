//! Secrets read from the environment, never printed.

use std::fmt;

/// A secret read from the environment. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    /// The environment variable it came from, safe to log.
    pub var: String,
    value: String,
}

impl Secret {
    pub fn new(var: impl Into<String>, value: impl Into<String>) -> Secret {
        Secret {
            var: var.into(),
            value: value.into(),
        }
    }

    /// The secret itself. Call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.value
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(${} = [redacted])", self.var)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new("X_TOKEN", "hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }
}
