//! The directive tree both source formats parse into (nginx and keepalived are both
//! "name args... ;" or "name args... { ... }"), with the bookkeeping that guarantees the
//! report is complete: a converter marks every node it handles ([`Node::mark`]) or reports
//! ([`Notes::note`]); [`Notes::leftovers`] reports whatever is left.

use std::cell::Cell;
use std::rc::Rc;

use crate::report::{Kind, Note, Report, shorten};

/// One directive: `name args...` and, for a block, its children.
#[derive(Debug)]
pub(crate) struct Node {
    pub name: String,
    pub args: Vec<String>,
    pub file: Rc<str>,
    pub line: usize,
    pub block: Option<Vec<Node>>,
    handled: Cell<bool>,
}

impl Node {
    pub fn new(name: String, args: Vec<String>, file: Rc<str>, line: usize) -> Node {
        Node {
            name,
            args,
            file,
            line,
            block: None,
            handled: Cell::new(false),
        }
    }

    /// The block's children (empty for a simple directive).
    pub fn children(&self) -> &[Node] {
        self.block.as_deref().unwrap_or(&[])
    }

    /// Argument `i`, if present.
    pub fn arg(&self, i: usize) -> Option<&str> {
        self.args.get(i).map(String::as_str)
    }

    /// The directive as written, for the report.
    pub fn text(&self) -> String {
        shorten(&self.name, &self.args)
    }

    /// This node was carried over (or reported).
    pub fn mark(&self) {
        self.handled.set(true);
    }

    /// This node and everything inside it.
    pub fn mark_all(&self) {
        self.mark();
        for c in self.children() {
            c.mark_all();
        }
    }

    pub fn is_marked(&self) -> bool {
        self.handled.get()
    }
}

/// Collects the report while a converter walks the tree.
#[derive(Debug, Default)]
pub(crate) struct Notes {
    pub report: Report,
}

impl Notes {
    /// Report `node` (marking it handled, with everything inside it).
    pub fn note(&mut self, node: &Node, kind: Kind, why: impl Into<String>) {
        node.mark_all();
        self.report.push(Note {
            file: node.file.to_string(),
            line: node.line,
            directive: node.text(),
            kind,
            why: why.into(),
        });
    }

    /// Report one part of `node` (a parameter): `node` itself is not marked by this.
    pub fn note_part(&mut self, node: &Node, part: &str, kind: Kind, why: impl Into<String>) {
        self.report.push(Note {
            file: node.file.to_string(),
            line: node.line,
            directive: format!("{} ... {part}", node.name),
            kind,
            why: why.into(),
        });
    }

    /// Report a directive known only by its place and text.
    pub fn note_at(
        &mut self,
        file: &str,
        line: usize,
        text: &str,
        kind: Kind,
        why: impl Into<String>,
    ) {
        self.report.push(Note {
            file: file.to_string(),
            line,
            directive: text.to_string(),
            kind,
            why: why.into(),
        });
    }

    /// Report every node under `nodes` nobody handled, then sort the report.
    pub fn leftovers(&mut self, nodes: &[Node]) {
        for n in nodes {
            if !n.is_marked() {
                let why = if n.block.is_some() {
                    "the importer does not know this block; nothing in it was carried over"
                } else {
                    "the importer does not know this directive; nothing was carried over"
                };
                self.note(n, Kind::NotCarried, why);
            } else {
                self.leftovers(n.children());
            }
        }
        self.report.sort();
    }
}
