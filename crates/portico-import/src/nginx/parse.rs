//! nginx configuration syntax -> [`Node`] tree, following `include` (with `*` globs in the
//! file name) relative to the main file's folder, as nginx does for its conf prefix.
//!
//! Tokens: words, `"..."` / `'...'` strings (with `\` escapes), `;`, `{`, `}`; `#` starts a
//! comment at the start of a token; `${name}` stays inside its word.

use std::path::{Path, PathBuf};

use std::rc::Rc;

use crate::ImportError;
use crate::glob::expand_glob;
use crate::report::Kind;
use crate::tree::{Node, Notes};

/// Nested includes deeper than this are an error (an include loop).
const MAX_INCLUDE_DEPTH: usize = 16;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Semi,
    Open,
    Close,
}

fn syntax(file: &str, line: usize, message: impl Into<String>) -> ImportError {
    ImportError::Syntax {
        file: file.to_string(),
        line,
        message: message.into(),
    }
}

fn lex(text: &str, file: &str) -> Result<Vec<(Tok, usize)>, ImportError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while let Some(&c) = chars.peek() {
        match c {
            '\n' => {
                line += 1;
                chars.next();
            }
            c if c.is_whitespace() => {
                chars.next();
            }
            '#' => {
                while let Some(&c) = chars.peek() {
                    if c == '\n' {
                        break;
                    }
                    chars.next();
                }
            }
            ';' => {
                chars.next();
                out.push((Tok::Semi, line));
            }
            '{' => {
                chars.next();
                out.push((Tok::Open, line));
            }
            '}' => {
                chars.next();
                out.push((Tok::Close, line));
            }
            '"' | '\'' => {
                let start = line;
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err(syntax(file, start, "unterminated quoted string")),
                        Some(q) if q == c => break,
                        Some('\\') => match chars.next() {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some('r') => s.push('\r'),
                            Some(e @ ('"' | '\'' | '\\')) => s.push(e),
                            Some(e) => {
                                if e == '\n' {
                                    line += 1;
                                }
                                s.push('\\');
                                s.push(e);
                            }
                            None => return Err(syntax(file, start, "unterminated quoted string")),
                        },
                        Some(ch) => {
                            if ch == '\n' {
                                line += 1;
                            }
                            s.push(ch);
                        }
                    }
                }
                out.push((Tok::Word(s), start));
            }
            _ => {
                let mut s = String::new();
                while let Some(&ch) = chars.peek() {
                    if ch.is_whitespace() || ch == ';' || ch == '{' || ch == '}' {
                        // `${var}` keeps its braces.
                        if ch == '{' && s.ends_with('$') {
                            for b in chars.by_ref() {
                                s.push(b);
                                if b == '}' {
                                    break;
                                }
                            }
                            continue;
                        }
                        break;
                    }
                    if ch == '\\' {
                        // nginx unescapes \" \' \\ \t \r \n and keeps any other pair as is
                        // (regexes keep their `\.`).
                        chars.next();
                        match chars.next() {
                            Some(e @ ('"' | '\'' | '\\')) => s.push(e),
                            Some('t') => s.push('\t'),
                            Some('r') => s.push('\r'),
                            Some('n') => s.push('\n'),
                            Some(e) => {
                                s.push('\\');
                                s.push(e);
                            }
                            None => s.push('\\'),
                        }
                        continue;
                    }
                    s.push(ch);
                    chars.next();
                }
                out.push((Tok::Word(s), line));
            }
        }
    }
    Ok(out)
}

/// Parses `path` with its includes. Notes about includes (missing files) go to `notes`.
pub(crate) fn parse_file(path: &Path, notes: &mut Notes) -> Result<Vec<Node>, ImportError> {
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut p = Parser { base, notes };
    p.file(path, 0)
}

struct Parser<'a> {
    /// Relative includes resolve here (nginx's conf prefix: the main file's folder).
    base: PathBuf,
    notes: &'a mut Notes,
}

