//! Tells a job file written as an ES module from a CommonJS script without parsing it.
//!
//! A script can never contain an `import` or `export` declaration, so one such keyword in declaration position
//! (outside strings, comments, template literals and regular expressions) makes the file a module. The scan is a
//! tokenizer that knows just enough JavaScript to skip what is not code; a `/` counts as the start of a regular
//! expression unless it follows an operand (a name, a number, a string, `)` or `]`).

use crate::source::KEYWORDS_BEFORE_EXPRESSION;

/// Whether `source` declares imports or exports: `import x from`, `import {…}`, `import * as`, `import '…'`,
/// `export default`, `export const`, `export {…}`, `export * from` … Dynamic `import(…)`, `import.meta`, `x.import`
/// and `{import: 1}` do not count.
pub(crate) fn is_es_module(source: &str) -> bool {
    let mut scanner = Scanner { bytes: source.as_bytes(), at: 0, templates: Vec::new(), previous: Previous::Operator };
    scanner.finds_declaration()
}

/// What the last token was, as far as the next one cares.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Previous {
    /// Nothing, or punctuation or a keyword after which an expression starts: a `/` here begins a regular expression.
    Operator,
    /// The end of an operand: a `/` here divides.
    Operand,
    /// A `.` or `#`: the next name is a property, never a keyword.
    Member,
}

struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
    /// For each template literal whose `${…}` the scan is inside, the depth of `{` opened in that substitution.
    templates: Vec<usize>,
    previous: Previous,
}

impl Scanner<'_> {
    fn peek(&self, offset: usize) -> Option<u8> {
        self.bytes.get(self.at + offset).copied()
    }

    fn finds_declaration(&mut self) -> bool {
        if self.bytes.starts_with(b"#!") {
            self.skip_line();
        }
        while let Some(c) = self.peek(0) {
            match c {
                b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => self.at += 1,
                b'/' if self.peek(1) == Some(b'/') => self.skip_line(),
                b'/' if self.peek(1) == Some(b'*') => self.skip_block_comment(),
                b'/' if self.previous != Previous::Operand => {
                    self.skip_regex();
                    self.previous = Previous::Operand;
                }
                b'\'' | b'"' => {
                    self.skip_string(c);
                    self.previous = Previous::Operand;
                }
                b'`' => {
                    self.at += 1;
                    self.skip_template();
                }
                b'{' => {
                    if let Some(depth) = self.templates.last_mut() {
                        *depth += 1;
                    }
                    self.at += 1;
                    self.previous = Previous::Operator;
                }
                b'}' => {
                    self.at += 1;
                    match self.templates.last_mut() {
                        Some(0) => {
                            self.templates.pop();
                            self.skip_template();
                        }
                        Some(depth) => {
                            *depth -= 1;
                            self.previous = Previous::Operator;
                        }
                        // The end of a block or of an object literal: after a block, `/` starts a regular expression.
                        None => self.previous = Previous::Operator,
                    }
                }
                b')' | b']' => {
                    self.at += 1;
                    self.previous = Previous::Operand;
                }
                b'.' if self.peek(1).is_some_and(|next| next.is_ascii_digit()) => self.skip_number(),
                b'.' if self.peek(1) == Some(b'.') && self.peek(2) == Some(b'.') => {
                    self.at += 3;
                    self.previous = Previous::Operator;
                }
                b'.' | b'#' => {
                    self.at += 1;
                    self.previous = Previous::Member;
                }
                b'0'..=b'9' => self.skip_number(),
                _ if is_name_start(c) => {
                    let start = self.at;
                    while self.peek(0).is_some_and(is_name_part) {
                        self.at += 1;
                    }
                    let word = &self.bytes[start..self.at];
                    if self.previous != Previous::Member && self.declaration_follows(word) {
                        return true;
                    }
                    let keyword = KEYWORDS_BEFORE_EXPRESSION.iter().any(|keyword| keyword.as_bytes() == word);
                    self.previous = if keyword { Previous::Operator } else { Previous::Operand };
                }
                _ => {
                    self.at += 1;
                    self.previous = Previous::Operator;
                }
            }
        }
        false
    }

    /// Whether `word`, just read, is `import` or `export` starting a declaration (not a call, a property or a method).
    fn declaration_follows(&self, word: &[u8]) -> bool {
        let mut next = self.at;
        while self.bytes.get(next).is_some_and(|c| c.is_ascii_whitespace()) {
            next += 1;
        }
        let Some(&next) = self.bytes.get(next) else {
            return false;
        };
        match word {
            b"import" => is_name_start(next) || matches!(next, b'{' | b'*' | b'"' | b'\''),
            b"export" => is_name_start(next) || matches!(next, b'{' | b'*'),
            _ => false,
        }
    }

    fn skip_line(&mut self) {
        while let Some(c) = self.peek(0) {
            if c == b'\n' {
                break;
            }
            self.at += 1;
        }
    }

    fn skip_block_comment(&mut self) {
        self.at += 2;
        while let Some(c) = self.peek(0) {
            self.at += 1;
            if c == b'*' && self.peek(0) == Some(b'/') {
                self.at += 1;
                return;
            }
        }
    }

    fn skip_string(&mut self, quote: u8) {
        self.at += 1;
        while let Some(c) = self.peek(0) {
            match c {
                b'\\' => self.at += 2,
                b'\n' => return,
                _ if c == quote => {
                    self.at += 1;
                    return;
                }
                _ => self.at += 1,
            }
        }
    }

    /// Skips template text after a backtick or after the `}` of a substitution, up to the closing backtick (an
    /// operand ends) or the next `${` (an expression starts).
    fn skip_template(&mut self) {
        while let Some(c) = self.peek(0) {
            match c {
                b'\\' => self.at += 2,
                b'`' => {
                    self.at += 1;
                    self.previous = Previous::Operand;
                    return;
                }
                b'$' if self.peek(1) == Some(b'{') => {
                    self.at += 2;
                    self.templates.push(0);
                    self.previous = Previous::Operator;
                    return;
                }
                _ => self.at += 1,
            }
        }
    }

    fn skip_regex(&mut self) {
        self.at += 1;
        let mut in_class = false;
        while let Some(c) = self.peek(0) {
            match c {
                b'\\' => self.at += 2,
                b'\n' => return,
                b'[' => {
                    in_class = true;
                    self.at += 1;
                }
                b']' => {
                    in_class = false;
                    self.at += 1;
                }
                b'/' if !in_class => {
                    self.at += 1;
                    break;
                }
                _ => self.at += 1,
            }
        }
        while self.peek(0).is_some_and(is_name_part) {
            self.at += 1;
        }
    }

    fn skip_number(&mut self) {
        while self.peek(0).is_some_and(|c| is_name_part(c) || c == b'.') {
            self.at += 1;
        }
        self.previous = Previous::Operand;
    }
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c == b'\\' || c >= 0x80
}

