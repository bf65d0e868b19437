//! The few QuickJS C-API calls the worker makes, wrapped so that ownership of values is explicit.
//!
//! The worker drives QuickJS through its C API (`rquickjs::qjs`) rather than through rquickjs's safe layer, because
//! the runtime's whole state must live in the arena (see `arena.rs`): the safe layer keeps state of its own on the
//! Rust heap (class prototypes, closures of native functions, spawned futures) that a restore of the arena would
//! leave dangling. Natives here are plain C functions without captured state; what a native needs about the current
//! run is in the engine's thread-local run state.
//!
//! A `JSValue` returned by these helpers is owned by the caller, who frees it with [`free`] (or hands it to a call
//! that takes ownership, as `set` does).

use std::ffi::{c_int, CString};

use rquickjs::qjs::{self, JSContext, JSValue};

/// `undefined`.
pub(crate) const UNDEFINED: JSValue = qjs::JS_UNDEFINED;

/// A C function as QuickJS calls it.
pub(crate) type Native = unsafe extern "C" fn(*mut JSContext, JSValue, c_int, *mut JSValue) -> JSValue;

/// Releases one reference to `value`.
pub(crate) unsafe fn free(ctx: *mut JSContext, value: JSValue) {
    // SAFETY: the caller owns one reference to `value`.
    unsafe { qjs::JS_FreeValue(ctx, value) }
}

/// A new JS string with `text`.
pub(crate) unsafe fn string(ctx: *mut JSContext, text: &str) -> JSValue {
    // SAFETY: the pointer and length describe `text`; QuickJS copies it.
    unsafe { qjs::JS_NewStringLen(ctx, text.as_ptr().cast(), text.len() as qjs::size_t) }
}

/// `value` converted to a string as `String(value)` would, or `None` when that throws (the exception is cleared).
pub(crate) unsafe fn to_string(ctx: *mut JSContext, value: JSValue) -> Option<String> {
    let mut len: qjs::size_t = 0;
    // SAFETY: `value` is a live value of `ctx`; the C string is freed right after it is copied.
    unsafe {
        let text = qjs::JS_ToCStringLen2(ctx, &mut len, value, false);
        if text.is_null() {
            free(ctx, qjs::JS_GetException(ctx));
            return None;
        }
        let bytes = std::slice::from_raw_parts(text.cast::<u8>(), len as usize);
        let owned = String::from_utf8_lossy(bytes).into_owned();
        qjs::JS_FreeCString(ctx, text);
        Some(owned)
    }
}

/// The argument at `index`, or `undefined` (not owned: do not free it).
pub(crate) unsafe fn arg(argc: c_int, argv: *mut JSValue, index: usize) -> JSValue {
    if (index as c_int) < argc {
        // SAFETY: QuickJS passes `argc` valid values.
        unsafe { *argv.add(index) }
    } else {
        UNDEFINED
    }
}

/// The argument at `index` as a string (`String(argument)`), `None` when missing or when it throws.
pub(crate) unsafe fn string_arg(ctx: *mut JSContext, argc: c_int, argv: *mut JSValue, index: usize) -> Option<String> {
    if (index as c_int) >= argc {
        return None;
    }
    // SAFETY: as above.
    unsafe { to_string(ctx, arg(argc, argv, index)) }
}

/// The argument at `index` as a number (`NaN` when it is not one).
pub(crate) unsafe fn number_arg(ctx: *mut JSContext, argc: c_int, argv: *mut JSValue, index: usize) -> f64 {
    let mut number = f64::NAN;
    // SAFETY: as above; a failed conversion leaves an exception, which is cleared.
    unsafe {
        if qjs::JS_ToFloat64(ctx, &mut number, arg(argc, argv, index)) < 0 {
            free(ctx, qjs::JS_GetException(ctx));
            return f64::NAN;
        }
    }
    number
}

