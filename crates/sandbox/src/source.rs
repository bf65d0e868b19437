//! Creation-time checks of a job's code, so that a job is refused when it is created rather than failing when it
//! runs.
//!
//! Job code is the source text of one JavaScript function, as people paste it or as `fn.toString()` gives it: an
//! arrow function, a `function` expression or a method shorthand. [`function_source`] finds that function's span in
//! what was pasted (skipping comments, a hashbang line, a directive prologue such as `"use strict";` and trailing
//! semicolons) and refuses anything that is not one function by its shape. [`unresolved_references`] enforces the
//! seed's rule that "execute functions must be self-contained": a job's function cannot see the variables of the
//! tool that created it, so every name it uses must be declared inside it or be one of the sandbox's globals
//! ([`SANDBOX_GLOBALS`]).
//!
//! # How the code is read
//!
//! A hand-written tokenizer knows strings (with escapes and line continuations), template literals with nested
//! substitutions, comments, numbers (hexadecimal, octal, binary, exponents, separators, BigInt) and regular
//! expressions. A small recursive-descent parser of statements, expressions, patterns, functions and classes drives
//! it, so a `/` is read as a regular expression exactly where an operand is expected (after `if (…)`, after a block,
//! after `return` …) and as a division elsewhere. The parser builds no syntax tree: it records declarations per
//! function or block scope and every identifier reference with its scope, and resolves the references at the end,
//! when every hoisted `var` and function declaration is known. Use before declaration is not this module's concern.
//!
//! The parser is deliberately loose (it accepts more than JavaScript does) and conservative: whenever it does not
//! understand the code, [`unresolved_references`] reports nothing rather than risk refusing a valid job, and
//! [`function_source`] falls back to a bracket-matching scan to find where the function ends. QuickJS reports exact
//! syntax errors when the job runs.
//!
//! # What is knowingly approximate
//!
//! * Names used inside a `with (…) { … }` statement are all taken as resolved.
//! * A function declared in a block is visible in the whole enclosing function (the sloppy-mode web-compatibility
//!   rule), even in strict code.
//! * Default parameter values see the whole function's declarations, not only the earlier parameters.
//! * `typeof name` counts as a safe use only when the operand is a bare name (`typeof (name)` is a normal use).
//! * `await` outside an async function and `yield` outside a generator are taken as keywords, never as references.
//! * Identifiers written with `\u` escapes are compared by their raw text.
//! * Direct `eval` that declares variables is not seen.
//! * A method with a computed name (`[name](job) {…}`), getters, setters, parenthesized functions
//!   (`(job => job.id)`) and methods named `if`, `for`, `while`, `switch` or `with` (which look like statements)
//!   are refused by [`function_source`] as not being one of the accepted shapes.

use std::collections::{HashMap, HashSet};
use std::fmt;

/// How deeply statements, brackets and operators may nest before the code is refused. It keeps the recursive parser
/// well inside a 2 MiB thread stack.
const MAX_NESTING: usize = 500;

/// The start of every message that refuses code for not being a function.
const EXPECTED_FUNCTION: &str =
    "must be the source of a JavaScript function (an arrow function, a function expression or a method)";

/// Names job code can use without declaring them: the ECMAScript globals that QuickJS provides and the sandbox's
/// own API. Sorted (byte order), so [`is_sandbox_global`] can search it.
pub const SANDBOX_GLOBALS: &[&str] = &[
    "AggregateError",
    "Array",
    "ArrayBuffer",
    "AsyncDisposableStack",
    "Atomics",
    "BigInt",
    "BigInt64Array",
    "BigUint64Array",
    "Boolean",
    "DOMException",
    "Data",
    "DataView",
    "Date",
    "DisposableStack",
    "Error",
    "EvalError",
    "FinalizationRegistry",
    "Float16Array",
    "Float32Array",
    "Float64Array",
    "Function",
    "Headers",
    "Infinity",
    "Int16Array",
    "Int32Array",
    "Int8Array",
    "InternalError",
    "Iterator",
    "JSON",
    "Jobs",
    "Map",
    "Math",
    "NaN",
    "Number",
    "Object",
    "Products",
    "Promise",
    "Proxy",
    "RangeError",
    "ReferenceError",
    "Reflect",
    "RegExp",
    "Response",
    "Set",
    "SharedArrayBuffer",
    "String",
    "SuppressedError",
    "Symbol",
    "SyntaxError",
    "TextDecoder",
    "TextEncoder",
    "TypeError",
    "URIError",
    "URL",
    "URLSearchParams",
    "Uint16Array",
    "Uint32Array",
    "Uint8Array",
    "Uint8ClampedArray",
    "User",
    "WeakMap",
    "WeakRef",
    "WeakSet",
    "atob",
    "btoa",
    "clearInterval",
    "clearTimeout",
    "console",
    "crypto",
    "decodeURI",
    "decodeURIComponent",
    "encodeURI",
    "encodeURIComponent",
    "env",
    "escape",
    "eval",
    "fetch",
    "globalThis",
    "isFinite",
    "isNaN",
    "parseFloat",
    "parseInt",
    "performance",
    "queueMicrotask",
    "setInterval",
    "setTimeout",
    "structuredClone",
    "undefined",
    "unescape",
];

/// Whether job code can use `name` without declaring it, that is whether it is in [`SANDBOX_GLOBALS`].
pub fn is_sandbox_global(name: &str) -> bool {
    SANDBOX_GLOBALS.binary_search(&name).is_ok()
}

/// Why job code was refused, with the position (1-based, the column counted in characters) of what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError {
    /// What is wrong: lowercase, without a full stop.
    pub message: String,
    /// The line, from 1.
    pub line: u32,
    /// The column in characters, from 1.
    pub column: u32,
}

impl fmt::Display for SourceError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} at {}:{}", self.message, self.line, self.column)
    }
}

impl std::error::Error for SourceError {}

/// The function in job code, without what surrounds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionSource<'a> {
    /// The function's own text, from its first token to its last (a slice of the input).
    pub body: &'a str,
    /// Byte offset of `body` in the input (for line:column mapping).
    pub offset: usize,
    /// Whether a "use strict" directive preceded it.
    pub strict: bool,
    /// Whether it is a method shorthand (`execute(job) {…}`), which is not an expression on its own.
    pub method: bool,
}

/// A name the function uses but neither declares nor gets from the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The name as written.
    pub name: String,
    /// The line of its first use, from 1, in the original input.
    pub line: u32,
    /// The column of its first use in characters, from 1, in the original input.
    pub column: u32,
}

/// Finds the one JavaScript function in `code` and returns its span.
///
/// Accepted around the function: whitespace, `//` and `/* */` comments, a hashbang line, a directive prologue
/// (`"use strict";`, with or without semicolons) and semicolons. The function itself is an arrow function
/// (`async (job) => {…}`, `job => job.id`), a `function` expression (`async function execute(job) {…}`,
/// `function* g() {}`) or a method shorthand (`execute(job) {…}`, `async *gen() {}`, `'quoted name'(job) {}`).
/// Refused: empty code, anything else (a literal, an expression, a class, a declaration, a getter, a computed method
/// name, a parenthesized function, two functions, a statement after the function), unterminated strings, comments,
/// templates and regular expressions, unbalanced brackets and nesting deeper than 500 levels.
pub fn function_source(code: &str) -> Result<FunctionSource<'_>, SourceError> {
    analyze(code).map(|analysis| analysis.source)
}

/// Every name the function in `code` uses that it does not declare and that `globals` does not know, each once, at
/// its first such use, in source order.
///
/// Declarations are parameters, `var`, `let`, `const`, function and class declarations, the own names of function
/// and class expressions, catch parameters, destructuring patterns and the implicit `arguments` of non-arrow
/// functions. Property names, object keys, method and field names, labels, private names and the contents of
/// strings, templates (apart from their substitutions), regular expressions and comments are not references; a
/// shorthand property (`{ name }`) is. A name used only as the operand of `typeof` is not reported. Code the parser
/// does not understand yields no references rather than a wrong one. Fails like [`function_source`].
pub fn unresolved_references(code: &str, globals: &dyn Fn(&str) -> bool) -> Result<Vec<Reference>, SourceError> {
    let analysis = analyze(code)?;
    let Some(parser) = analysis.parser else {
        return Ok(Vec::new());
    };
    let declared: HashSet<(usize, &str)> = parser.declarations.iter().copied().collect();
    let mut settled: HashSet<&str> = HashSet::new();
    let mut found: Vec<(&str, usize)> = Vec::new();
    for reference in &parser.references {
        if reference.typeof_operand
            || settled.contains(reference.name)
            || resolves(&parser.scopes, &declared, reference)
        {
            continue;
        }
        settled.insert(reference.name);
        if !globals(reference.name) {
            found.push((reference.name, reference.position));
        }
    }
    found.sort_by_key(|&(_, position)| position);
    let mut cursor = PositionCursor::new(code);
    Ok(found
        .into_iter()
        .map(|(name, position)| {
            let (line, column) = cursor.advance_to(position);
            Reference { name: name.to_string(), line, column }
        })
        .collect())
}

/// Whether `reference` finds a declaration in its scope chain, or passes through a `with` statement.
fn resolves(scopes: &[Scope], declared: &HashSet<(usize, &str)>, reference: &PendingReference<'_>) -> bool {
    let mut scope = Some(reference.scope);
    while let Some(id) = scope {
        let Some(entry) = scopes.get(id) else {
            return false;
        };
        if entry.kind == ScopeKind::With || declared.contains(&(id, reference.name)) {
            return true;
        }
        scope = entry.parent;
    }
    false
}

