//! keepalived configuration syntax -> [`Node`] tree. One statement per line
//! (`name args...`), a `{` on the same or the next line opens its block, `}` closes it
//! (several may share a line: `track_script { chk }`); `#` and `!` start comments;
//! `"..."` keeps spaces; `include PATTERN` is followed relative to the main file's folder.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::ImportError;
use crate::glob::expand_glob;
use crate::report::Kind;
use crate::tree::{Node, Notes};

const MAX_INCLUDE_DEPTH: usize = 16;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Open,
    Close,
    Newline,
}

fn lex(text: &str) -> Vec<(Tok, usize)> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let mut chars = raw.chars().peekable();
        while let Some(&c) = chars.peek() {
            match c {
                '#' | '!' => break,
                c if c.is_whitespace() => {
                    chars.next();
                }
                '{' => {
                    chars.next();
                    out.push((Tok::Open, line));
                }
                '}' => {
                    chars.next();
                    out.push((Tok::Close, line));
                }
                '"' => {
                    chars.next();
                    let mut s = String::new();
                    for ch in chars.by_ref() {
                        if ch == '"' {
                            break;
                        }
                        s.push(ch);
                    }
                    out.push((Tok::Word(s), line));
                }
                _ => {
                    let mut s = String::new();
                    while let Some(&ch) = chars.peek() {
                        if ch.is_whitespace() || ch == '{' || ch == '}' {
                            break;
                        }
                        s.push(ch);
                        chars.next();
                    }
                    out.push((Tok::Word(s), line));
                }
            }
        }
        out.push((Tok::Newline, line));
    }
    out
}

/// Parses `path` with its includes.
pub(crate) fn parse_file(path: &Path, notes: &mut Notes) -> Result<Vec<Node>, ImportError> {
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    file(path, &base, notes, 0)
}

fn file(
    path: &Path,
    base: &PathBuf,
    notes: &mut Notes,
    depth: usize,
) -> Result<Vec<Node>, ImportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let name: Rc<str> = Rc::from(path.display().to_string());
    let toks = lex(&text);
    let mut pos = 0;
    let nodes = block(&toks, &mut pos, &name, None)?;
    let mut out = Vec::new();
    for n in nodes {
        if n.name == "include" && n.block.is_none() && n.args.len() == 1 {
            if depth >= MAX_INCLUDE_DEPTH {
                return Err(ImportError::Syntax {
                    file: name.to_string(),
                    line: n.line,
                    message: "includes nested too deep (an include loop?)".into(),
                });
            }
            n.mark();
            let pattern = base.join(&n.args[0]);
            let files = expand_glob(&pattern);
            if files.is_empty() && !n.args[0].contains(['*', '?']) {
                notes.note(
                    &n,
                    Kind::NotCarried,
                    format!(
                        "{} does not exist here: copy it next to the config and import again",
                        pattern.display()
                    ),
                );
            }
            out.push(n);
            for f in files {
                out.extend(file(&f, base, notes, depth + 1)?);
            }
        } else {
            out.push(n);
        }
    }
    Ok(out)
}

fn block(
    toks: &[(Tok, usize)],
    pos: &mut usize,
    file: &Rc<str>,
    opened_at: Option<usize>,
) -> Result<Vec<Node>, ImportError> {
    let err = |line: usize, message: &str| ImportError::Syntax {
        file: file.to_string(),
        line,
        message: message.to_string(),
    };
    let mut nodes: Vec<Node> = Vec::new();
    loop {
        let Some((tok, line)) = toks.get(*pos) else {
            return match opened_at {
                Some(l) => Err(err(l, "this block has no closing `}`")),
                None => Ok(nodes),
            };
        };
        let line = *line;
        match tok {
            Tok::Newline => {
                *pos += 1;
            }
            Tok::Close => {
                *pos += 1;
                return match opened_at {
                    Some(_) => Ok(nodes),
                    None => Err(err(line, "unexpected `}`")),
                };
            }
            Tok::Open => {
                // A `{` alone: the block of the statement before it (`name` NEWLINE `{`).
                *pos += 1;
                match nodes.last_mut() {
                    Some(prev) if prev.block.is_none() => {
                        prev.block = Some(block(toks, pos, file, Some(line))?);
                    }
                    _ => return Err(err(line, "a `{` that opens no block")),
                }
            }
            Tok::Word(w) => {
                *pos += 1;
                let mut node = Node::new(w.clone(), Vec::new(), file.clone(), line);
                while let Some((Tok::Word(a), _)) = toks.get(*pos) {
                    node.args.push(a.clone());
                    *pos += 1;
                }
                if let Some((Tok::Open, l)) = toks.get(*pos) {
                    let l = *l;
                    *pos += 1;
                    node.block = Some(block(toks, pos, file, Some(l))?);
                }
                nodes.push(node);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn blocks_on_one_line_and_on_the_next() {
        let toks = lex("a {\n b 1 ! c\n}\nd\n{\n e { f }\n}\n");
        let mut pos = 0;
        let nodes = block(&toks, &mut pos, &Rc::from("t"), None).unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].children()[0].args, ["1"]);
        let d = &nodes[1];
        assert_eq!(d.name, "d");
        assert_eq!(d.children()[0].name, "e");
        assert_eq!(d.children()[0].children()[0].name, "f");
    }
}