/// The argument at `index` as a boolean (JS truthiness).
pub(crate) unsafe fn bool_arg(ctx: *mut JSContext, argc: c_int, argv: *mut JSValue, index: usize) -> bool {
    // SAFETY: as above.
    unsafe { qjs::JS_ToBool(ctx, arg(argc, argv, index)) > 0 }
}

/// Throws a `TypeError` with `message` and answers the exception marker a native returns.
pub(crate) unsafe fn throw_type_error(ctx: *mut JSContext, message: &str) -> JSValue {
    let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
    // SAFETY: "%s" with one C string argument.
    unsafe { qjs::JS_ThrowTypeError(ctx, c"%s".as_ptr(), text.as_ptr()) }
}

/// Reads `object[name]` (owned).
pub(crate) unsafe fn get(ctx: *mut JSContext, object: JSValue, name: &std::ffi::CStr) -> JSValue {
    // SAFETY: `object` is a live value of `ctx`.
    unsafe { qjs::JS_GetPropertyStr(ctx, object, name.as_ptr()) }
}

/// Sets `object[name] = value`, taking ownership of `value`.
pub(crate) unsafe fn set(ctx: *mut JSContext, object: JSValue, name: &std::ffi::CStr, value: JSValue) -> bool {
    // SAFETY: `object` is a live value of `ctx`; the call consumes `value`.
    unsafe { qjs::JS_SetPropertyStr(ctx, object, name.as_ptr(), value) >= 0 }
}

/// A new native function object.
pub(crate) unsafe fn function(ctx: *mut JSContext, native: Native, name: &std::ffi::CStr, length: c_int) -> JSValue {
    // SAFETY: `native` has the signature QuickJS calls generic C functions with.
    unsafe { qjs::JS_NewCFunction2(ctx, Some(native), name.as_ptr(), length, qjs::JSCFunctionEnum_JS_CFUNC_generic, 0) }
}

/// Evaluates or compiles `source` (QuickJS wants it followed by a NUL byte, which this adds).
pub(crate) unsafe fn eval(ctx: *mut JSContext, source: &str, name: &std::ffi::CStr, flags: u32) -> JSValue {
    let mut text = Vec::with_capacity(source.len() + 1);
    text.extend_from_slice(source.as_bytes());
    text.push(0);
    // SAFETY: `text` is NUL-terminated and `len` excludes the NUL, as QuickJS requires.
    unsafe { qjs::JS_Eval(ctx, text.as_ptr().cast(), source.len() as qjs::size_t, name.as_ptr(), flags as c_int) }
}

/// Calls `function` with `this` = `undefined`; the arguments stay owned by the caller.
pub(crate) unsafe fn call(ctx: *mut JSContext, function: JSValue, args: &mut [JSValue]) -> JSValue {
    // SAFETY: `function` and `args` are live values of `ctx`.
    unsafe { qjs::JS_Call(ctx, function, UNDEFINED, args.len() as c_int, args.as_mut_ptr()) }
}

/// Whether `value` is the exception marker.
pub(crate) fn is_exception(value: JSValue) -> bool {
    // SAFETY: reads the tag only.
    unsafe { qjs::JS_IsException(value) }
}

/// Takes the pending exception and answers its text (`String(exception)`, then the stack when it is an Error).
pub(crate) unsafe fn take_exception(ctx: *mut JSContext) -> String {
    // SAFETY: `ctx` is live; the exception is freed after it is read.
    unsafe {
        let exception = qjs::JS_GetException(ctx);
        let mut text = to_string(ctx, exception).unwrap_or_else(|| "an exception that cannot be described".into());
        if qjs::JS_IsError(exception) {
            let stack = get(ctx, exception, c"stack");
            if qjs::JS_IsString(stack) {
                if let Some(stack) = to_string(ctx, stack) {
                    if !stack.trim().is_empty() {
                        text.push('\n');
                        text.push_str(stack.trim_end());
                    }
                }
            }
            free(ctx, stack);
        }
        free(ctx, exception);
        text
    }
}