// ---- Positions ----

/// Turns byte offsets into 1-based line and character column numbers, moving forward through the input only.
struct PositionCursor<'a> {
    code: &'a str,
    offset: usize,
    line: u32,
    column: u32,
    after_carriage_return: bool,
}

impl<'a> PositionCursor<'a> {
    fn new(code: &'a str) -> Self {
        PositionCursor { code, offset: 0, line: 1, column: 1, after_carriage_return: false }
    }

    /// The line and column of `target`, which must not be before the previous target.
    fn advance_to(&mut self, target: usize) -> (u32, u32) {
        if target > self.offset {
            if let Some(passed) = self.code.get(self.offset..target) {
                for character in passed.chars() {
                    match character {
                        '\n' if self.after_carriage_return => {}
                        '\r' | '\n' | '\u{2028}' | '\u{2029}' => {
                            self.line = self.line.saturating_add(1);
                            self.column = 1;
                        }
                        _ => self.column = self.column.saturating_add(1),
                    }
                    self.after_carriage_return = character == '\r';
                }
                self.offset = target;
            }
        }
        (self.line, self.column)
    }
}

/// An error at byte offset `position` of `code`.
fn error_at(code: &str, message: String, position: usize) -> SourceError {
    let (line, column) = PositionCursor::new(code).advance_to(position.min(code.len()));
    SourceError { message, line, column }
}

// ---- Tokens ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenKind {
    /// An identifier or a keyword, possibly with `\u` escapes.
    Name,
    /// `#name`.
    PrivateName,
    Number,
    String,
    /// A whole template literal, or the last part of one: it ends with a backtick.
    Template,
    /// The first or a middle part of a template literal: it ends with `${`.
    TemplateHead,
    Regex,
    Punctuator,
    End,
}

#[derive(Debug, Clone, Copy)]
struct Token {
    kind: TokenKind,
    start: usize,
    end: usize,
    /// Whether a line terminator comes between the previous token and this one.
    newline_before: bool,
}

/// A tokenizing error: what and where (a byte offset).
#[derive(Debug, Clone, Copy)]
struct LexError {
    message: &'static str,
    position: usize,
}

/// Punctuators of more than one character, longest first.
const LONG_PUNCTUATORS: &[&str] = &[
    ">>>=", "...", "===", "!==", "**=", "<<=", ">>=", ">>>", "&&=", "||=", "??=", "=>", "==", "!=", "<=", ">=", "&&",
    "||", "??", "?.", "++", "--", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "<<", ">>", "**",
];

/// Reserved words, which can never be the name of a variable. Sorted, for binary search.
const RESERVED_WORDS: &[&str] = &[
    "break",
    "case",
    "catch",
    "class",
    "const",
    "continue",
    "debugger",
    "default",
    "delete",
    "do",
    "else",
    "enum",
    "export",
    "extends",
    "false",
    "finally",
    "for",
    "function",
    "if",
    "import",
    "in",
    "instanceof",
    "new",
    "null",
    "return",
    "super",
    "switch",
    "this",
    "throw",
    "true",
    "try",
    "typeof",
    "var",
    "void",
    "while",
    "with",
];

fn is_reserved(word: &str) -> bool {
    RESERVED_WORDS.binary_search(&word).is_ok()
}

fn token_text(code: &str, token: Token) -> &str {
    code.get(token.start..token.end).unwrap_or("")
}

fn is_punctuator(code: &str, token: Token, punctuator: &str) -> bool {
    token.kind == TokenKind::Punctuator && token_text(code, token) == punctuator
}

/// The length of the line terminator at `position`, or 0.
fn line_terminator_length(bytes: &[u8], position: usize) -> usize {
    match bytes.get(position) {
        Some(b'\n' | b'\r') => 1,
        Some(0xE2)
            if bytes.get(position + 1) == Some(&0x80) && matches!(bytes.get(position + 2), Some(0xA8 | 0xA9)) =>
        {
            3
        }
        _ => 0,
    }
}

/// Where the line that `position` is on ends (the offset of its terminator, or the end of the input).
fn line_end(bytes: &[u8], mut position: usize) -> usize {
    while position < bytes.len() && line_terminator_length(bytes, position) == 0 {
        position += 1;
    }
    position
}

/// Skips whitespace and comments from `position`: where the next token starts and whether a line ended on the way.
fn skip_trivia(code: &str, mut position: usize) -> Result<(usize, bool), LexError> {
    let bytes = code.as_bytes();
    let mut newline = false;
    loop {
        let Some(&byte) = bytes.get(position) else {
            return Ok((position, newline));
        };
        match byte {
            b' ' | b'\t' | 0x0B | 0x0C => position += 1,
            b'\n' | b'\r' => {
                newline = true;
                position += 1;
            }
            b'/' if bytes.get(position + 1) == Some(&b'/') => position = line_end(bytes, position + 2),
            b'/' if bytes.get(position + 1) == Some(&b'*') => {
                let body_start = position + 2;
                let Some(length) = code.get(body_start..).and_then(|rest| rest.find("*/")) else {
                    return Err(LexError { message: "unterminated comment", position });
                };
                let body = bytes.get(body_start..body_start + length).unwrap_or_default();
                if (0..body.len()).any(|index| line_terminator_length(body, index) > 0) {
                    newline = true;
                }
                position = body_start + length + 2;
            }
            0x80.. => {
                let Some(character) = code.get(position..).and_then(|rest| rest.chars().next()) else {
                    return Ok((position, newline));
                };
                if character == '\u{2028}' || character == '\u{2029}' {
                    newline = true;
                } else if !(character.is_whitespace() || character == '\u{FEFF}') {
                    return Ok((position, newline));
                }
                position += character.len_utf8();
            }
            _ => return Ok((position, newline)),
        }
    }
}

/// Whether an identifier can start at `position` (a letter, `$`, `_`, a `\u` escape or any other non-space
/// character beyond ASCII).
fn starts_identifier(code: &str, position: usize) -> bool {
    let bytes = code.as_bytes();
    match bytes.get(position) {
        Some(byte) if byte.is_ascii_alphabetic() || *byte == b'$' || *byte == b'_' => true,
        Some(b'\\') => bytes.get(position + 1) == Some(&b'u'),
        Some(byte) if *byte >= 0x80 => code
            .get(position..)
            .and_then(|rest| rest.chars().next())
            .is_some_and(|character| !character.is_whitespace() && character != '\u{FEFF}'),
        _ => false,
    }
}

/// Where the identifier starting at `start` ends.
fn scan_identifier(code: &str, start: usize) -> usize {
    let bytes = code.as_bytes();
    let mut position = start;
    loop {
        match bytes.get(position) {
            Some(byte) if byte.is_ascii_alphanumeric() || *byte == b'$' || *byte == b'_' => position += 1,
            Some(b'\\') if bytes.get(position + 1) == Some(&b'u') => {
                position += 2;
                if bytes.get(position) == Some(&b'{') {
                    while let Some(byte) = bytes.get(position) {
                        position += 1;
                        if *byte == b'}' {
                            break;
                        }
                    }
                } else {
                    let mut digits = 0;
                    while digits < 4 && bytes.get(position).is_some_and(u8::is_ascii_hexdigit) {
                        position += 1;
                        digits += 1;
                    }
                }
            }
            Some(byte) if *byte >= 0x80 => match code.get(position..).and_then(|rest| rest.chars().next()) {
                Some(character) if !character.is_whitespace() && character != '\u{FEFF}' => {
                    position += character.len_utf8();
                }
                _ => return position,
            },
            _ => return position,
        }
    }
}

fn is_digit_or_separator(byte: Option<&u8>) -> bool {
    byte.is_some_and(|byte| byte.is_ascii_digit() || *byte == b'_')
}

/// Where the number starting at `start` (a digit, or a `.` before a digit) ends.
fn scan_number(bytes: &[u8], start: usize) -> usize {
    let mut position = start;
    let prefixed = bytes.get(start) == Some(&b'0')
        && matches!(bytes.get(start + 1), Some(b'x' | b'X' | b'o' | b'O' | b'b' | b'B'));
    if !prefixed {
        while is_digit_or_separator(bytes.get(position)) {
            position += 1;
        }
        if bytes.get(position) == Some(&b'.') {
            position += 1;
            while is_digit_or_separator(bytes.get(position)) {
                position += 1;
            }
        }
        if matches!(bytes.get(position), Some(b'e' | b'E')) {
            let mut exponent = position + 1;
            if matches!(bytes.get(exponent), Some(b'+' | b'-')) {
                exponent += 1;
            }
            if bytes.get(exponent).is_some_and(u8::is_ascii_digit) {
                position = exponent;
                while is_digit_or_separator(bytes.get(position)) {
                    position += 1;
                }
            }
        }
    }
    // The digits of prefixed numbers, a BigInt's `n` and any letters that make the number invalid.
    while bytes.get(position).is_some_and(|byte| byte.is_ascii_alphanumeric() || *byte == b'_' || *byte == b'$') {
        position += 1;
    }
    position
}