impl Parser<'_> {
    fn file(&mut self, path: &Path, depth: usize) -> Result<Vec<Node>, ImportError> {
        let text = std::fs::read_to_string(path).map_err(|source| ImportError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let name: Rc<str> = Rc::from(path.display().to_string());
        let toks = lex(&text, &name)?;
        let mut pos = 0;
        let nodes = self.block(&toks, &mut pos, &name, depth, None)?;
        Ok(nodes)
    }

    fn block(
        &mut self,
        toks: &[(Tok, usize)],
        pos: &mut usize,
        file: &Rc<str>,
        depth: usize,
        opened_at: Option<usize>,
    ) -> Result<Vec<Node>, ImportError> {
        let mut nodes = Vec::new();
        loop {
            let Some((tok, line)) = toks.get(*pos) else {
                return match opened_at {
                    Some(l) => Err(syntax(file, l, "this block has no closing `}`")),
                    None => Ok(nodes),
                };
            };
            let line = *line;
            *pos += 1;
            let name = match tok {
                Tok::Close => {
                    return match opened_at {
                        Some(_) => Ok(nodes),
                        None => Err(syntax(file, line, "unexpected `}`")),
                    };
                }
                Tok::Semi => continue,
                Tok::Open => return Err(syntax(file, line, "unexpected `{`")),
                Tok::Word(w) => w.clone(),
            };
            let mut args = Vec::new();
            let node = loop {
                match toks.get(*pos) {
                    None => {
                        return Err(syntax(file, line, format!("`{name}` has no closing `;`")));
                    }
                    Some((Tok::Word(w), _)) => {
                        args.push(w.clone());
                        *pos += 1;
                    }
                    Some((Tok::Semi, _)) => {
                        *pos += 1;
                        break Node::new(name, args, file.clone(), line);
                    }
                    Some((Tok::Open, _)) => {
                        *pos += 1;
                        let mut node = Node::new(name, args, file.clone(), line);
                        node.block = Some(self.block(toks, pos, file, depth, Some(line))?);
                        break node;
                    }
                    Some((Tok::Close, l)) => {
                        return Err(syntax(
                            file,
                            *l,
                            format!("`{name}` has no closing `;` before `}}`"),
                        ));
                    }
                }
            };
            if node.name == "include" && node.block.is_none() && node.args.len() == 1 {
                node.mark();
                let included = self.include(&node, depth)?;
                nodes.push(node);
                nodes.extend(included);
            } else {
                nodes.push(node);
            }
        }
    }

    fn include(&mut self, node: &Node, depth: usize) -> Result<Vec<Node>, ImportError> {
        if depth >= MAX_INCLUDE_DEPTH {
            return Err(syntax(
                &node.file,
                node.line,
                "includes nested too deep (an include loop?)",
            ));
        }
        let pattern = self.base.join(&node.args[0]);
        let files = expand_glob(&pattern);
        let is_glob = node.args[0].contains(['*', '?']);
        if files.is_empty() {
            if !is_glob {
                self.notes.note(
                    node,
                    Kind::NotCarried,
                    format!(
                        "{} does not exist here: copy it next to the config (or fix the path) and import again",
                        pattern.display()
                    ),
                );
            }
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for f in files {
            out.extend(self.file(&f, depth + 1)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lexes_words_strings_comments_and_variables() {
        let toks = lex(
            "a 'b c' \"d\\\"e\" ${x}y \\.png$; # comment { }\nf {\n}\n",
            "t",
        )
        .unwrap();
        let words: Vec<_> = toks
            .iter()
            .map(|(t, l)| match t {
                Tok::Word(w) => format!("{w}@{l}"),
                Tok::Semi => format!(";@{l}"),
                Tok::Open => format!("{{@{l}"),
                Tok::Close => format!("}}@{l}"),
            })
            .collect();
        assert_eq!(
            words,
            [
                "a@1",
                "b c@1",
                "d\"e@1",
                "${x}y@1",
                "\\.png$@1",
                ";@1",
                "f@2",
                "{@2",
                "}@3"
            ]
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let dir = std::env::temp_dir().join(format!("pimp-parse-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("bad.conf");
        std::fs::write(&f, "http {\n  server {\n    listen 80\n  }\n}\n").unwrap();
        let err = parse_file(&f, &mut Notes::default()).unwrap_err();
        assert!(err.to_string().contains("bad.conf:4:"), "{err}");
        std::fs::write(&f, "http {\n  server {\n").unwrap();
        let err = parse_file(&f, &mut Notes::default()).unwrap_err();
        assert!(err.to_string().contains("bad.conf:2: this block"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
