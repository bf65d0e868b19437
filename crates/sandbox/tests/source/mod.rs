//! Cases for the creation-time checks of job code: `function_source`, `unresolved_references` and the sandbox's
//! globals. Only the public functions are used, so the file can move into the sandbox crate's tests.

use sundial_sandbox::source::{
    function_source, is_sandbox_global, unresolved_references, SourceError, SANDBOX_GLOBALS,
};

/// The unresolved references of `code` against the sandbox's globals, as `(name, line, column)`.
fn references(code: &str) -> Vec<(String, u32, u32)> {
    match unresolved_references(code, &is_sandbox_global) {
        Ok(found) => found.into_iter().map(|reference| (reference.name, reference.line, reference.column)).collect(),
        Err(error) => panic!("{code:?} was refused: {error}"),
    }
}

/// Only the names of the unresolved references of `code`.
fn names(code: &str) -> Vec<String> {
    references(code).into_iter().map(|(name, _, _)| name).collect()
}

fn refused(code: &str) -> SourceError {
    match function_source(code) {
        Ok(source) => panic!("{code:?} was accepted as {:?}", source.body),
        Err(error) => {
            let again = unresolved_references(code, &is_sandbox_global);
            assert_eq!(again.as_ref().err(), Some(&error), "{code:?}: both functions refuse alike");
            error
        }
    }
}

#[test]
fn the_seeds_wrong_example_names_each_outside_variable_once() {
    let code = "async (jobInstance) => { await user.send([{ type: 'text', text: userMessage }]); }";
    assert_eq!(references(code), vec![("user".to_string(), 1, 32), ("userMessage".to_string(), 1, 65)]);
}

#[test]
fn the_seeds_right_example_is_self_contained() {
    let code = "async (jobInstance) => { const user = await jobInstance.user(); const message = \
                jobInstance.metadata.message; await user.send([{ type: 'text', text: message }]); return { success: \
                true }; }";
    assert_eq!(names(code), Vec::<String>::new());
}

#[test]
fn surrounding_comments_and_semicolons_are_stripped_and_positions_kept() {
    let code = "// note\n/*! license */\nasync (job) => {\n  const a = 1;\n  return missing + a;\n};\n// after\n";
    let source = function_source(code).unwrap();
    assert_eq!(source.body, "async (job) => {\n  const a = 1;\n  return missing + a;\n}");
    assert_eq!(source.offset, 23);
    assert!(!source.strict);
    assert!(!source.method);
    assert_eq!(references(code), vec![("missing".to_string(), 5, 10)]);
}

#[test]
fn positions_count_characters_and_every_line_terminator() {
    assert_eq!(references("() => { 'é😀'; return gone }"), vec![("gone".to_string(), 1, 22)]);
    assert_eq!(references("() => {\r\n  return gone\r\n}"), vec![("gone".to_string(), 2, 10)]);
    assert_eq!(references("() => {\r  return gone\r}"), vec![("gone".to_string(), 2, 10)]);
    assert_eq!(references("() => {\u{2028}return gone}"), vec![("gone".to_string(), 2, 8)]);
    assert_eq!(references("/* a\nb */ x =>\n\n  y"), vec![("y".to_string(), 4, 3)]);
}