/// Where the string literal starting with the quote at `start` ends.
fn scan_string(bytes: &[u8], start: usize) -> Result<usize, LexError> {
    let quote = bytes.get(start).copied().unwrap_or(b'"');
    let mut position = start + 1;
    loop {
        match bytes.get(position) {
            None | Some(b'\n' | b'\r') => {
                return Err(LexError { message: "unterminated string literal", position: start });
            }
            Some(b'\\') => {
                let crlf = bytes.get(position + 1) == Some(&b'\r') && bytes.get(position + 2) == Some(&b'\n');
                position += if crlf { 3 } else { 2 };
            }
            Some(&byte) if byte == quote => return Ok(position + 1),
            Some(_) => position += 1,
        }
    }
}

/// Scans template text from `position` (just after a backtick or the `}` of a substitution) to the closing backtick
/// or the next `${`.
fn scan_template(bytes: &[u8], mut position: usize, error_position: usize) -> Result<(TokenKind, usize), LexError> {
    loop {
        match bytes.get(position) {
            None => return Err(LexError { message: "unterminated template literal", position: error_position }),
            Some(b'`') => return Ok((TokenKind::Template, position + 1)),
            Some(b'\\') => position += 2,
            Some(b'$') if bytes.get(position + 1) == Some(&b'{') => return Ok((TokenKind::TemplateHead, position + 2)),
            Some(_) => position += 1,
        }
    }
}

/// The token at or after `position`, reading a `/` as a division (see [`lex_regex`]).
fn lex(code: &str, position: usize) -> Result<Token, LexError> {
    let (start, newline_before) = skip_trivia(code, position)?;
    let bytes = code.as_bytes();
    let token = |kind, end| Token { kind, start, end, newline_before };
    let Some(&byte) = bytes.get(start) else {
        return Ok(token(TokenKind::End, start));
    };
    Ok(match byte {
        _ if starts_identifier(code, start) => token(TokenKind::Name, scan_identifier(code, start)),
        b'#' if starts_identifier(code, start + 1) => token(TokenKind::PrivateName, scan_identifier(code, start + 1)),
        b'0'..=b'9' => token(TokenKind::Number, scan_number(bytes, start)),
        b'.' if bytes.get(start + 1).is_some_and(u8::is_ascii_digit) => {
            token(TokenKind::Number, scan_number(bytes, start))
        }
        b'\'' | b'"' => token(TokenKind::String, scan_string(bytes, start)?),
        b'`' => {
            let (kind, end) = scan_template(bytes, start + 1, start)?;
            token(kind, end)
        }
        _ => {
            let rest = code.get(start..).unwrap_or("");
            let long = LONG_PUNCTUATORS.iter().find(|punctuator| {
                rest.starts_with(**punctuator)
                    && !(**punctuator == "?." && bytes.get(start + 2).is_some_and(u8::is_ascii_digit))
            });
            let length = match long {
                Some(punctuator) => punctuator.len(),
                None => rest.chars().next().map_or(1, char::len_utf8),
            };
            token(TokenKind::Punctuator, start + length)
        }
    })
}

/// Reads the `/` or `/=` token `slash` again as a regular expression literal.
fn lex_regex(code: &str, slash: Token) -> Result<Token, LexError> {
    let bytes = code.as_bytes();
    let mut position = slash.start + 1;
    let mut in_class = false;
    loop {
        match bytes.get(position) {
            None | Some(b'\n' | b'\r') => {
                return Err(LexError { message: "unterminated regular expression literal", position: slash.start });
            }
            Some(b'\\') => {
                position += 2;
                continue;
            }
            Some(b'[') => in_class = true,
            Some(b']') => in_class = false,
            Some(b'/') if !in_class => {
                position += 1;
                break;
            }
            Some(_) => {}
        }
        position += 1;
    }
    while bytes.get(position).is_some_and(|byte| byte.is_ascii_alphanumeric() || *byte == b'$' || *byte == b'_') {
        position += 1;
    }
    Ok(Token { kind: TokenKind::Regex, start: slash.start, end: position, newline_before: slash.newline_before })
}

/// Reads the `}` token `brace`, which ends a template substitution, again as the template text that follows it.
fn lex_template_continuation(code: &str, brace: Token) -> Result<Token, LexError> {
    let (kind, end) = scan_template(code.as_bytes(), brace.start + 1, brace.start)?;
    Ok(Token { kind, start: brace.start, end, newline_before: brace.newline_before })
}

// ---- Finding the function ----

/// The shape of the function, as told by its first tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `function …` or `async function …`.
    Function,
    /// `x => …`, `(…) => …`, `async x => …` or `async (…) => …` (which may turn out to be a method named `async`).
    Arrow,
    /// `name(…) {…}`, `async name(…) {…}`, `*name(…) {…}`, `'name'(…) {…}`.
    Method,
}

struct Analysis<'a> {
    source: FunctionSource<'a>,
    /// The parse of the function, when the parser understood it.
    parser: Option<Parser<'a>>,
}

fn lexical_error(code: &str, error: LexError) -> SourceError {
    error_at(code, error.message.to_string(), error.position)
}

fn analyze(code: &str) -> Result<Analysis<'_>, SourceError> {
    let (first, strict) = skip_prologue(code)?;
    let shape = classify(code, first)?;
    let source = |end: usize, method: bool| FunctionSource {
        body: code.get(first.start..end).unwrap_or(""),
        offset: first.start,
        strict,
        method,
    };
    match parse_function(code, first, shape) {
        Ok((parser, method)) => {
            let end = parser.previous_end;
            if check_trailing(code, end).is_ok() {
                return Ok(Analysis { source: source(end, method), parser: Some(parser) });
            }
        }
        Err(Failure::TooDeep(position)) => {
            let message = format!("the function is nested too deeply (more than {MAX_NESTING} levels)");
            return Err(error_at(code, message, position));
        }
        Err(Failure::Syntax) => {}
    }
    // The parser did not understand the code, or stopped early: a bracket-matching scan finds the end (or the error).
    let (end, method) = scan_extent(code, first, shape)?;
    check_trailing(code, end)?;
    Ok(Analysis { source: source(end, method), parser: None })
}

/// Skips the hashbang line, comments, directives and semicolons before the function: its first token, and whether
/// a `"use strict"` directive was among them.
fn skip_prologue(code: &str) -> Result<(Token, bool), SourceError> {
    let mut position = if code.starts_with("#!") { line_end(code.as_bytes(), 2) } else { 0 };
    let mut strict = false;
    let mut directives = false;
    loop {
        let token = lex(code, position).map_err(|error| lexical_error(code, error))?;
        if is_punctuator(code, token, ";") {
            position = token.end;
            continue;
        }
        if token.kind == TokenKind::String {
            let next = lex(code, token.end).map_err(|error| lexical_error(code, error))?;
            let directive = is_punctuator(code, next, ";")
                || (next.newline_before
                    && (matches!(next.kind, TokenKind::Name | TokenKind::String)
                        || is_punctuator(code, next, "(")
                        || is_punctuator(code, next, "*")));
            if directive {
                let text = token_text(code, token);
                strict |= text == "'use strict'" || text == "\"use strict\"";
                directives = true;
                position = if is_punctuator(code, next, ";") { next.end } else { token.end };
                continue;
            }
        }
        if token.kind == TokenKind::End {
            let found = if code.trim().is_empty() {
                "nothing"
            } else if directives {
                "only a directive prologue"
            } else {
                "only comments"
            };
            return Err(error_at(code, format!("{EXPECTED_FUNCTION}, found {found}"), 0));
        }
        return Ok((token, strict));
    }
}

/// Tells the function's shape from its first tokens, or refuses the code.
fn classify(code: &str, first: Token) -> Result<Shape, SourceError> {
    let lexical = |error: LexError| lexical_error(code, error);
    let refuse = |found: &str| Err(error_at(code, format!("{EXPECTED_FUNCTION}, found {found}"), first.start));
    let text = token_text(code, first);
    match first.kind {
        TokenKind::Name => {
            let next = lex(code, first.end).map_err(lexical)?;
            let next_text = token_text(code, next);
            let next_is = |punctuator: &str| is_punctuator(code, next, punctuator);
            if text == "function" {
                return Ok(Shape::Function);
            }
            if next_is("=>") && !is_reserved(text) {
                return Ok(Shape::Arrow);
            }
            if text == "async" && !next.newline_before {
                if next.kind == TokenKind::Name && next_text == "function" {
                    return Ok(Shape::Function);
                }
                if next_is("(") {
                    return Ok(Shape::Arrow);
                }
                if next_is("*") || next.kind == TokenKind::String {
                    return Ok(Shape::Method);
                }
                if next.kind == TokenKind::Name && !is_reserved(next_text) {
                    let after = lex(code, next.end).map_err(lexical)?;
                    if is_punctuator(code, after, "=>") {
                        return Ok(Shape::Arrow);
                    }
                    if is_punctuator(code, after, "(") {
                        return Ok(Shape::Method);
                    }
                }
            }
            // Any name can be a method's, even a reserved word (`{ delete(id) {…} }.delete.toString()`), but the
            // statements that look like methods are taken for statements. Whether a `{` follows the parameters is
            // checked later.
            if next_is("(") && !matches!(text, "if" | "for" | "while" | "switch" | "with") {
                return Ok(Shape::Method);
            }
            let names_a_member = matches!(next.kind, TokenKind::Name | TokenKind::String | TokenKind::Number)
                || next_is("[")
                || next.kind == TokenKind::PrivateName;
            match text {
                "get" if names_a_member => refuse("a getter"),
                "set" if names_a_member => refuse("a setter"),
                "static" if names_a_member || next_is("{") => refuse("a static class member"),
                "let" if next.kind == TokenKind::Name || next_is("[") || next_is("{") => {
                    refuse("a variable declaration")
                }
                _ => Err(not_a_function(code, first)),
            }
        }
        TokenKind::String => {
            let next = lex(code, first.end).map_err(lexical)?;
            if is_punctuator(code, next, "(") {
                Ok(Shape::Method)
            } else {
                Err(not_a_function(code, first))
            }
        }
        TokenKind::Punctuator if text == "(" => Ok(Shape::Arrow),
        TokenKind::Punctuator if text == "*" => Ok(Shape::Method),
        _ => Err(not_a_function(code, first)),
    }
}

