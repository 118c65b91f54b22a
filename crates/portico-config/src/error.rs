//! Errors and diagnostics: every problem in a config file names `FILE:LINE:COL`, says what is
//! wrong in one line and, where it helps, gives a hint on a second line.
//!
//! Positions come from byte offsets into the source text (the spans the TOML parser keeps);
//! [`LineIndex`] turns them into 1-based line and column (columns count characters).

use std::fmt;
use std::path::PathBuf;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read the config file: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file was read but has problems; all of them are listed.
    #[error("{0}")]
    Invalid(Diagnostics),
}

impl ConfigError {
    /// The diagnostics of an invalid file (empty for an I/O error).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ConfigError::Io { .. } => &[],
            ConfigError::Invalid(d) => &d.0,
        }
    }
}

/// Every problem found in one file, ordered by position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// One problem at one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub col: usize,
    /// One line: what is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Byte offset -> (line, column), both 1-based.
#[derive(Debug, Clone)]
pub(crate) struct LineIndex {
    /// Byte offset at which each line starts.
    starts: Vec<usize>,
}

impl LineIndex {
    pub(crate) fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    /// Line and column of `offset` in `text` (the text this index was built from).
    pub(crate) fn position(&self, text: &str, offset: usize) -> (usize, usize) {
        let offset = offset.min(text.len());
        let line = match self.starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.starts.get(line).copied().unwrap_or(0);
        // Count characters, not bytes; clamp to a char boundary first.
        let mut end = offset;
        while end > start && !text.is_char_boundary(end) {
            end -= 1;
        }
        let col = text.get(start..end).map_or(0, |s| s.chars().count());
        (line + 1, col + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_chars() {
        let text = "a = 1\nbé = 2\n";
        let idx = LineIndex::new(text);
        assert_eq!(idx.position(text, 0), (1, 1));
        assert_eq!(idx.position(text, 4), (1, 5));
        assert_eq!(idx.position(text, 6), (2, 1));
        // after "bé" (3 bytes) comes " = 2": byte 9 is the space, char column 3.
        assert_eq!(idx.position(text, 9), (2, 3));
        assert_eq!(idx.position(text, 1000), (3, 1));
    }

    #[test]
    fn display_has_position_and_hint_line() {
        let d = Diagnostic {
            file: PathBuf::from("p.toml"),
            line: 3,
            col: 1,
            message: "unknown key `balanse` in [upstreams.a]".into(),
            hint: Some("did you mean `balance`?".into()),
        };
        assert_eq!(
            d.to_string(),
            "p.toml:3:1: unknown key `balanse` in [upstreams.a]\n  hint: did you mean `balance`?"
        );
        let all = Diagnostics(vec![d.clone(), Diagnostic { hint: None, ..d }]);
        assert_eq!(all.to_string().lines().count(), 3);
    }
}