#[test]
fn accepted_shapes_and_their_spans() {
    // (code, body, strict, method)
    let cases: &[(&str, &str, bool, bool)] = &[
        ("async (job) => {}", "async (job) => {}", false, false),
        ("job => job.id", "job => job.id", false, false),
        ("async job => { return job }", "async job => { return job }", false, false),
        ("async function execute(job) { return 1 }", "async function execute(job) { return 1 }", false, false),
        ("function* g(){}", "function* g(){}", false, false),
        ("function *g(){ yield 1 }", "function *g(){ yield 1 }", false, false),
        ("async function(){}", "async function(){}", false, false),
        ("function () {}", "function () {}", false, false),
        ("async function* stream() { yield 1 }", "async function* stream() { yield 1 }", false, false),
        ("execute(job) { return job }", "execute(job) { return job }", false, true),
        ("async execute(job) { return job.id }", "async execute(job) { return job.id }", false, true),
        ("*gen(){}", "*gen(){}", false, true),
        ("async *gen(){}", "async *gen(){}", false, true),
        ("'quoted name'(x){}", "'quoted name'(x){}", false, true),
        ("async(job) { return job }", "async(job) { return job }", false, true),
        ("get(job) { return job }", "get(job) { return job }", false, true),
        ("async => async", "async => async", false, false),
        ("() => 1", "() => 1", false, false),
        ("(a, b) => a + b", "(a, b) => a + b", false, false),
        ("\"use strict\";\nasync (job) => {}", "async (job) => {}", true, false),
        ("'use strict'\n/* c */ job => 1;", "job => 1", true, false),
        ("'use strict';'use foo';\n x => x", "x => x", true, false),
        ("\"use foo\"\n\"use strict\"\n// c\nx => x", "x => x", true, false),
        ("'use\\x20strict'; x => x", "x => x", false, false),
        ("#!/usr/bin/env node\nx => x", "x => x", false, false),
        ("  \n\t x => x \n ", "x => x", false, false),
        ("x => x;;", "x => x", false, false),
        ("x => x; // note", "x => x", false, false),
        ("x => x /* a */ ; /* b */ ;", "x => x", false, false),
        (";x => x", "x => x", false, false),
        ("\u{feff}x => x", "x => x", false, false),
        ("x => ({ a: 1 })", "x => ({ a: 1 })", false, false),
        ("x => x\n  .trim()", "x => x\n  .trim()", false, false),
        ("x => `a${x}b`", "x => `a${x}b`", false, false),
        ("x => /re/g.test(x)", "x => /re/g.test(x)", false, false),
        ("async (job) => { if (job) /'/.test(job) }", "async (job) => { if (job) /'/.test(job) }", false, false),
        ("() => { unusual syntax here }", "() => { unusual syntax here }", false, false),
        ("delete(id) { return id }", "delete(id) { return id }", false, true),
        ("new(job) {}", "new(job) {}", false, true),
        ("async\n(x) {}", "async\n(x) {}", false, true),
        ("(a, { b }, [c] = [], ...d) => {}", "(a, { b }, [c] = [], ...d) => {}", false, false),
        ("() => { @x; if (a) /'/.test(b) }", "() => { @x; if (a) /'/.test(b) }", false, false),
        ("x => x\n\n// trailing\n", "x => x", false, false),
        ("function f() {\n}\n;\n", "function f() {\n}", false, false),
    ];
    for &(code, body, strict, method) in cases {
        let source = function_source(code).unwrap_or_else(|error| panic!("{code:?} was refused: {error}"));
        assert_eq!(source.body, body, "{code:?}");
        assert_eq!(&code[source.offset..source.offset + source.body.len()], body, "{code:?}");
        assert_eq!(source.strict, strict, "{code:?} strict");
        assert_eq!(source.method, method, "{code:?} method");
    }
}

