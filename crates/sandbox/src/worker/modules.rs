//! What a pre-defined job's file can import, and the natives that evaluate that file.
//!
//! Job code may import `lua-cli`, `lua-cli/skill` and `sundial`, three names for one small built-in module that
//! re-exports what the prelude and its library built (`LuaJob`, `defineJob` and the platform globals);
//! `sundial:prelude` resolves to the already-loaded prelude (harmless: it refuses to run twice). Any other
//! specifier, relative paths included, is refused while the import graph is linked, with an error whose `code` is
//! `ERR_IMPORT_NOT_AVAILABLE`.

use std::ffi::{c_char, c_int, c_void, CStr, CString};

use rquickjs::qjs::{self, JSContext, JSModuleDef, JSValue};

use super::js;

/// The name a job file is compiled under; stack traces show it (`at execute (job.js:3:5)`).
pub(crate) const JOB_FILE_NAME: &CStr = c"job.js";

/// The prelude's module name, which also names its frames in stack traces. Its parts are named
/// `sundial:prelude/<part>`, so their frames are hidden from stack traces like the prelude's.
pub(crate) const PRELUDE_NAME: &CStr = c"sundial:prelude";

/// The specifiers of the built-in module, as in lua-cli's own imports and Sundial's documentation.
const BUILTIN_NAMES: &[&str] = &["lua-cli", "lua-cli/skill", "sundial", "@sundial/jobs"];

/// The built-in module: the prelude's `jobLibrary`, re-exported by name. Keep the names in step with the prelude.
const BUILTIN_SOURCE: &str = "import { jobLibrary } from 'sundial:prelude';\n\
     export const { LuaJob, defineJob, User, Data, Products, Jobs, env, fetch } = jobLibrary();\n";

/// The `code` of the error an unavailable import (or `require`) throws.
pub(crate) const IMPORT_REFUSED_CODE: &str = "ERR_IMPORT_NOT_AVAILABLE";

/// Installs the resolver and loader of job imports on `runtime`.
pub(crate) unsafe fn install(runtime: *mut qjs::JSRuntime) {
    // SAFETY: both callbacks have the signatures QuickJS calls them with and keep no state.
    unsafe { qjs::JS_SetModuleLoaderFunc(runtime, Some(normalize), Some(load), std::ptr::null_mut()) }
}

/// Built-in names and the prelude resolve to themselves; anything else is refused.
unsafe extern "C" fn normalize(
    ctx: *mut JSContext,
    _base: *const c_char,
    name: *const c_char,
    _opaque: *mut c_void,
) -> *mut c_char {
    // SAFETY: QuickJS passes a NUL-terminated name.
    let requested = unsafe { CStr::from_ptr(name) };
    let text = requested.to_string_lossy();
    if requested == PRELUDE_NAME || BUILTIN_NAMES.contains(&text.as_ref()) {
        // SAFETY: QuickJS frees the answer with `js_free`, so it is allocated with `js_strdup`.
        return unsafe { qjs::js_strdup(ctx, name) };
    }
    // SAFETY: `ctx` is live; a null answer with an exception pending fails the import.
    unsafe { refuse_import(ctx, &text) };
    std::ptr::null_mut()
}

/// Compiles the built-in module under each of its names (the prelude is already loaded and never reaches here).
unsafe extern "C" fn load(ctx: *mut JSContext, name: *const c_char, _opaque: *mut c_void) -> *mut JSModuleDef {
    // SAFETY: QuickJS passes a NUL-terminated name.
    let requested = unsafe { CStr::from_ptr(name) };
    if !BUILTIN_NAMES.contains(&requested.to_string_lossy().as_ref()) {
        // SAFETY: as in `normalize`.
        unsafe { refuse_import(ctx, &requested.to_string_lossy()) };
        return std::ptr::null_mut();
    }
    let flags = qjs::JS_EVAL_TYPE_MODULE | qjs::JS_EVAL_FLAG_COMPILE_ONLY;
    // SAFETY: compiling our own source; a compiled module value points at its definition, which the runtime keeps.
    unsafe {
        let compiled = js::eval(ctx, BUILTIN_SOURCE, requested, flags);
        if js::is_exception(compiled) {
            return std::ptr::null_mut();
        }
        let module = compiled.u.ptr.cast::<JSModuleDef>();
        js::free(ctx, compiled);
        module
    }
}