/// At most 40 characters of `text`, for messages.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((cut, _)) => format!("{}…", text.get(..cut).unwrap_or("")),
        None => text.to_string(),
    }
}

/// What `token` is, for messages: "a number literal", "an expression starting with the identifier `x`" …
fn describe(code: &str, token: Token) -> String {
    let text = token_text(code, token);
    match token.kind {
        TokenKind::End => "nothing".to_string(),
        TokenKind::Number => "a number literal".to_string(),
        TokenKind::String => "a string literal".to_string(),
        TokenKind::Template | TokenKind::TemplateHead => "a template literal".to_string(),
        TokenKind::Regex => "a regular expression literal".to_string(),
        TokenKind::PrivateName => format!("the private name `{}`", shorten(text)),
        TokenKind::Punctuator => match text {
            "{" => "a block or an object literal".to_string(),
            "[" => "an array literal".to_string(),
            "(" => "a parenthesized expression".to_string(),
            "/" | "/=" => "a regular expression literal".to_string(),
            _ => format!("`{}`", shorten(text)),
        },
        TokenKind::Name => match text {
            "class" => "a class".to_string(),
            "function" => "a function".to_string(),
            "var" | "const" => "a variable declaration".to_string(),
            "true" | "false" => "a boolean literal".to_string(),
            "null" | "this" | "super" => format!("`{text}`"),
            "if" | "for" | "while" | "do" | "switch" | "try" | "return" | "throw" | "break" | "continue" | "with"
            | "debugger" | "import" | "export" => format!("a statement (`{text}`)"),
            _ if is_reserved(text) => format!("the keyword `{text}`"),
            _ => format!("an expression starting with the identifier `{}`", shorten(text)),
        },
    }
}

fn not_a_function(code: &str, token: Token) -> SourceError {
    error_at(code, format!("{EXPECTED_FUNCTION}, found {}", describe(code, token)), token.start)
}

/// Accepts only semicolons, comments and whitespace after the function, which ends at `end`.
fn check_trailing(code: &str, end: usize) -> Result<(), SourceError> {
    let mut position = end;
    loop {
        let token = lex(code, position).map_err(|error| lexical_error(code, error))?;
        if token.kind == TokenKind::End {
            return Ok(());
        }
        if !is_punctuator(code, token, ";") {
            let message = format!(
                "must be the source of a single JavaScript function, found more code after it: {}",
                describe(code, token)
            );
            return Err(error_at(code, message, token.start));
        }
        position = token.end;
    }
}

/// Finds where the function ends by matching brackets, for code the parser did not understand: the end, and
/// whether the function is a method.
fn scan_extent(code: &str, first: Token, shape: Shape) -> Result<(usize, bool), SourceError> {
    let mut scanner = Scanner::new(code, first.start);
    let mut saw_parameters = false;
    loop {
        let token = scanner.next()?;
        let text = token_text(code, token);
        let punctuator = token.kind == TokenKind::Punctuator;
        if punctuator && text == "=>" && shape == Shape::Arrow {
            break;
        }
        if punctuator && text == "{" && saw_parameters {
            // `async (…) {…}` is a method named `async`, not an arrow function.
            let is_async_method = shape == Shape::Arrow && token_text(code, first) == "async";
            if shape == Shape::Arrow && !is_async_method {
                return Err(not_a_function(code, first));
            }
            let close = scanner.skip_group()?;
            return Ok((close.end, shape != Shape::Function));
        }
        let allowed = !saw_parameters
            && (matches!(token.kind, TokenKind::Name | TokenKind::String) || (punctuator && matches!(text, "*" | "(")));
        if !allowed {
            return Err(not_a_function(code, first));
        }
        if punctuator && text == "(" {
            scanner.skip_group()?;
            saw_parameters = true;
        }
    }
    // An arrow function's body: a block, or an expression that ends at a semicolon, at the end of the input or
    // where a new line starts what can only be a new statement.
    let mut token = scanner.next()?;
    if is_punctuator(code, token, "{") {
        let close = scanner.skip_group()?;
        return Ok((close.end, false));
    }
    if token.kind == TokenKind::End || is_punctuator(code, token, ";") {
        return Err(error_at(code, "the arrow function has no body".to_string(), token.start));
    }
    let mut end = token.end;
    let mut depth_before = 0;
    let mut previous_ends_operand = false;
    loop {
        if depth_before == 0 {
            if token.kind == TokenKind::End || is_punctuator(code, token, ";") {
                break;
            }
            if token.newline_before && previous_ends_operand && starts_statement(code, token) {
                break;
            }
        }
        end = token.end;
        previous_ends_operand = ends_operand(code, token);
        depth_before = scanner.open.len();
        token = scanner.next()?;
    }
    Ok((end, false))
}

/// Whether `token` can end an operand, so that a line break after it may end the statement.
fn ends_operand(code: &str, token: Token) -> bool {
    match token.kind {
        TokenKind::Name => !is_reserved(token_text(code, token)) || matches!(token_text(code, token), "this" | "null"),
        TokenKind::Number | TokenKind::String | TokenKind::Template | TokenKind::Regex | TokenKind::PrivateName => true,
        TokenKind::Punctuator => matches!(token_text(code, token), ")" | "]" | "}" | "++" | "--"),
        TokenKind::TemplateHead | TokenKind::End => false,
    }
}

/// Whether `token` cannot continue an expression and so starts a new statement.
fn starts_statement(code: &str, token: Token) -> bool {
    match token.kind {
        TokenKind::Name => !matches!(token_text(code, token), "in" | "instanceof" | "of"),
        TokenKind::Number | TokenKind::String | TokenKind::PrivateName => true,
        TokenKind::Punctuator => matches!(token_text(code, token), "{" | "++" | "--"),
        _ => false,
    }
}

/// Operators that assign to their left operand.
const ASSIGNMENT_OPERATORS: &[&str] =
    &["=", "+=", "-=", "*=", "/=", "%=", "**=", "<<=", ">>=", ">>>=", "&=", "|=", "^=", "&&=", "||=", "??="];

/// Punctuators that join two operands.
const BINARY_OPERATORS: &[&str] = &[
    "??", "||", "&&", "|", "^", "&", "==", "!=", "===", "!==", "<", ">", "<=", ">=", "<<", ">>", ">>>", "+", "-", "*",
    "/", "%", "**",
];

/// Keywords after which a `/` starts a regular expression.
pub(crate) const KEYWORDS_BEFORE_EXPRESSION: &[&str] = &[
    "return",
    "typeof",
    "instanceof",
    "in",
    "of",
    "new",
    "delete",
    "void",
    "throw",
    "case",
    "do",
    "else",
    "yield",
    "await",
    "extends",
];

#[derive(Debug, Clone, Copy)]
struct OpenBracket {
    /// `(`, `[`, `{`, or `$` for a template substitution.
    byte: u8,
    position: usize,
    /// Whether this `(` follows `if`, `while`, `for` or `with`, so that a `/` after its `)` starts a regular
    /// expression.
    after_keyword: bool,
}

/// A tokenizer that matches brackets and tells a regular expression from a division by the previous token alone,
/// for code the parser did not understand.
struct Scanner<'a> {
    code: &'a str,
    position: usize,
    regex_allowed: bool,
    after_member_dot: bool,
    after_statement_keyword: bool,
    open: Vec<OpenBracket>,
}

impl<'a> Scanner<'a> {
    fn new(code: &'a str, position: usize) -> Self {
        Scanner {
            code,
            position,
            regex_allowed: true,
            after_member_dot: false,
            after_statement_keyword: false,
            open: Vec::new(),
        }
    }