#[test]
fn code_that_is_not_one_function_is_refused_where_it_goes_wrong() {
    const EXPECTED: &str =
        "must be the source of a JavaScript function (an arrow function, a function expression or a method)";
    // (code, message, line, column)
    let cases: &[(&str, &str, u32, u32)] = &[
        ("", "found nothing", 1, 1),
        ("   \n ", "found nothing", 1, 1),
        ("// only a comment", "found only comments", 1, 1),
        ("/* a */ /* b */", "found only comments", 1, 1),
        ("'use strict';", "found only a directive prologue", 1, 1),
        ("42", "found a number literal", 1, 1),
        ("10n", "found a number literal", 1, 1),
        ("''", "found a string literal", 1, 1),
        ("'use strict'", "found a string literal", 1, 1),
        ("`x`", "found a template literal", 1, 1),
        ("/re/", "found a regular expression literal", 1, 1),
        ("x + 1", "found an expression starting with the identifier `x`", 1, 1),
        ("foo(1)", "found an expression starting with the identifier `foo`", 1, 1),
        ("{a: 1}", "found a block or an object literal", 1, 1),
        ("[1, 2]", "found an array literal", 1, 1),
        ("[name](x) {}", "found an array literal", 1, 1),
        ("(a + b)", "found a parenthesized expression", 1, 1),
        ("(() => 1)", "found a parenthesized expression", 1, 1),
        ("\n  class A {}", "found a class", 2, 3),
        ("const f = () => 1", "found a variable declaration", 1, 1),
        ("let f = () => 1", "found a variable declaration", 1, 1),
        ("var f = 1", "found a variable declaration", 1, 1),
        ("if (x) { y }", "found a statement (`if`)", 1, 1),
        ("for (;;) {}", "found a statement (`for`)", 1, 1),
        ("while (x) {}", "found a statement (`while`)", 1, 1),
        ("typeof(x)", "found the keyword `typeof`", 1, 1),
        ("new Foo()", "found the keyword `new`", 1, 1),
        ("(a) { }", "found a parenthesized expression", 1, 1),
        ("name(a) + 1", "found an expression starting with the identifier `name`", 1, 1),
        ("return 1", "found a statement (`return`)", 1, 1),
        ("true", "found a boolean literal", 1, 1),
        ("this", "found `this`", 1, 1),
        ("get x() { return 1 }", "found a getter", 1, 1),
        ("set x(v) {}", "found a setter", 1, 1),
        ("static m() {}", "found a static class member", 1, 1),
        ("async", "found an expression starting with the identifier `async`", 1, 1),
        ("async(1)", "found an expression starting with the identifier `async`", 1, 1),
        ("#x() {}", "found the private name `#x`", 1, 1),
        ("=> 1", "found `=>`", 1, 1),
        ("'a' + 'b'", "found a string literal", 1, 1),
    ];
    for &(code, found, line, column) in cases {
        let error = refused(code);
        assert_eq!(error.message, format!("{EXPECTED}, {found}"), "{code:?}");
        assert_eq!((error.line, error.column), (line, column), "{code:?}");
        assert!(error.to_string().ends_with(&format!(" at {line}:{column}")), "{code:?}");
    }
}

#[test]
fn code_after_the_function_is_refused() {
    const AFTER: &str = "must be the source of a single JavaScript function, found more code after it: ";
    let cases: &[(&str, &str, u32, u32)] = &[
        ("() => 1; () => 2", "a parenthesized expression", 1, 10),
        ("function a() {}\nfunction b() {}", "a function", 2, 1),
        ("x => x\nfoo()", "an expression starting with the identifier `foo`", 2, 1),
        ("async (job) => {}; 42", "a number literal", 1, 20),
        ("execute(job) {}\n.call()", "`.`", 2, 1),
        ("() => {}\n(1)", "a parenthesized expression", 2, 1),
        ("x => x; x", "an expression starting with the identifier `x`", 1, 9),
        ("function f() {}()", "a parenthesized expression", 1, 16),
        ("async function f() {} f", "an expression starting with the identifier `f`", 1, 23),
        ("x => { }\n/* c */ 'tail'", "a string literal", 2, 9),
    ];
    for &(code, found, line, column) in cases {
        let error = refused(code);
        assert_eq!(error.message, format!("{AFTER}{found}"), "{code:?}");
        assert_eq!((error.line, error.column), (line, column), "{code:?}");
    }
}

#[test]
fn broken_tokens_and_brackets_are_refused_where_they_start() {
    let cases: &[(&str, &str, u32, u32)] = &[
        ("() => { unterminated", "unbalanced brackets: `{` is never closed", 1, 7),
        ("\"unterminated", "unterminated string literal", 1, 1),
        ("x => 'abc", "unterminated string literal", 1, 6),
        ("x => 'a\nb'", "unterminated string literal", 1, 6),
        ("x => `abc", "unterminated template literal", 1, 6),
        ("x => `a${x}b", "unterminated template literal", 1, 6),
        ("x => `a${x", "unterminated template literal", 1, 6),
        ("x => /* never", "unterminated comment", 1, 6),
        ("x => 1 /* never", "unterminated comment", 1, 8),
        ("x => x.replace(/a", "unterminated regular expression literal", 1, 16),
        ("() => { f( }", "unbalanced brackets: `}` does not match the `(` at 1:10", 1, 12),
        ("() => { ) }", "unbalanced brackets: `)` does not match the `{` at 1:7", 1, 9),
        ("x => x)", "unbalanced brackets: `)` has no matching opening bracket", 1, 7),
        ("function f() {\n  if (x) {\n    y(\n}", "unbalanced brackets: `}` does not match the `(` at 3:6", 4, 1),
        ("(((((", "unbalanced brackets: `(` is never closed", 1, 5),
        ("x =>", "the arrow function has no body", 1, 5),
    ];
    for &(code, message, line, column) in cases {
        let error = refused(code);
        assert_eq!(error.message, message, "{code:?}");
        assert_eq!((error.line, error.column), (line, column), "{code:?}");
    }
}