/// Throws `Error('import of "fs" is not available in jobs')` with `code` set.
unsafe fn refuse_import(ctx: *mut JSContext, name: &str) {
    let quoted = serde_json::to_string(name).unwrap_or_else(|_| format!("\"{name}\""));
    let message = format!("import of {quoted} is not available in jobs");
    // SAFETY: a new Error object gets two own properties, then becomes the pending exception.
    unsafe {
        let error = qjs::JS_NewError(ctx);
        js::set(ctx, error, c"message", js::string(ctx, &message));
        js::set(ctx, error, c"code", js::string(ctx, IMPORT_REFUSED_CODE));
        qjs::JS_Throw(ctx, error);
    }
}

/// Compiles `source` as a module named `name` and evaluates it; see [`evaluate`].
unsafe fn evaluate_module(ctx: *mut JSContext, source: &str, name: &CStr) -> Option<(*mut JSModuleDef, JSValue)> {
    let flags = qjs::JS_EVAL_TYPE_MODULE | qjs::JS_EVAL_FLAG_COMPILE_ONLY;
    // SAFETY: `ctx` is live.
    unsafe { evaluate(ctx, js::eval(ctx, source, name, flags)) }
}

/// Links and starts evaluating a compiled module (consuming it); answers the module and the promise of its top
/// level (top-level `await` included). `None` with the exception pending when it did not compile or link.
unsafe fn evaluate(ctx: *mut JSContext, compiled: JSValue) -> Option<(*mut JSModuleDef, JSValue)> {
    if js::is_exception(compiled) {
        return None;
    }
    // SAFETY: a compiled module value points at its definition, which the runtime keeps.
    unsafe {
        let module = compiled.u.ptr.cast::<JSModuleDef>();
        let evaluated = qjs::JS_EvalFunction(ctx, compiled);
        (!js::is_exception(evaluated)).then_some((module, evaluated))
    }
}

/// The source text a native that evaluates code takes as its first argument, or the `TypeError` it throws when
/// there is none (`<native>: the source must be a string`).
unsafe fn source_arg(ctx: *mut JSContext, argc: c_int, argv: *mut JSValue, native: &str) -> Result<String, JSValue> {
    // SAFETY: the caller's arguments, as QuickJS passed them to the native.
    unsafe {
        js::string_arg(ctx, argc, argv, 0)
            .ok_or_else(|| js::throw_type_error(ctx, &format!("{native}: the source must be a string")))
    }
}

/// The `evalModule(source)` native: compiles `source` as the job's ES module and starts evaluating it, its imports
/// linked through the resolver above. Returns `{namespace, evaluated}`, `evaluated` a promise that settles when the
/// module's top level (top-level `await` included) has run. Throws a compile or link error as is.
pub(crate) unsafe extern "C" fn eval_module(
    ctx: *mut JSContext,
    _this: JSValue,
    argc: c_int,
    argv: *mut JSValue,
) -> JSValue {
    // SAFETY: natives are called by QuickJS with valid arguments; every value made here is owned and handed on.
    unsafe {
        let source = match source_arg(ctx, argc, argv, "evalModule") {
            Ok(source) => source,
            Err(thrown) => return thrown,
        };
        let Some((module, evaluated)) = evaluate_module(ctx, &source, JOB_FILE_NAME) else {
            return qjs::JS_EXCEPTION;
        };
        let namespace = qjs::JS_GetModuleNamespace(ctx, module);
        if js::is_exception(namespace) {
            js::free(ctx, evaluated);
            return namespace;
        }
        let answer = qjs::JS_NewObject(ctx);
        js::set(ctx, answer, c"namespace", namespace);
        js::set(ctx, answer, c"evaluated", evaluated);
        answer
    }
}