fn is_name_part(c: u8) -> bool {
    is_name_start(c) || c.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::is_es_module;

    #[test]
    fn import_and_export_declarations_make_a_module() {
        let modules = [
            "export default { name: 'a' }",
            "import { LuaJob } from 'lua-cli';\nexport default new LuaJob({})",
            "import LuaJob from \"lua-cli\"",
            "import*as cli from'lua-cli'",
            "import 'side-effect'",
            "import{defineJob as d}from\"lua-cli\";",
            "var a=1;export{a as default};",
            "const x = 1\nexport const y = 2",
            "#!/usr/bin/env node\nexport default 1",
            "const r = /export default/; const q = a / b / c; export default r",
            "const r = /'/; export default r",
            "const r = /[/'`]/g.test(s); export default r",
            "const t = `a ${ `b ${ {c: 1}.c } ` } export`;\nexport default t",
            "const x = (a) / 2; const s = 'it\\'s'; export default x",
            "function f() { return /\"/ } export default f",
            "if (a) { b() }\n/'/.test(c); export default 1",
        ];
        for source in modules {
            assert!(is_es_module(source), "{source}");
        }
    }

    #[test]
    fn scripts_and_look_alikes_are_not_modules() {
        let scripts = [
            "\"use strict\";var n=Object.defineProperty;module.exports.default={primitive:{name:\"x\"}}",
            "module.exports = { name: 'a', execute: async () => { const m = await import('lua-cli'); } }",
            "const meta = import.meta; const m = import ('x')",
            "const s = \"export default 1\"; // export default\n/* import x from 'y' */",
            "const t = `export ${a} import x`",
            "x.export = 1; y = {import: 2, export: 3}; class A { import() {} static export = 1 }",
            "const o = { get import() { return 1 } }; o?.export",
            "let a = b / c; // export default\nlet d = e / f",
            "",
        ];
        for source in scripts {
            assert!(!is_es_module(source), "{source}");
        }
    }
}