#[test]
fn messages_are_lowercase_without_a_full_stop() {
    for code in ["", "42", "x => 'a", "() => {", "() => 1; 2", "class A {}", "x => ((((((((x))))))))))"] {
        let error = refused(code);
        assert!(!error.message.ends_with('.'), "{code:?}: {}", error.message);
        assert!(error.message.chars().next().is_some_and(char::is_lowercase), "{code:?}: {}", error.message);
    }
}

#[test]
fn what_is_and_is_not_a_reference() {
    // (code, the unresolved names in order)
    let cases: &[(&str, &[&str])] = &[
        // Methods.
        ("async execute(job) { return job.id }", &[]),
        ("execute(job) { return missing }", &["missing"]),
        ("execute(job) { return execute }", &["execute"]),
        ("async (job) { return missing }", &["missing"]),
        ("delete(id) { return id + other }", &["other"]),
        ("function execute(job) { return execute(job) }", &[]),
        // typeof.
        ("() => typeof foo === 'undefined' ? 1 : foo", &["foo"]),
        ("() => typeof foo", &[]),
        ("() => typeof foo.bar", &["foo"]),
        ("() => typeof typeof foo", &[]),
        ("() => [typeof a, typeof b, c]", &["c"]),
        // Destructuring parameters with defaults and rest.
        ("async ({ metadata: { a = b, ...rest } }, [x, , y = x] = []) => a + rest + y", &["b"]),
        ("({ a: { b: [c, { d }] } }) => a + b + c + d", &["a", "b"]),
        ("(a, b = a, ...c) => [a, b, c]", &[]),
        ("function f(a = later) { var later; }", &[]),
        // Nested functions, hoisting and blocks.
        ("() => { helper(); function helper() { return inner() } }", &["inner"]),
        ("() => { if (x) { var v = 1 } return v }", &["x"]),
        ("() => { { let scoped = 1 } return scoped }", &["scoped"]),
        ("() => { { const scoped = 1 } return typeof scoped }", &[]),
        ("() => { const user = 1; { let user = 2; use(user) } return user }", &["use"]),
        ("() => { for (let i = 0; i < n; i++) {} return i }", &["n", "i"]),
        ("() => { for (var i = 0; i < 3; i++) {} return i }", &[]),
        ("() => { try { risky() } catch (error) { log(error) } return error }", &["risky", "log", "error"]),
        ("() => { try { } catch { } finally { done() } }", &["done"]),
        ("() => { try {} catch ({ message, code: c }) { return message + c } }", &[]),
        ("() => { { function inBlock() {} } return inBlock() }", &[]),
        ("() => { const f = function named() { return named }; return named }", &["named"]),
        ("() => { const f = (function* () { yield outer })(); }", &["outer"]),
        ("(job) => { const g = job => job + other; return g }", &["other"]),
        ("a => b => c => a + b + c + d", &["d"]),
        // Classes.
        (
            "() => { class A extends Base { static s = 1; #p = 2; f = helper; m() { return A } get g() { return this.#p } \
             set g(v) {} static { let q = 1; use(q) } static async *gen() {} 'quoted'() {} [key]() {} } return A }",
            &["Base", "helper", "use", "key"],
        ),
        ("() => { const B = class Named extends mixin(Base) { m() { return Named } }; return Named }", &[
            "mixin", "Base", "Named",
        ]),
        ("() => { class A { static = 1; get = 2; set; async; 'x' = y } }", &["y"]),
        ("() => { class A { constructor(a) { super(a); this.a = a } } }", &[]),
        ("() => class { #x; has(o) { return #x in o } }", &[]),
        // Labels, object keys, members.
        ("() => { outer: for (const x of xs) { inner: while (x) { break outer; continue inner } } }", &["xs"]),
        ("() => ({ a: 1, 'b': 2, [c]: 3, 4: d, e() {}, get f() { return 1 }, set f(v) {}, async g() {}, *h() {} })", &[
            "c", "d",
        ]),
        ("() => a.b.c", &["a"]),
        ("() => a?.b?.[c]?.(d)", &["a", "c", "d"]),
        ("() => a.if.class.new.typeof", &["a"]),
        ("() => ({ userMessage })", &["userMessage"]),
        ("() => ({ userMessage: 1 })", &[]),
        ("() => ({ ...rest, spread })", &["rest", "spread"]),
        ("() => ({ get: 1, set: 2, async: 3, static: 4, await: 5 })", &[]),
        ("() => ({ async, get })", &["async", "get"]),
        // Templates, strings, regular expressions and comments.
        ("() => `hello ${name} and ${'x'} ${`nested ${deep}`}`", &["name", "deep"]),
        ("() => `user.send ${'userMessage'}`", &[]),
        ("() => tag`text ${value}`", &["tag", "value"]),
        ("() => 'user.send' + \"userMessage\" // comment user\n/* user */", &[]),
        ("() => /user\\.send/.test('x')", &[]),
        ("() => { const a = 1, b = 2; return a / b / 2 }", &[]),
        ("() => { let x; x = /re[/]x/g; return x }", &[]),
        ("() => { if (ok) /user/.test(s) }", &["ok", "s"]),
        ("() => { {} /user/.test(s) }", &["s"]),
        ("() => { const a = 1, g = 2; return a\n/ g / 1 }", &[]),
        ("() => { const x = 1; return x++ / 2 }", &[]),
        ("() => [1 / 2, (3) / 4, [5][0] / 6]", &[]),
        // ASI.
        ("() => {\n  const a = first\n  const b = a\n  return b\n}", &["first"]),
        ("() => {\n  let a = 1\n  a\n  ++b\n}", &["b"]),
        ("() => {\n  return\n  unreached\n}", &["unreached"]),
        // Loops.
        ("(x) => { for (const [k, v] of Object.entries(x)) { use(k, v) } }", &["use"]),
        ("(x) => { for (const k in x) { x[k] } }", &[]),
        ("() => { for (k in o) {} }", &["k", "o"]),
        ("async () => { for await (const chunk of stream) chunk }", &["stream"]),
        ("() => { for (;;) { break } }", &[]),
        ("() => { do { x() } while (y) }", &["x", "y"]),
        ("() => { switch (k) { case a: let z = 1; break; default: return z } }", &["k", "a"]),
        // arguments, this, new.target, super, import.meta.
        ("function f() { return arguments[0] }", &[]),
        ("() => arguments", &["arguments"]),
        ("function f() { return () => arguments.length }", &[]),
        ("execute() { return arguments }", &[]),
        ("function f() { return new.target ?? this }", &[]),
        ("() => new Thing(a).run()", &["Thing", "a"]),
        ("() => new Map([[1, 2]])", &[]),
        // Operators, spread, await, yield.
        ("async (xs) => { const ys = [...xs, ...more]; f(...ys); await ys; return delete ys[0], void 0, 'a' in ys, \
          ys instanceof Array }", &["more", "f"]),
        ("function* g() { const x = yield; yield* other; yield x }", &["other"]),
        ("async () => { await Promise.all([]) }", &[]),
        ("() => x = 1", &["x"]),
        ("() => { x = 1; let y; y = x }", &["x"]),
        ("() => { [a, b] = [b, a] }", &["a", "b"]),
        ("() => { ({ a, b: c = d } = e) }", &["a", "c", "d", "e"]),
        ("() => { let a; a ||= b; a ??= c; a **= 2 }", &["b", "c"]),
        ("() => 1_000_000n + 0x1F + 0o7 + 0b1 + 1e-3 + .5 + 5. + 1_0.0_1e+1_0", &[]),
        ("() => a ? b : c", &["a", "b", "c"]),
        ("() => (a, b)", &["a", "b"]),
        ("() => { let [x = y] = [] }", &["y"]),
        // Globals and sloppy names.
        ("() => [undefined, NaN, Infinity, globalThis, console, User, fetch, JSON.stringify({})]", &[]),
        ("() => [Intl, process, require, module, window, document]", &[
            "Intl", "process", "require", "module", "window", "document",
        ]),
        ("() => { let async = 1, of = 2, get = 3, set = 4, let_ = 5; return async + of + get + set + let_ }", &[]),
        ("() => { let\nx = 1; return x }", &[]),
        // with: everything inside resolves.
        ("() => { with (obj) { anything + goes } }", &["obj"]),
        // Unicode and escapes.
        ("() => { const café = 1; return café + naïve }", &["naïve"]),
        ("() => { const \\u0061 = 1; return \\u0061 + \\u{62} }", &["\\u{62}"]),
        // Dynamic import and import.meta are not references.
        ("async () => { await import('x'); return import.meta }", &[]),
        // Each name once, at its first use.
        ("() => { missing(); missing(); other; missing }", &["missing", "other"]),
    ];
    for &(code, expected) in cases {
        assert_eq!(names(code), expected.iter().map(|name| name.to_string()).collect::<Vec<_>>(), "{code:?}");
    }
}