/// The `evalScript(source)` native: evaluates `source` as sloppy-mode global code named [`JOB_FILE_NAME`] and
/// returns its completion value. The prelude uses it for CommonJS files, wrapped in a function expression.
pub(crate) unsafe extern "C" fn eval_script(
    ctx: *mut JSContext,
    _this: JSValue,
    argc: c_int,
    argv: *mut JSValue,
) -> JSValue {
    // SAFETY: as above.
    unsafe {
        let source = match source_arg(ctx, argc, argv, "evalScript") {
            Ok(source) => source,
            Err(thrown) => return thrown,
        };
        js::eval(ctx, &source, JOB_FILE_NAME, qjs::JS_EVAL_TYPE_GLOBAL)
    }
}

/// The name scripts evaluated by `evalFunction` carry in stack traces: the one indirect `eval` gives them.
const EVAL_NAME: &CStr = c"<input>";

/// Job functions' bytecode kept by the worker, by the exact text evaluated: most runs repeat a function the worker
/// ran before (every run of a job, and the many jobs made from one piece of code), and reading bytecode is several
/// times cheaper than parsing. It lives outside the arena (plain Rust memory), so the restore after each run keeps
/// it; it holds bytecode only, never a value of a run. Bounded: past either limit it starts over.
struct BytecodeCache {
    entries: std::collections::HashMap<String, Box<[u8]>>,
    bytes: usize,
}

const BYTECODE_CACHE_ENTRIES: usize = 256;
const BYTECODE_CACHE_BYTES: usize = 8 << 20;

thread_local! {
    static BYTECODE: std::cell::RefCell<BytecodeCache> =
        std::cell::RefCell::new(BytecodeCache { entries: std::collections::HashMap::new(), bytes: 0 });
}

/// The `evalFunction(source)` native: evaluates `source` as a global script and answers its completion value, as
/// indirect `eval` does (same scope, same strictness rules, same name in stack traces), from bytecode kept for the
/// same text by an earlier run of this worker when there is one. Throws a compile error as is (nothing is kept).
pub(crate) unsafe extern "C" fn eval_function(
    ctx: *mut JSContext,
    _this: JSValue,
    argc: c_int,
    argv: *mut JSValue,
) -> JSValue {
    // SAFETY: as above; bytecode read here was written by this worker from this very text.
    unsafe {
        let source = match source_arg(ctx, argc, argv, "evalFunction") {
            Ok(source) => source,
            Err(thrown) => return thrown,
        };
        let compiled = BYTECODE.with(|cache| {
            cache.borrow().entries.get(&source).map(|bytecode| {
                qjs::JS_ReadObject(
                    ctx,
                    bytecode.as_ptr(),
                    bytecode.len() as qjs::size_t,
                    qjs::JS_READ_OBJ_BYTECODE as c_int,
                )
            })
        });
        let compiled = match compiled {
            Some(read) if !js::is_exception(read) => read,
            _ => {
                let compiled =
                    js::eval(ctx, &source, EVAL_NAME, qjs::JS_EVAL_TYPE_GLOBAL | qjs::JS_EVAL_FLAG_COMPILE_ONLY);
                if js::is_exception(compiled) {
                    return compiled;
                }
                keep_bytecode(ctx, source, compiled);
                compiled
            }
        };
        qjs::JS_EvalFunction(ctx, compiled)
    }
}