    fn next(&mut self) -> Result<Token, SourceError> {
        let code = self.code;
        let lexical = |error: LexError| lexical_error(code, error);
        let mut token = lex(code, self.position).map_err(lexical)?;
        let mut closed_keyword_parenthesis = false;
        let mut template_start = None;
        if token.kind == TokenKind::Punctuator {
            match token_text(code, token) {
                "/" | "/=" if self.regex_allowed => token = lex_regex(code, token).map_err(lexical)?,
                text @ ("(" | "[" | "{") => self.open.push(OpenBracket {
                    byte: text.as_bytes().first().copied().unwrap_or(b'('),
                    position: token.start,
                    after_keyword: text == "(" && self.after_statement_keyword,
                }),
                text @ (")" | "]" | "}") => {
                    let Some(open) = self.open.pop() else {
                        let message = format!("unbalanced brackets: `{text}` has no matching opening bracket");
                        return Err(error_at(code, message, token.start));
                    };
                    let expected = match open.byte {
                        b'(' => ")",
                        b'[' => "]",
                        _ => "}",
                    };
                    if text != expected {
                        let (line, column) = PositionCursor::new(code).advance_to(open.position);
                        let opening =
                            if open.byte == b'$' { "${".to_string() } else { (open.byte as char).to_string() };
                        let message =
                            format!("unbalanced brackets: `{text}` does not match the `{opening}` at {line}:{column}");
                        return Err(error_at(code, message, token.start));
                    }
                    if open.byte == b'$' {
                        // The error, and the substitution that may follow, belong to the template's opening backtick.
                        token = lex_template_continuation(code, token)
                            .map_err(|error| lexical_error(code, LexError { position: open.position, ..error }))?;
                        template_start = Some(open.position);
                    }
                    closed_keyword_parenthesis = open.after_keyword;
                }
                _ => {}
            }
        }
        if token.kind == TokenKind::TemplateHead {
            self.open.push(OpenBracket {
                byte: b'$',
                position: template_start.unwrap_or(token.start),
                after_keyword: false,
            });
        }
        if token.kind == TokenKind::End {
            if let Some(open) = self.open.last() {
                let message = if open.byte == b'$' {
                    "unterminated template literal".to_string()
                } else {
                    format!("unbalanced brackets: `{}` is never closed", open.byte as char)
                };
                return Err(error_at(code, message, open.position));
            }
        }
        let text = token_text(code, token);
        self.regex_allowed = match token.kind {
            TokenKind::Name => !self.after_member_dot && KEYWORDS_BEFORE_EXPRESSION.contains(&text),
            TokenKind::Punctuator => match text {
                ")" => closed_keyword_parenthesis,
                "]" | "}" | "++" | "--" => false,
                _ => true,
            },
            TokenKind::TemplateHead | TokenKind::End => true,
            _ => false,
        };
        self.after_statement_keyword =
            token.kind == TokenKind::Name && !self.after_member_dot && matches!(text, "if" | "while" | "for" | "with");
        self.after_member_dot = token.kind == TokenKind::Punctuator && matches!(text, "." | "?.");
        self.position = token.end;
        Ok(token)
    }

    /// Skips to the token that closes the bracket just returned by [`Scanner::next`], and returns it.
    fn skip_group(&mut self) -> Result<Token, SourceError> {
        let target = self.open.len().saturating_sub(1);
        loop {
            let token = self.next()?;
            if self.open.len() == target {
                return Ok(token);
            }
        }
    }
}

// ---- Parsing and scopes ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScopeKind {
    /// A function, an arrow function, a class field initializer or a static block: where `var` declares.
    Function,
    Block,
    /// The body of a `with` statement, where any name may resolve.
    With,
}

#[derive(Debug, Clone, Copy)]
struct Scope {
    parent: Option<usize>,
    kind: ScopeKind,
}

#[derive(Debug, Clone, Copy)]
struct PendingReference<'a> {
    name: &'a str,
    position: usize,
    scope: usize,
    /// Whether the reference is the bare operand of `typeof`, which never throws.
    typeof_operand: bool,
}

#[derive(Debug, Clone, Copy)]
enum Failure {
    /// The parser did not understand the code (a syntax error, or syntax it does not know).
    Syntax,
    /// The code nests deeper than [`MAX_NESTING`]; the byte offset where that happened.
    TooDeep(usize),
}

type Parsed<T = ()> = Result<T, Failure>;

/// The parser's state, to go back to when a parenthesized expression turns out not to be an arrow function's
/// parameters.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    current: Token,
    previous_end: usize,
    consumed: usize,
    depth: usize,
    scope: usize,
    scopes: usize,
    declarations: usize,
    references: usize,
    in_async: bool,
    in_generator: bool,
}

/// A recursive-descent parser that records scopes, declarations and references instead of building a tree.
struct Parser<'a> {
    code: &'a str,
    current: Token,
    /// Where the last consumed token ends.
    previous_end: usize,
    /// How many tokens were consumed, to tell a bare `typeof name` operand.
    consumed: usize,
    depth: usize,
    scopes: Vec<Scope>,
    scope: usize,
    declarations: Vec<(usize, &'a str)>,
    references: Vec<PendingReference<'a>>,
    /// For the offset of each `(` looked at so far, whether it may start an arrow function's parameters (whether
    /// its `)` is followed by `=>`).
    arrow_heads: HashMap<usize, bool>,
    in_async: bool,
    in_generator: bool,
}

/// Parses the function whose first token is `first`: the parser, and whether the function is a method.
fn parse_function(code: &str, first: Token, shape: Shape) -> Parsed<(Parser<'_>, bool)> {
    let mut parser = Parser::new(code, first);
    let method = match shape {
        Shape::Function => {
            let is_async = parser.is_name("async");
            if is_async {
                parser.advance()?;
            }
            parser.parse_function_keyword(is_async, false)?;
            false
        }
        Shape::Method => {
            parser.parse_method()?;
            true
        }
        Shape::Arrow => {
            let snapshot = parser.snapshot();
            match parser.parse_arrow() {
                Ok(()) => false,
                Err(Failure::Syntax) if parser.is_async_call_start(first) => {
                    parser.restore(snapshot);
                    parser.parse_method()?;
                    true
                }
                Err(failure) => return Err(failure),
            }
        }
    };
    Ok((parser, method))
}

impl<'a> Parser<'a> {
    fn new(code: &'a str, first: Token) -> Self {
        Parser {
            code,
            current: first,
            previous_end: first.start,
            consumed: 0,
            depth: 0,
            scopes: vec![Scope { parent: None, kind: ScopeKind::Function }],
            scope: 0,
            declarations: Vec::new(),
            references: Vec::new(),
            arrow_heads: HashMap::new(),
            in_async: false,
            in_generator: false,
        }
    }

    // -- Tokens --