#[test]
fn first_offending_use_is_the_one_reported() {
    assert_eq!(references("() => typeof foo === 'undefined' ? 1 : foo"), vec![("foo".to_string(), 1, 40)]);
    assert_eq!(references("() => { const a = 1; { let b = a } return b }"), vec![("b".to_string(), 1, 43)]);
    let code = "async (job) => {\n  // user is not here\n  const text = `Hi ${user.name}`;\n  return { text }\n}";
    assert_eq!(references(code), vec![("user".to_string(), 3, 22)]);
}

#[test]
fn references_work_with_the_prologue_and_comments_before_the_function() {
    let code = "#!/usr/bin/env node\n'use strict';\n/* c */ // d\nexecute(job) {\n\treturn helper(job)\n}; // end";
    let source = function_source(code).unwrap();
    assert!(source.strict && source.method);
    assert_eq!(references(code), vec![("helper".to_string(), 5, 9)]);
}

#[test]
fn custom_globals_are_asked_once_per_name() {
    let asked = std::cell::RefCell::new(Vec::new());
    let globals = |name: &str| {
        asked.borrow_mut().push(name.to_string());
        name == "known"
    };
    let found = unresolved_references("() => [known, known, unknown, unknown, undefined]", &globals).unwrap();
    assert_eq!(found.iter().map(|reference| reference.name.as_str()).collect::<Vec<_>>(), ["unknown", "undefined"]);
    assert_eq!(*asked.borrow(), ["known", "unknown", "undefined"]);
}

