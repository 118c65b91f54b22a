//! The import report: one [`Note`] per directive (or directive parameter) that was not
//! carried over as written, with the file and line it came from and why.
//!
//! Every directive the converters see ends up either carried into the TOML or here; the
//! parsers' trees remember which directives were handled (`Node::mark`), and whatever is
//! left unmarked at the end becomes a [`Kind::NotCarried`] note, so nothing is dropped
//! silently.

use std::fmt;

/// Why a directive is in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A recognised idiom or setting whose behaviour Portico has built in: nothing to write.
    Dropped,
    /// Carried over with a difference the note describes.
    Approximated,
    /// The feature is planned in Portico's contract (SPEC.md) but not built yet.
    NotSupportedYet,
    /// Portico has no equivalent (and none is planned), or the importer cannot express it.
    NotCarried,
    /// Carried over as written, with a better Portico way to do it.
    Hint,
}

impl Kind {
    /// The label printed in the report.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Dropped => "dropped",
            Kind::Approximated => "approximated",
            Kind::NotSupportedYet => "not supported yet by Portico",
            Kind::NotCarried => "not carried over",
            Kind::Hint => "hint",
        }
    }
}

/// One entry of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The source file, as the importer opened it (includes name their own file).
    pub file: String,
    /// 1-based line of the directive.
    pub line: usize,
    /// The directive as written (name and arguments, shortened when long).
    pub directive: String,
    pub kind: Kind,
    /// One line: why, and what to do instead when there is something.
    pub why: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: `{}`: {}",
            self.file,
            self.line,
            self.kind.label(),
            self.directive,
            self.why
        )
    }
}

/// All notes of one conversion, in source order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub notes: Vec<Note>,
}

impl Report {
    pub(crate) fn push(&mut self, note: Note) {
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    /// Sort by file, then line (stable: notes of one directive keep their order).
    pub(crate) fn sort(&mut self) {
        self.notes
            .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    }

    /// Notes of one kind.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Note> {
        self.notes.iter().filter(move |n| n.kind == kind)
    }

    /// The note about directive `name` (its first word) at `line`, if any.
    pub fn find(&self, name: &str, line: usize) -> Option<&Note> {
        self.notes
            .iter()
            .find(|n| n.line == line && n.directive.split_whitespace().next() == Some(name))
    }

    /// A one-line count per kind, e.g. `3 dropped, 1 not supported yet by Portico`.
    pub fn summary(&self) -> String {
        let kinds = [
            Kind::Dropped,
            Kind::Approximated,
            Kind::NotSupportedYet,
            Kind::NotCarried,
            Kind::Hint,
        ];
        let parts: Vec<String> = kinds
            .iter()
            .map(|k| (k, self.of_kind(*k).count()))
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{n} {}", k.label()))
            .collect();
        if parts.is_empty() {
            "everything was carried over".to_string()
        } else {
            parts.join(", ")
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for n in &self.notes {
            writeln!(f, "{n}")?;
        }
        Ok(())
    }
}

/// `name args...` shortened to about 80 characters for the report.
pub(crate) fn shorten(name: &str, args: &[String]) -> String {
    let mut s = name.to_string();
    for a in args {
        s.push(' ');
        if a.is_empty() || a.contains(char::is_whitespace) {
            s.push('"');
            s.push_str(a);
            s.push('"');
        } else {
            s.push_str(a);
        }
    }
    if s.chars().count() > 80 {
        let cut: String = s.chars().take(77).collect();
        format!("{cut}...")
    } else {
        s
    }
}