    fn text(&self) -> &'a str {
        token_text(self.code, self.current)
    }

    fn is(&self, punctuator: &str) -> bool {
        is_punctuator(self.code, self.current, punctuator)
    }

    fn is_name(&self, word: &str) -> bool {
        self.current.kind == TokenKind::Name && self.text() == word
    }

    /// Whether the current token is a name that can be a variable.
    fn is_identifier(&self) -> bool {
        self.current.kind == TokenKind::Name && !is_reserved(self.text())
    }

    fn is_async_call_start(&self, first: Token) -> bool {
        token_text(self.code, first) == "async"
            && lex(self.code, first.end).is_ok_and(|next| is_punctuator(self.code, next, "("))
    }

    fn advance(&mut self) -> Parsed {
        let next = lex(self.code, self.current.end).map_err(|_| Failure::Syntax)?;
        self.previous_end = self.current.end;
        self.current = next;
        self.consumed += 1;
        Ok(())
    }

    fn peek(&self) -> Parsed<Token> {
        lex(self.code, self.current.end).map_err(|_| Failure::Syntax)
    }

    fn peek_is(&self, punctuator: &str) -> Parsed<bool> {
        let next = self.peek()?;
        Ok(is_punctuator(self.code, next, punctuator))
    }

    fn eat(&mut self, punctuator: &str) -> Parsed<bool> {
        if self.is(punctuator) {
            self.advance()?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn expect(&mut self, punctuator: &str) -> Parsed {
        if self.is(punctuator) {
            self.advance()
        } else {
            Err(Failure::Syntax)
        }
    }

    /// Ends a statement: a `;`, or a place where one is inserted automatically.
    fn consume_semicolon(&mut self) -> Parsed {
        if self.is(";") {
            self.advance()
        } else if self.is("}") || self.current.kind == TokenKind::End || self.current.newline_before {
            Ok(())
        } else {
            Err(Failure::Syntax)
        }
    }

    fn enter(&mut self) -> Parsed {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            Err(Failure::TooDeep(self.current.start))
        } else {
            Ok(())
        }
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            current: self.current,
            previous_end: self.previous_end,
            consumed: self.consumed,
            depth: self.depth,
            scope: self.scope,
            scopes: self.scopes.len(),
            declarations: self.declarations.len(),
            references: self.references.len(),
            in_async: self.in_async,
            in_generator: self.in_generator,
        }
    }

    fn restore(&mut self, snapshot: Snapshot) {
        self.current = snapshot.current;
        self.previous_end = snapshot.previous_end;
        self.consumed = snapshot.consumed;
        self.depth = snapshot.depth;
        self.scope = snapshot.scope;
        self.scopes.truncate(snapshot.scopes);
        self.declarations.truncate(snapshot.declarations);
        self.references.truncate(snapshot.references);
        self.in_async = snapshot.in_async;
        self.in_generator = snapshot.in_generator;
    }

    // -- Scopes --

    fn push_scope(&mut self, kind: ScopeKind) -> usize {
        self.scopes.push(Scope { parent: Some(self.scope), kind });
        self.scope = self.scopes.len() - 1;
        self.scope
    }

    /// The innermost function scope around the current scope, where `var` declares.
    fn function_scope(&self) -> usize {
        let mut id = self.scope;
        while let Some(scope) = self.scopes.get(id) {
            match (scope.kind, scope.parent) {
                (ScopeKind::Function, _) | (_, None) => return id,
                (_, Some(parent)) => id = parent,
            }
        }
        id
    }

    fn declare(&mut self, scope: usize, name: &'a str) {
        self.declarations.push((scope, name));
    }

    fn reference_current(&mut self) {
        let name = self.text();
        self.references.push(PendingReference {
            name,
            position: self.current.start,
            scope: self.scope,
            typeof_operand: false,
        });
    }

    // -- The top-level function --

    /// `[async] [*] name (…) {…}`, the name an identifier or a string.
    fn parse_method(&mut self) -> Parsed {
        let mut is_async = false;
        if self.is_name("async") && !self.peek_is("(")? {
            is_async = true;
            self.advance()?;
        }
        let is_generator = self.eat("*")?;
        if !matches!(self.current.kind, TokenKind::Name | TokenKind::String) {
            return Err(Failure::Syntax);
        }
        self.advance()?;
        self.parse_function_rest(is_async, is_generator, None)
    }

    /// `[async] x => …` or `[async] (…) => …`.
    fn parse_arrow(&mut self) -> Parsed {
        let mut is_async = false;
        if self.is_name("async") {
            let next = self.peek()?;
            if !next.newline_before && !is_punctuator(self.code, next, "=>") {
                is_async = true;
                self.advance()?;
            }
        }
        if self.is_identifier() && self.peek_is("=>")? {
            return self.parse_arrow_with_one_parameter(is_async);
        }
        if self.is("(") && self.try_parenthesized_arrow(is_async)? {
            return Ok(());
        }
        Err(Failure::Syntax)
    }

    // -- Functions and classes --

    /// From the `function` keyword (after any `async`): `function [*] [name] (…) {…}`.
    fn parse_function_keyword(&mut self, is_async: bool, declaration: bool) -> Parsed {
        self.advance()?;
        let is_generator = self.eat("*")?;
        let mut own_name = None;
        if self.current.kind == TokenKind::Name {
            let name = self.text();
            if declaration {
                let function_scope = self.function_scope();
                self.declare(self.scope, name);
                self.declare(function_scope, name);
            } else {
                own_name = Some(name);
            }
            self.advance()?;
        }
        self.parse_function_rest(is_async, is_generator, own_name)
    }

    /// A function's parameters and body, in a new function scope.
    fn parse_function_rest(&mut self, is_async: bool, is_generator: bool, own_name: Option<&'a str>) -> Parsed {
        self.enter()?;
        let (outer_scope, outer_async, outer_generator) = (self.scope, self.in_async, self.in_generator);
        let scope = self.push_scope(ScopeKind::Function);
        self.declare(scope, "arguments");
        if let Some(name) = own_name {
            self.declare(scope, name);
        }
        self.in_async = is_async;
        self.in_generator = is_generator;
        self.parse_parameters(scope)?;
        self.parse_function_body()?;
        self.scope = outer_scope;
        self.in_async = outer_async;
        self.in_generator = outer_generator;
        self.leave();
        Ok(())
    }

    fn parse_parameters(&mut self, scope: usize) -> Parsed {
        self.expect("(")?;
        while !self.is(")") {
            self.eat("...")?;
            self.parse_binding_element(scope)?;
            if !self.eat(",")? {
                break;
            }
        }
        self.expect(")")
    }

    /// `{ statements }`, in the current (function) scope.
    fn parse_function_body(&mut self) -> Parsed {
        self.expect("{")?;
        self.parse_statements_until_brace()
    }

    fn parse_statements_until_brace(&mut self) -> Parsed {
        while !self.is("}") {
            if self.current.kind == TokenKind::End {
                return Err(Failure::Syntax);
            }
            self.parse_statement()?;
        }
        self.advance()
    }

    /// An arrow function whose one parameter is the current name.
    fn parse_arrow_with_one_parameter(&mut self, is_async: bool) -> Parsed {
        self.enter()?;
        let (outer_scope, outer_async, outer_generator) = (self.scope, self.in_async, self.in_generator);
        let scope = self.push_scope(ScopeKind::Function);
        let name = self.text();
        self.declare(scope, name);
        self.advance()?;
        self.expect("=>")?;
        self.in_async = is_async;
        self.in_generator = false;
        self.parse_arrow_body()?;
        self.scope = outer_scope;
        self.in_async = outer_async;
        self.in_generator = outer_generator;
        self.leave();
        Ok(())
    }

    /// Tries to read `(…) => …` from the current `(`; when that is not an arrow function, goes back and returns
    /// false.
    fn try_parenthesized_arrow(&mut self, is_async: bool) -> Parsed<bool> {
        let open = self.current.start;
        if !self.may_start_arrow_parameters(open) {
            return Ok(false);
        }
        let snapshot = self.snapshot();
        self.enter()?;
        let scope = self.push_scope(ScopeKind::Function);
        self.in_async = is_async;
        self.in_generator = false;
        let head = match self.parse_parameters(scope) {
            Ok(()) if self.is("=>") && !self.current.newline_before => Ok(()),
            Ok(()) => Err(Failure::Syntax),
            Err(failure) => Err(failure),
        };
        match head {
            Ok(()) => {
                self.advance()?;
                self.parse_arrow_body()?;
                self.scope = snapshot.scope;
                self.in_async = snapshot.in_async;
                self.in_generator = snapshot.in_generator;
                self.leave();
                Ok(true)
            }
            Err(Failure::Syntax) => {
                self.restore(snapshot);
                self.arrow_heads.insert(open, false);
                Ok(false)
            }
            Err(failure) => Err(failure),
        }
    }

    /// Whether the `(` at `open` may start an arrow function's parameters, that is whether the token after its
    /// matching `)` is `=>`. One bracket-matching scan answers for every `(` inside the group too, so that nested
    /// parentheses are not parsed again and again; when the scan fails, the answer is "maybe".
    fn may_start_arrow_parameters(&mut self, open: usize) -> bool {
        if let Some(&known) = self.arrow_heads.get(&open) {
            return known;
        }
        let mut scanner = Scanner::new(self.code, open);
        let mut parentheses: Vec<usize> = Vec::new();
        while let Ok(token) = scanner.next() {
            if is_punctuator(self.code, token, "(") {
                parentheses.push(token.start);
            } else if is_punctuator(self.code, token, ")") {
                let Some(start) = parentheses.pop() else {
                    break;
                };
                let arrow = lex(self.code, token.end).is_ok_and(|next| is_punctuator(self.code, next, "=>"));
                self.arrow_heads.insert(start, arrow);
            }
            if parentheses.is_empty() || token.kind == TokenKind::End {
                break;
            }
        }
        // Parentheses the scan could not close are left to the parser to try.
        for start in parentheses {
            self.arrow_heads.insert(start, true);
        }
        self.arrow_heads.get(&open).copied().unwrap_or(true)
    }

    fn parse_arrow_body(&mut self) -> Parsed {
        if self.is("{") {
            self.parse_function_body()
        } else {
            self.parse_assignment(false)
        }
    }

    /// From the `class` keyword: `class [name] [extends expression] { members }`.
    fn parse_class(&mut self, declaration: bool) -> Parsed {
        self.enter()?;
        self.advance()?;
        let outer_scope = self.scope;
        let mut name = None;
        if self.is_identifier() && !self.is_name("extends") {
            name = Some(self.text());
            self.advance()?;
        }
        if let (true, Some(name)) = (declaration, name) {
            self.declare(outer_scope, name);
        }
        let class_scope = self.push_scope(ScopeKind::Block);
        if let Some(name) = name {
            self.declare(class_scope, name);
        }
        if self.is_name("extends") {
            self.advance()?;
            self.parse_left_hand_side()?;
        }
        self.expect("{")?;
        loop {
            if self.eat("}")? {
                break;
            }
            if self.eat(";")? {
                continue;
            }
            self.parse_class_member()?;
        }
        self.scope = outer_scope;
        self.leave();
        Ok(())
    }

    fn parse_class_member(&mut self) -> Parsed {
        if self.is_name("static") {
            let next = self.peek()?;
            if is_punctuator(self.code, next, "{") {
                self.advance()?;
                let outer_scope = self.scope;
                self.push_scope(ScopeKind::Function);
                self.parse_function_body()?;
                self.scope = outer_scope;
                return Ok(());
            }
            let names_the_member =
                next.kind == TokenKind::Punctuator && matches!(token_text(self.code, next), "(" | "=" | ";" | "}");
            if !names_the_member {
                self.advance()?;
            }
        }
        let (is_async, is_generator, modified) = self.parse_method_modifiers()?;
        self.parse_property_key()?;
        if self.is("(") {
            return self.parse_function_rest(is_async, is_generator, None);
        }
        if modified {
            return Err(Failure::Syntax);
        }
        if self.eat("=")? {
            let outer_scope = self.scope;
            self.push_scope(ScopeKind::Function);
            self.parse_assignment(false)?;
            self.scope = outer_scope;
        }
        self.consume_semicolon()
    }

    /// `get`, `set`, `async` and `*` before a method's name: whether it is async, a generator, and whether there
    /// was any modifier.
    fn parse_method_modifiers(&mut self) -> Parsed<(bool, bool, bool)> {
        let mut is_async = false;
        let mut modified = false;
        if self.is_name("get") || self.is_name("set") || self.is_name("async") {
            let next = self.peek()?;
            let starts_key =
                matches!(next.kind, TokenKind::Name | TokenKind::String | TokenKind::Number | TokenKind::PrivateName)
                    || is_punctuator(self.code, next, "[");
            let async_modifier = self.is_name("async") && !next.newline_before;
            if starts_key && (async_modifier || !self.is_name("async")) {
                is_async = self.is_name("async");
                modified = true;
                self.advance()?;
            } else if async_modifier && is_punctuator(self.code, next, "*") {
                is_async = true;
                modified = true;
                self.advance()?;
            }
        }
        let is_generator = self.eat("*")?;
        Ok((is_async, is_generator, modified || is_generator))
    }

    /// A property name: an identifier or keyword, a string, a number, a private name or `[expression]`. Returns
    /// the token when it is a name that could be a shorthand property.
    fn parse_property_key(&mut self) -> Parsed<Option<Token>> {
        let token = self.current;
        match token.kind {
            TokenKind::Name => {
                self.advance()?;
                Ok(Some(token))
            }
            TokenKind::String | TokenKind::Number | TokenKind::PrivateName => {
                self.advance()?;
                Ok(None)
            }
            TokenKind::Punctuator if self.is("[") => {
                self.advance()?;
                self.parse_assignment(false)?;
                self.expect("]")?;
                Ok(None)
            }
            _ => Err(Failure::Syntax),
        }
    }

    // -- Patterns --

    /// A binding pattern, then an optional `= default`.
    fn parse_binding_element(&mut self, scope: usize) -> Parsed {
        self.parse_binding_pattern(scope)?;
        if self.eat("=")? {
            self.parse_assignment(false)?;
        }
        Ok(())
    }

    /// A name, `[…]` or `{…}` whose names are declared in `scope`.
    fn parse_binding_pattern(&mut self, scope: usize) -> Parsed {
        self.enter()?;
        if self.is_identifier() {
            let name = self.text();
            self.declare(scope, name);
            self.advance()?;
        } else if self.eat("[")? {
            loop {
                if self.eat("]")? {
                    break;
                }
                if self.eat(",")? {
                    continue;
                }
                self.eat("...")?;
                self.parse_binding_element(scope)?;
                if !self.is("]") {
                    self.expect(",")?;
                }
            }
        } else if self.eat("{")? {
            loop {
                if self.eat("}")? {
                    break;
                }
                if self.eat("...")? {
                    self.parse_binding_pattern(scope)?;
                } else {
                    let key = self.parse_property_key()?;
                    if self.eat(":")? {
                        self.parse_binding_element(scope)?;
                    } else {
                        let Some(key) = key.filter(|key| !is_reserved(token_text(self.code, *key))) else {
                            return Err(Failure::Syntax);
                        };
                        self.declare(scope, token_text(self.code, key));
                        if self.eat("=")? {
                            self.parse_assignment(false)?;
                        }
                    }
                }
                if !self.is("}") {
                    self.expect(",")?;
                }
            }
        } else {
            return Err(Failure::Syntax);
        }
        self.leave();
        Ok(())
    }

    // -- Statements --

    fn parse_statement(&mut self) -> Parsed {
        self.enter()?;
        self.parse_statement_inner()?;
        self.leave();
        Ok(())
    }

    fn parse_statement_inner(&mut self) -> Parsed {
        if self.is("{") {
            return self.parse_block();
        }
        if self.eat(";")? {
            return Ok(());
        }
        if self.current.kind != TokenKind::Name {
            return self.parse_expression_statement();
        }
        match self.text() {
            "var" => {
                let scope = self.function_scope();
                self.parse_declaration(scope)
            }
            "const" => self.parse_declaration(self.scope),
            "let" if self.let_starts_declaration()? => self.parse_declaration(self.scope),
            "function" => self.parse_function_keyword(false, true),
            "async" => {
                let next = self.peek()?;
                if next.kind == TokenKind::Name && token_text(self.code, next) == "function" && !next.newline_before {
                    self.advance()?;
                    self.parse_function_keyword(true, true)
                } else {
                    self.parse_expression_statement()
                }
            }
            "class" => self.parse_class(true),
            "if" => {
                self.advance()?;
                self.parse_parenthesized()?;
                self.parse_statement()?;
                if self.is_name("else") {
                    self.advance()?;
                    self.parse_statement()?;
                }
                Ok(())
            }
            "for" => self.parse_for(),
            "while" => {
                self.advance()?;
                self.parse_parenthesized()?;
                self.parse_statement()
            }
            "do" => {
                self.advance()?;
                self.parse_statement()?;
                if !self.is_name("while") {
                    return Err(Failure::Syntax);
                }
                self.advance()?;
                self.parse_parenthesized()?;
                self.eat(";")?;
                Ok(())
            }
            "return" => {
                self.advance()?;
                if !(self.is(";") || self.is("}") || self.current.kind == TokenKind::End || self.current.newline_before)
                {
                    self.parse_expression(false)?;
                }
                self.consume_semicolon()
            }
            "throw" => {
                self.advance()?;
                self.parse_expression(false)?;
                self.consume_semicolon()
            }
            "break" | "continue" => {
                self.advance()?;
                if self.current.kind == TokenKind::Name && !self.current.newline_before {
                    self.advance()?;
                }
                self.consume_semicolon()
            }
            "switch" => self.parse_switch(),
            "try" => self.parse_try(),
            "with" => {
                self.advance()?;
                self.parse_parenthesized()?;
                let outer_scope = self.scope;
                self.push_scope(ScopeKind::With);
                self.parse_statement()?;
                self.scope = outer_scope;
                Ok(())
            }
            "debugger" => {
                self.advance()?;
                self.consume_semicolon()
            }
            "import" if !(self.peek_is("(")? || self.peek_is(".")?) => Err(Failure::Syntax),
            "export" => Err(Failure::Syntax),
            text if !is_reserved(text) && self.peek_is(":")? => {
                // A label: its name is not a reference.
                self.advance()?;
                self.advance()?;
                self.parse_statement()
            }
            _ => self.parse_expression_statement(),
        }
    }

    /// Whether the current `let` starts a declaration rather than being a name.
    fn let_starts_declaration(&self) -> Parsed<bool> {
        let next = self.peek()?;
        Ok(next.kind == TokenKind::Name || is_punctuator(self.code, next, "[") || is_punctuator(self.code, next, "{"))
    }

    fn parse_expression_statement(&mut self) -> Parsed {
        self.parse_expression(false)?;
        self.consume_semicolon()
    }

    fn parse_block(&mut self) -> Parsed {
        self.expect("{")?;
        let outer_scope = self.scope;
        self.push_scope(ScopeKind::Block);
        self.parse_statements_until_brace()?;
        self.scope = outer_scope;
        Ok(())
    }

    fn parse_parenthesized(&mut self) -> Parsed {
        self.expect("(")?;
        self.parse_expression(false)?;
        self.expect(")")
    }

    /// `var`, `let` or `const` and its declarators, declaring in `scope`.
    fn parse_declaration(&mut self, scope: usize) -> Parsed {
        self.advance()?;
        self.parse_declarators(scope, false)?;
        self.consume_semicolon()
    }

    fn parse_declarators(&mut self, scope: usize, no_in: bool) -> Parsed {
        loop {
            self.parse_binding_pattern(scope)?;
            if self.eat("=")? {
                self.parse_assignment(no_in)?;
            }
            if !self.eat(",")? {
                return Ok(());
            }
        }
    }

    fn parse_for(&mut self) -> Parsed {
        self.advance()?;
        if self.is_name("await") {
            self.advance()?;
        }
        self.expect("(")?;
        let outer_scope = self.scope;
        self.push_scope(ScopeKind::Block);
        if !self.eat(";")? {
            let declaration_scope = if self.is_name("var") {
                Some(self.function_scope())
            } else if self.is_name("const") || (self.is_name("let") && self.let_starts_declaration()?) {
                Some(self.scope)
            } else {
                None
            };
            match declaration_scope {
                Some(scope) => {
                    self.advance()?;
                    self.parse_declarators(scope, true)?;
                }
                None => self.parse_expression(true)?,
            }
            if self.is_name("of") || self.is_name("in") {
                self.advance()?;
                self.parse_expression(false)?;
                self.expect(")")?;
                self.parse_statement()?;
                self.scope = outer_scope;
                return Ok(());
            }
            self.expect(";")?;
        }
        if !self.is(";") {
            self.parse_expression(false)?;
        }
        self.expect(";")?;
        if !self.is(")") {
            self.parse_expression(false)?;
        }
        self.expect(")")?;
        self.parse_statement()?;
        self.scope = outer_scope;
        Ok(())
    }

    fn parse_switch(&mut self) -> Parsed {
        self.advance()?;
        self.parse_parenthesized()?;
        self.expect("{")?;
        let outer_scope = self.scope;
        self.push_scope(ScopeKind::Block);
        loop {
            if self.eat("}")? {
                break;
            }
            if self.is_name("case") {
                self.advance()?;
                self.parse_expression(false)?;
                self.expect(":")?;
            } else if self.is_name("default") {
                self.advance()?;
                self.expect(":")?;
            } else if self.current.kind == TokenKind::End {
                return Err(Failure::Syntax);
            } else {
                self.parse_statement()?;
            }
        }
        self.scope = outer_scope;
        Ok(())
    }

    fn parse_try(&mut self) -> Parsed {
        self.advance()?;
        self.parse_block()?;
        if self.is_name("catch") {
            self.advance()?;
            let outer_scope = self.scope;
            let scope = self.push_scope(ScopeKind::Block);
            if self.eat("(")? {
                self.parse_binding_pattern(scope)?;
                self.expect(")")?;
            }
            self.parse_block()?;
            self.scope = outer_scope;
        }
        if self.is_name("finally") {
            self.advance()?;
            self.parse_block()?;
        }
        Ok(())
    }

    // -- Expressions --

    /// An expression, with commas. `no_in` stops at `in` (the head of a `for … in` loop).
    fn parse_expression(&mut self, no_in: bool) -> Parsed {
        self.parse_assignment(no_in)?;
        while self.eat(",")? {
            self.parse_assignment(no_in)?;
        }
        Ok(())
    }

    fn parse_assignment(&mut self, no_in: bool) -> Parsed {
        self.enter()?;
        self.parse_assignment_inner(no_in)?;
        self.leave();
        Ok(())
    }

    fn parse_assignment_inner(&mut self, no_in: bool) -> Parsed {
        if self.current.kind == TokenKind::Name {
            if self.is_name("yield") && self.in_generator {
                return self.parse_yield(no_in);
            }
            if self.is_name("async") {
                let next = self.peek()?;
                if !next.newline_before {
                    if next.kind == TokenKind::Name && !is_reserved(token_text(self.code, next)) {
                        let after = lex(self.code, next.end).map_err(|_| Failure::Syntax)?;
                        if is_punctuator(self.code, after, "=>") {
                            self.advance()?;
                            return self.parse_arrow_with_one_parameter(true);
                        }
                    }
                    if is_punctuator(self.code, next, "(") {
                        let snapshot = self.snapshot();
                        self.advance()?;
                        if self.try_parenthesized_arrow(true)? {
                            return Ok(());
                        }
                        self.restore(snapshot);
                    }
                }
            }
            if self.is_identifier() && self.peek_is("=>")? {
                return self.parse_arrow_with_one_parameter(false);
            }
        } else if self.is("(") && self.try_parenthesized_arrow(false)? {
            return Ok(());
        }
        self.parse_conditional(no_in)?;
        if self.current.kind == TokenKind::Punctuator && ASSIGNMENT_OPERATORS.contains(&self.text()) {
            self.advance()?;
            self.parse_assignment(no_in)?;
        }
        Ok(())
    }

    fn parse_yield(&mut self, no_in: bool) -> Parsed {
        self.advance()?;
        if self.eat("*")? {
            return self.parse_assignment(no_in);
        }
        if !self.current.newline_before && self.starts_expression() {
            self.parse_assignment(no_in)?;
        }
        Ok(())
    }

    /// Whether the current token can start an expression (for the optional operand of `yield`).
    fn starts_expression(&self) -> bool {
        match self.current.kind {
            TokenKind::Name => !matches!(self.text(), "in" | "of" | "instanceof"),
            TokenKind::Punctuator => {
                matches!(self.text(), "(" | "[" | "{" | "/" | "/=" | "+" | "-" | "!" | "~" | "++" | "--")
            }
            TokenKind::End => false,
            _ => true,
        }
    }

    fn parse_conditional(&mut self, no_in: bool) -> Parsed {
        self.parse_binary(no_in)?;
        if self.eat("?")? {
            self.parse_assignment(false)?;
            self.expect(":")?;
            self.parse_assignment(no_in)?;
        }
        Ok(())
    }

    /// Operands joined by binary operators; precedence does not matter to scopes.
    fn parse_binary(&mut self, no_in: bool) -> Parsed {
        self.parse_unary()?;
        while self.is_binary_operator(no_in) {
            self.advance()?;
            self.parse_unary()?;
        }
        Ok(())
    }

    fn is_binary_operator(&self, no_in: bool) -> bool {
        match self.current.kind {
            TokenKind::Punctuator => BINARY_OPERATORS.contains(&self.text()),
            TokenKind::Name => self.text() == "instanceof" || (self.text() == "in" && !no_in),
            _ => false,
        }
    }

    fn parse_unary(&mut self) -> Parsed {
        let prefix = match self.current.kind {
            TokenKind::Punctuator => matches!(self.text(), "!" | "~" | "+" | "-" | "++" | "--"),
            TokenKind::Name => {
                matches!(self.text(), "typeof" | "void" | "delete") || (self.in_async && self.text() == "await")
            }
            _ => false,
        };
        if !prefix {
            return self.parse_postfix();
        }
        let is_typeof = self.is_name("typeof");
        self.advance()?;
        let (consumed, references) = (self.consumed, self.references.len());
        self.enter()?;
        self.parse_unary()?;
        self.leave();
        if is_typeof && self.consumed == consumed + 1 && self.references.len() == references + 1 {
            if let Some(reference) = self.references.last_mut() {
                reference.typeof_operand = true;
            }
        }
        Ok(())
    }

    fn parse_postfix(&mut self) -> Parsed {
        self.parse_left_hand_side()?;
        if (self.is("++") || self.is("--")) && !self.current.newline_before {
            self.advance()?;
        }
        Ok(())
    }

    /// `new`, a primary expression, then member accesses, calls and tagged templates.
    fn parse_left_hand_side(&mut self) -> Parsed {
        if self.is_name("new") {
            self.advance()?;
            if self.eat(".")? {
                // `new.target`.
                if self.current.kind != TokenKind::Name {
                    return Err(Failure::Syntax);
                }
                self.advance()?;
            } else {
                self.enter()?;
                self.parse_left_hand_side()?;
                self.leave();
                return Ok(());
            }
        } else {
            self.parse_primary()?;
        }
        loop {
            if self.eat(".")? {
                if !matches!(self.current.kind, TokenKind::Name | TokenKind::PrivateName) {
                    return Err(Failure::Syntax);
                }
                self.advance()?;
            } else if self.eat("?.")? {
                if self.is("(") {
                    self.parse_arguments()?;
                } else if self.eat("[")? {
                    self.parse_expression(false)?;
                    self.expect("]")?;
                } else if matches!(self.current.kind, TokenKind::Name | TokenKind::PrivateName) {
                    self.advance()?;
                } else {
                    return Err(Failure::Syntax);
                }
            } else if self.eat("[")? {
                self.parse_expression(false)?;
                self.expect("]")?;
            } else if self.is("(") {
                self.parse_arguments()?;
            } else if matches!(self.current.kind, TokenKind::Template | TokenKind::TemplateHead) {
                self.parse_template()?;
            } else {
                return Ok(());
            }
        }
    }

    fn parse_arguments(&mut self) -> Parsed {
        self.expect("(")?;
        while !self.is(")") {
            self.eat("...")?;
            self.parse_assignment(false)?;
            if !self.eat(",")? {
                break;
            }
        }
        self.expect(")")
    }

    fn parse_template(&mut self) -> Parsed {
        loop {
            let head = self.current.kind == TokenKind::TemplateHead;
            self.advance()?;
            if !head {
                return Ok(());
            }
            self.parse_expression(false)?;
            if !self.is("}") {
                return Err(Failure::Syntax);
            }
            self.current = lex_template_continuation(self.code, self.current).map_err(|_| Failure::Syntax)?;
        }
    }

    fn parse_primary(&mut self) -> Parsed {
        match self.current.kind {
            TokenKind::Name => match self.text() {
                "function" => self.parse_function_keyword(false, false),
                "async" => {
                    let next = self.peek()?;
                    if next.kind == TokenKind::Name && token_text(self.code, next) == "function" && !next.newline_before
                    {
                        self.advance()?;
                        self.parse_function_keyword(true, false)
                    } else {
                        self.reference_current();
                        self.advance()
                    }
                }
                "class" => self.parse_class(false),
                // `this`, literals, `super.x`, `import(…)`, `import.meta`, and `await` or `yield` where they are
                // not operators (names only in sloppy code, and not worth reporting).
                "this" | "null" | "true" | "false" | "super" | "import" | "await" | "yield" => self.advance(),
                text if is_reserved(text) => Err(Failure::Syntax),
                _ => {
                    self.reference_current();
                    self.advance()
                }
            },
            TokenKind::Number | TokenKind::String | TokenKind::Regex | TokenKind::PrivateName => self.advance(),
            TokenKind::Template | TokenKind::TemplateHead => self.parse_template(),
            TokenKind::Punctuator => match self.text() {
                "(" => self.parse_parenthesized(),
                "[" => self.parse_array_literal(),
                "{" => self.parse_object_literal(),
                "/" | "/=" => {
                    self.current = lex_regex(self.code, self.current).map_err(|_| Failure::Syntax)?;
                    self.advance()
                }
                _ => Err(Failure::Syntax),
            },
            TokenKind::End => Err(Failure::Syntax),
        }
    }

    fn parse_array_literal(&mut self) -> Parsed {
        self.expect("[")?;
        loop {
            if self.eat("]")? {
                return Ok(());
            }
            if self.eat(",")? {
                continue;
            }
            self.eat("...")?;
            self.parse_assignment(false)?;
            if !self.is("]") {
                self.expect(",")?;
            }
        }
    }

    fn parse_object_literal(&mut self) -> Parsed {
        self.expect("{")?;
        loop {
            if self.eat("}")? {
                return Ok(());
            }
            if self.eat("...")? {
                self.parse_assignment(false)?;
            } else {
                let (is_async, is_generator, modified) = self.parse_method_modifiers()?;
                let key = self.parse_property_key()?;
                if self.is("(") {
                    self.parse_function_rest(is_async, is_generator, None)?;
                } else if modified {
                    return Err(Failure::Syntax);
                } else if self.eat(":")? {
                    self.parse_assignment(false)?;
                } else {
                    // A shorthand property, `{ name }` or (as an assignment pattern) `{ name = default }`.
                    let Some(key) = key.filter(|key| !is_reserved(token_text(self.code, *key))) else {
                        return Err(Failure::Syntax);
                    };
                    self.references.push(PendingReference {
                        name: token_text(self.code, key),
                        position: key.start,
                        scope: self.scope,
                        typeof_operand: false,
                    });
                    if self.eat("=")? {
                        self.parse_assignment(false)?;
                    }
                }
            }
            if !self.is("}") {
                self.expect(",")?;
            }
        }
    }
}