#[test]
fn code_the_parser_does_not_understand_reports_nothing() {
    // Valid or not, these are functions by their shape; the parser gives up on their bodies and reports nothing.
    for code in [
        "() => { unusual syntax here missing }",
        "() => { @decorator class A {} ; missing }",
        "() => { a b c missing }",
        "() => { if (a) /'/.test(missing); @x }",
        "(a, b) => { a b missing }",
        "x => x |> f(missing)",
    ] {
        assert!(function_source(code).is_ok(), "{code:?}");
        assert_eq!(names(code), Vec::<String>::new(), "{code:?}");
    }
}

#[test]
fn the_globals_are_sorted_and_searchable() {
    assert!(SANDBOX_GLOBALS.windows(2).all(|pair| pair[0] < pair[1]), "sorted and without duplicates");
    for name in SANDBOX_GLOBALS {
        assert!(is_sandbox_global(name));
    }
    for name in ["Object", "undefined", "globalThis", "User", "Data", "fetch", "console", "Float16Array", "Iterator"] {
        assert!(is_sandbox_global(name), "{name}");
    }
    for name in ["Intl", "require", "process", "window", "user", ""] {
        assert!(!is_sandbox_global(name), "{name}");
    }
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    let run = |code: String| {
        std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || (function_source(&code).map(|_| ()), unresolved_references(&code, &is_sandbox_global)))
            .unwrap()
            .join()
            .unwrap()
    };
    // Unbalanced.
    let (source, references) = run("(".repeat(100_000));
    assert!(source.is_err() && references.is_err());
    // Balanced but far too deep, of every kind of nesting.
    let deep = 100_000;
    let too_deep = [
        format!("() => {}x{}", "(".repeat(deep), ")".repeat(deep)),
        format!("() => {}x{}", "[".repeat(deep), "]".repeat(deep)),
        format!("() => {}1{}", "{a:".repeat(deep), "}".repeat(deep)),
        format!("() => {}x", "!".repeat(deep)),
        format!("() => {}x", "typeof ".repeat(deep)),
        format!("() => {}x", "x => ".repeat(deep)),
        format!("() => {{ {}x }}", "if (a) ".repeat(deep)),
        format!("() => {{ {}{} }}", "{".repeat(deep), "}".repeat(deep)),
        format!("() => {}x{}", "`${".repeat(deep), "}`".repeat(deep)),
        format!("() => {}x", "new ".repeat(deep)),
        format!("() => {}x", "a = ".repeat(deep)),
        format!("() => {}x", "a ? b : ".repeat(deep)),
        format!("() => {{ let {}x{} = 1 }}", "[".repeat(deep), "]".repeat(deep)),
        format!("() => {}x{}", "(a = ".repeat(deep), ")".repeat(deep)),
        format!("() => {}{}", "function () {".repeat(deep), "}".repeat(deep)),
        format!("() => {}{}", "class { m() {".repeat(deep), "} }".repeat(deep)),
    ];
    for code in too_deep {
        let (source, references) = run(code.clone());
        let error = source.expect_err(&code[..40]);
        assert!(error.message.contains("nested too deeply"), "{}: {error}", &code[..40]);
        assert!(references.is_err());
    }
    // Deep but within the limit, of the kinds that use the most stack per level.
    let fine = [
        format!("() => {}x{}", "(".repeat(150), ")".repeat(150)),
        format!("() => {}x{}", "(a = ".repeat(150), ")".repeat(150)),
        format!("() => {}x{}", "[".repeat(150), "]".repeat(150)),
        format!("() => {{ {}{} }}", "{".repeat(150), "}".repeat(150)),
        format!("() => {}x{}", "`${".repeat(150), "}`".repeat(150)),
        format!("() => {}{}", "function () {".repeat(100), "}".repeat(100)),
        format!("() => {}x", "a => ".repeat(200)),
    ];
    for code in fine {
        let (source, references) = run(code.clone());
        assert!(source.is_ok(), "{}", &code[..40]);
        assert!(references.is_ok(), "{}", &code[..40]);
    }
}