/// Writes a compiled script's bytecode into the cache (a script that cannot be written is simply not kept).
unsafe fn keep_bytecode(ctx: *mut JSContext, source: String, compiled: JSValue) {
    let mut len: qjs::size_t = 0;
    // SAFETY: `compiled` is a live compiled script of `ctx`; the written buffer is copied, then freed.
    let bytecode = unsafe {
        let bytes = qjs::JS_WriteObject(ctx, &mut len, compiled, qjs::JS_WRITE_OBJ_BYTECODE as c_int);
        if bytes.is_null() {
            js::free(ctx, qjs::JS_GetException(ctx));
            return;
        }
        let copy: Box<[u8]> = std::slice::from_raw_parts(bytes, len as usize).into();
        qjs::js_free(ctx, bytes.cast());
        copy
    };
    BYTECODE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.entries.len() >= BYTECODE_CACHE_ENTRIES || cache.bytes + bytecode.len() > BYTECODE_CACHE_BYTES {
            cache.entries.clear();
            cache.bytes = 0;
        }
        cache.bytes += bytecode.len() + source.len();
        cache.entries.insert(source, bytecode);
    });
}

/// Compiles one of the prelude's modules (`name` is its module name) to bytecode, without its source text, in a
/// runtime of its own: the parser's garbage never reaches the worker's arena, so the snapshot holds the world only.
pub(crate) fn compile(name: &str, source: &str) -> Result<Vec<u8>, String> {
    let module_name = CString::new(name).map_err(|e| e.to_string())?;
    let flags = qjs::JS_EVAL_TYPE_MODULE | qjs::JS_EVAL_FLAG_COMPILE_ONLY;
    // SAFETY: a private runtime and context, freed before returning; the written buffer is copied, then freed.
    unsafe {
        let runtime = qjs::JS_NewRuntime();
        if runtime.is_null() {
            return Err("cannot create a JS runtime".into());
        }
        let ctx = qjs::JS_NewContext(runtime);
        let answer = if ctx.is_null() {
            Err("cannot create a JS context".into())
        } else {
            let compiled = js::eval(ctx, source, &module_name, flags);
            let answer = if js::is_exception(compiled) {
                Err(format!("{name} does not compile: {}", js::take_exception(ctx)))
            } else {
                let mut len: qjs::size_t = 0;
                let write = qjs::JS_WRITE_OBJ_BYTECODE | qjs::JS_WRITE_OBJ_STRIP_SOURCE;
                let bytes = qjs::JS_WriteObject(ctx, &mut len, compiled, write as c_int);
                js::free(ctx, compiled);
                if bytes.is_null() {
                    Err(format!("{name} cannot be written as bytecode: {}", js::take_exception(ctx)))
                } else {
                    let copy = std::slice::from_raw_parts(bytes, len as usize).to_vec();
                    qjs::js_free(ctx, bytes.cast());
                    Ok(copy)
                }
            };
            qjs::JS_FreeContext(ctx);
            answer
        };
        qjs::JS_FreeRuntime(runtime);
        answer
    }
}

/// Loads one of the prelude's modules from its bytecode (see [`compile`]), evaluates it and answers its default
/// export.
pub(crate) unsafe fn load_default(ctx: *mut JSContext, name: &str, bytecode: &[u8]) -> Result<JSValue, String> {
    // SAFETY: the bytecode was written by `compile` in this very process, from our own source.
    unsafe {
        let read = qjs::JS_ReadObject(
            ctx,
            bytecode.as_ptr(),
            bytecode.len() as qjs::size_t,
            qjs::JS_READ_OBJ_BYTECODE as c_int,
        );
        let Some((module, evaluated)) = evaluate(ctx, read) else {
            return Err(format!("{name} does not load: {}", js::take_exception(ctx)));
        };
        js::free(ctx, evaluated);
        let namespace = qjs::JS_GetModuleNamespace(ctx, module);
        if js::is_exception(namespace) {
            return Err(format!("{name} has no namespace: {}", js::take_exception(ctx)));
        }
        let default = js::get(ctx, namespace, c"default");
        js::free(ctx, namespace);
        Ok(default)
    }
}
