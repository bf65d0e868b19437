//! What a pre-defined job's file can import, and the natives that evaluate that file.
//!
//! Job code may import `lua-cli`, `lua-cli/skill` and `sundial`, three names for one small built-in module that
//! re-exports what the prelude and its library built (`LuaJob`, `defineJob` and the platform globals); `sundial:prelude` resolves to
//! the already-loaded prelude (harmless: it refuses to run twice). Any other specifier, relative paths included, is
//! refused while the import graph is linked, with an error whose `code` is `ERR_IMPORT_NOT_AVAILABLE`.

use rquickjs::context::EvalOptions;
use rquickjs::loader::{ImportAttributes, Loader, Resolver};
use rquickjs::module::Declared;
use rquickjs::{Ctx, Exception, Module, Object, Value};

/// The name a job file is compiled under; stack traces show it (`at execute (job.js:3:5)`).
pub(crate) const JOB_FILE_NAME: &str = "job.js";

/// The prelude's module name, which also names its frames in stack traces. Its parts are named
/// `sundial:prelude/<part>`, so their frames are hidden from stack traces like the prelude's.
pub(crate) const PRELUDE_NAME: &str = "sundial:prelude";

/// The specifiers of the built-in module, as in lua-cli's own imports and Sundial's documentation.
const BUILTIN_NAMES: &[&str] = &["lua-cli", "lua-cli/skill", "sundial"];

/// The built-in module: the prelude's `jobLibrary`, re-exported by name. Keep the names in step with the prelude.
const BUILTIN_SOURCE: &str = "import { jobLibrary } from 'sundial:prelude';\n\
     export const { LuaJob, defineJob, User, Data, Products, Jobs, env, fetch } = jobLibrary();\n";

/// The `code` of the error an unavailable import (or `require`) throws.
pub(crate) const IMPORT_REFUSED_CODE: &str = "ERR_IMPORT_NOT_AVAILABLE";

/// Normalizes import specifiers: built-in names and the prelude resolve to themselves, anything else is refused.
pub(crate) struct JobResolver;

impl Resolver for JobResolver {
    fn resolve<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        _base: &str,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<String> {
        if name == PRELUDE_NAME || BUILTIN_NAMES.contains(&name) {
            Ok(name.to_owned())
        } else {
            Err(refuse_import(ctx, name))
        }
    }
}

/// Compiles the built-in module under each of its names (the prelude is already loaded and never reaches here).
pub(crate) struct JobLoader;

impl Loader for JobLoader {
    fn load<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<Module<'js, Declared>> {
        if BUILTIN_NAMES.contains(&name) {
            Module::declare(ctx.clone(), name, BUILTIN_SOURCE)
        } else {
            Err(refuse_import(ctx, name))
        }
    }
}

/// Throws `Error('import of "fs" is not available in jobs')` with `code` set.
fn refuse_import(ctx: &Ctx<'_>, name: &str) -> rquickjs::Error {
    let quoted = serde_json::to_string(name).unwrap_or_else(|_| format!("\"{name}\""));
    let message = format!("import of {quoted} is not available in jobs");
    match Exception::from_message(ctx.clone(), &message) {
        Ok(exception) => match exception.as_object().set("code", IMPORT_REFUSED_CODE) {
            Ok(()) => exception.throw(),
            Err(e) => e,
        },
        Err(e) => e,
    }
}

/// The `evalModule(source)` native: compiles `source` as the job's ES module and starts evaluating it, its imports
/// linked through [`JobResolver`]. Returns `{namespace, evaluated}`, `evaluated` a promise that settles when the
/// module's top level (top-level `await` included) has run. Throws a compile or link error as is.
pub(crate) fn eval_module<'js>(ctx: Ctx<'js>, source: String) -> rquickjs::Result<Object<'js>> {
    let declared = Module::declare(ctx.clone(), JOB_FILE_NAME, source)?;
    let (module, evaluated) = declared.eval()?;
    let answer = Object::new(ctx)?;
    answer.set("namespace", module.namespace()?)?;
    answer.set("evaluated", evaluated)?;
    Ok(answer)
}

/// The `evalScript(source)` native: evaluates `source` as sloppy-mode global code named [`JOB_FILE_NAME`] and
/// returns its completion value. The prelude uses it for CommonJS files, wrapped in a function expression.
pub(crate) fn eval_script<'js>(ctx: Ctx<'js>, source: String) -> rquickjs::Result<Value<'js>> {
    let mut options = EvalOptions::default();
    options.global = true;
    options.strict = false;
    options.filename = Some(JOB_FILE_NAME.to_owned());
    ctx.eval_with_options(source, options)
}