/// A deterministic xorshift generator, so the fuzz cases are the same on every run.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

const FRAGMENTS: &[&str] = &[
    "async",
    "(",
    ")",
    "=>",
    "{",
    "}",
    "[",
    "]",
    "job",
    "x",
    "function",
    "*",
    "'",
    "\"",
    "`",
    "${",
    "/",
    "/*",
    "*/",
    "//",
    "\n",
    "\r",
    " ",
    ";",
    ",",
    ".",
    "?.",
    "...",
    "=",
    "+",
    "typeof",
    "class",
    "extends",
    "new",
    "let",
    "const",
    "var",
    "return",
    "yield",
    "await",
    "if",
    "else",
    "for",
    "of",
    "in",
    "\\",
    "\\u0061",
    "#p",
    "1",
    "0x1F",
    "1_0n",
    ".5",
    "é",
    "😀",
    "\u{2028}",
    "get",
    "set",
    "static",
    "?",
    ":",
    "!",
    "'use strict'",
    "#!",
    "with",
    "try",
    "catch",
    "finally",
    "switch",
    "case",
    "default",
    "break",
    "label:",
    "import",
    "super",
    "this",
    "\u{feff}",
    "\0",
];

#[test]
fn garbage_never_panics() {
    let mut random = Xorshift(0x9E37_79B9_7F4A_7C15);
    let mut accepted = 0;
    for round in 0..6000 {
        let mut code = String::new();
        if round % 3 == 0 {
            code.push_str(["async (job) => {", "function f(a) {", "execute(job) {", "x => "][round % 4]);
        }
        for _ in 0..random.below(40) {
            code.push_str(FRAGMENTS[random.below(FRAGMENTS.len())]);
            if random.below(3) == 0 {
                code.push(' ');
            }
        }
        if round % 3 == 0 && random.below(2) == 0 {
            code.push('}');
        }
        if let Ok(source) = function_source(&code) {
            accepted += 1;
            assert_eq!(&code[source.offset..source.offset + source.body.len()], source.body);
        }
        let _ = unresolved_references(&code, &is_sandbox_global);
        // Every prefix (at character boundaries) of some cases: truncated input.
        if round % 50 == 0 {
            for (index, _) in code.char_indices() {
                let _ = function_source(&code[..index]);
                let _ = unresolved_references(&code[..index], &is_sandbox_global);
            }
        }
    }
    assert!(accepted > 0, "some random cases are functions");
}

