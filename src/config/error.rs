//! Config errors: one problem with its file, line and key; all of a file's
//! problems at once.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// One problem in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line number, when the problem has a place in the file.
    pub line: Option<usize>,
    /// Dotted key path such as `http.max_body_bytes`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// All problems found in one config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// 1-based line number of a byte offset.
pub(super) fn line_of(src: &str, offset: usize) -> usize {
    src[..offset.min(src.len())].matches('\n').count() + 1
}

/// The dotted key path at a byte offset: the nearest `[table]` header above
/// it plus the key on its own line.
pub(super) fn key_at(src: &str, span: Range<usize>) -> String {
    let start = span.start.min(src.len());
    let line_start = src[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = src[start..].find('\n').map_or(src.len(), |i| start + i);
    let line = &src[line_start..line_end];
    let key = if line.trim_start().starts_with('[') {
        String::new()
    } else {
        line.split('=')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"')
            .to_owned()
    };
    // The key the error is about may be the one under the span itself (an
    // unknown key) rather than the first one on the line (inline tables).
    let at_span = src[start..span.end.min(src.len()).max(start)]
        .trim()
        .trim_matches('"')
        .to_owned();
    let table = src[..line_start]
        .lines()
        .rev()
        .chain(std::iter::once(line))
        .find_map(|l| {
            let t = l.trim();
            (t.starts_with('[') && !t.contains('='))
                .then(|| t.trim_matches(|c| c == '[' || c == ']').to_owned())
        });
    let table = if line.trim_start().starts_with('[') {
        Some(
            line.trim()
                .trim_matches(|c| c == '[' || c == ']')
                .to_owned(),
        )
    } else {
        table
    };
    let mut parts: Vec<String> = table.into_iter().filter(|t| !t.is_empty()).collect();
    if !key.is_empty() {
        parts.push(key.clone());
    }
    if !at_span.is_empty()
        && at_span != key
        && !at_span.contains(['=', '\n', '{', '[', ' ', ','])
        && line.contains(&format!("{at_span} ="))
    {
        parts.push(at_span);
    }
    parts.join(".")
}