#[test]
fn random_bytes_never_panic() {
    const ALPHABET: &[u8] = b"(){}[]'\"`$/\\*=>;,.\n\rab1#!? \xC3\xA9\xE2\x80\xA8\xF0\x9F";
    let mut random = Xorshift(0x2545_F491_4F6C_DD1D);
    for _ in 0..3000 {
        let length = random.below(64);
        let bytes: Vec<u8> = (0..length).map(|_| ALPHABET[random.below(ALPHABET.len())]).collect();
        let code = String::from_utf8_lossy(&bytes).into_owned();
        let _ = function_source(&code);
        let _ = unresolved_references(&code, &is_sandbox_global);
        let wrapped = format!("async (job) => {{ {code} }}");
        let _ = function_source(&wrapped);
        let _ = unresolved_references(&wrapped, &is_sandbox_global);
    }
}

#[test]
fn truncations_of_a_real_function_never_panic_and_the_whole_is_clean() {
    let code = r#"// Sends the daily digest.
async function execute(job) {
  'use strict';
  const { metadata: { channel = 'general', limit = 10 } = {}, ...rest } = job;
  const user = await job.user();
  const items = (await Data.list({ limit })).filter((item) => item.score > 0.5 && !/spam/i.test(item.title));
  let text = `Digest for ${user.name}:\n`;
  for (const [index, { title, url }] of items.entries()) {
    text += `${index + 1}. ${title} <${url}>\n`;
  }
  label: {
    if (typeof debugHook === 'function') break label;
  }
  try {
    await user.send([{ type: 'text', text }], { channel, ...rest });
  } catch {
    console.warn('send failed');
  } finally {
    setTimeout(() => {}, 0);
  }
  class Summary { #count = items.length; static of(list) { return new Summary(list) } get count() { return this.#count } }
  return { success: true, count: new Summary().count, ratio: items.length / limit / 2 };
}
"#;
    assert_eq!(names(code), Vec::<String>::new());
    for (index, _) in code.char_indices() {
        let _ = function_source(&code[..index]);
        let _ = unresolved_references(&code[..index], &is_sandbox_global);
    }
}

#[test]
fn a_large_function_is_analyzed_whole() {
    let mut code = String::from("async (job) => {\n");
    let mut index = 0;
    while code.len() < 100_000 {
        code.push_str(&format!(
            "  const value{index} = await job.step({index}, (x) => x / 2, `t${{job.id}}`, /re{index}/g, {{ a: [1, 2] }});\n"
        ));
        index += 1;
    }
    code.push_str("  return missing;\n}\n");
    let found = unresolved_references(&code, &is_sandbox_global).expect("a large function is analyzed");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].name, "missing");
}
