// sundial:prelude — builds the job's world once per worker, and answers `start`, which sets one run up in it and
// answers the function that calls the job's function and reports how it ended.
//
// An ES module evaluated once per worker, before the worker takes its snapshot of the world (see worker/arena.rs):
// every run starts from that snapshot, so nothing a run does survives it, and nothing here may depend on one run.
// What differs from run to run (the code, the job, the agent's variables, the form of the code, the time origin)
// is passed to `start` and kept in `run`. Every intrinsic the prelude relies on for serialization is captured here,
// before any job code exists, and cannot be replaced by the job: host-call arguments are copied through own
// enumerable properties into null-prototype objects and stringified with the captured JSON.stringify, so neither a
// replaced JSON.stringify nor a polluted Object.prototype.toJSON changes what the host receives. The natives (log,
// host, hostSync, sleep, now, random, mathRandom, settle, evalModule, evalScript, evalFunction, loadPart) live only
// in this closure; job code cannot reach them.
//
// Host calls resolve with the host's JSON answer; a host error rejects with `new Error(message)`. The methods and
// their arguments (the `Host` trait's contract):
//   job.user {jobId} · user.send {userId, messages} · user.update {userId, data} · user.patch {userId, set, unset}
//   · User.get {userId}
//   job.data {jobId} → Job · job.version {jobId} → the version the run runs (both read when job code first asks)
//   job.updateMetadata {jobId, patch} → {metadata} · job.trigger {jobId, versionId?} · job.delete {jobId}
//   job.activate / job.deactivate {jobId} → Job · Jobs.create {config, code} → Job · Jobs.getJob {jobId} → Job
//   Jobs.getAll {includeDynamic} → [Job] · Data.<method> / Products.<method> / fetch {args: [...]}
//
// `code` is a function's source (form 'function'), or a whole job file: an ES module ('esm') or a CommonJS script
// ('cjs'), whose job definition is read and whose `execute` is run — or, when describing, whose definition is
// answered as JSON without running `execute`.
//
// Job code can reach this module with `import('sundial:prelude')`; only the sandbox's own first call may run it, and
// `start` is never exported. `jobLibrary` is what the built-in `lua-cli` module re-exports (see worker/modules.rs):
// nothing job code lacks.
let started = false;
let loadLibrary = null;
export function jobLibrary() {
  return loadLibrary === null ? null : loadLibrary().jobLibrary;
}

export default function prelude(natives, settings) {
  if (started) throw new TypeError('the sandbox prelude has already run');
  started = true;

  // ---- Intrinsics, captured before job code exists ----
  const globalObject = globalThis;
  const ReflectApply = Reflect.apply;
  const uncurry = (fn) => (self, ...args) => ReflectApply(fn, self, args);
  const ObjectKeys = Object.keys;
  const ObjectCreate = Object.create;
  const ObjectDefineProperty = Object.defineProperty;
  const ObjectGetOwnPropertyDescriptor = Object.getOwnPropertyDescriptor;
  const ObjectSetPrototypeOf = Object.setPrototypeOf;
  const ObjectFreeze = Object.freeze;
  const ObjectHasOwn = Object.hasOwn;
  const ArrayIsArray = Array.isArray;
  const JSONStringify = JSON.stringify;
  const JSONParse = JSON.parse;
  const NumberIsFinite = Number.isFinite;
  const NumberCtor = Number;
  const StringCtor = String;
  const MathFloor = Math.floor;
  const MathMin = Math.min;
  const ErrorCtor = Error;
  const TypeErrorCtor = TypeError;
  const RangeErrorCtor = RangeError;
  const SyntaxErrorCtor = SyntaxError;
  const ErrorIsError = typeof Error.isError === 'function' ? Error.isError : null;
  const PromiseCtor = Promise;
  const PromiseThen = uncurry(Promise.prototype.then);
  const promiseResolve = Promise.resolve;
  const promiseReject = Promise.reject;
  const PromiseResolve = (value) => ReflectApply(promiseResolve, PromiseCtor, [value]);
  const PromiseReject = (reason) => ReflectApply(promiseReject, PromiseCtor, [reason]);
  const StringSlice = uncurry(String.prototype.slice);
  const StringCharCodeAt = uncurry(String.prototype.charCodeAt);
  const StringIndexOf = uncurry(String.prototype.indexOf);
  const StringToWellFormed = typeof String.prototype.toWellFormed === 'function'
    ? uncurry(String.prototype.toWellFormed) : null;
  const StringFromCharCode = String.fromCharCode;
  const FunctionToString = uncurry(Function.prototype.toString);
  const DateGetTime = uncurry(Date.prototype.getTime);
  const DateToISOString = uncurry(Date.prototype.toISOString);
  const DateNow = Date.now;
  const NumberValueOf = uncurry(Number.prototype.valueOf);
  const StringValueOf = uncurry(String.prototype.valueOf);
  const BooleanValueOf = uncurry(Boolean.prototype.valueOf);
  const SymbolToString = uncurry(Symbol.prototype.toString);
  const mapSizeGetter = Object.getOwnPropertyDescriptor(Map.prototype, 'size').get;
  const setSizeGetter = Object.getOwnPropertyDescriptor(Set.prototype, 'size').get;
  const MapEntries = uncurry(Map.prototype.entries);
  const SetValues = uncurry(Set.prototype.values);
  const Uint8ArrayCtor = Uint8Array;
  const ArrayBufferCtor = ArrayBuffer;
  const ArrayBufferIsView = ArrayBuffer.isView;
  const WeakMapCtor = WeakMap;
  const WeakMapGet = uncurry(WeakMap.prototype.get);
  const WeakMapSet = uncurry(WeakMap.prototype.set);
  const WeakSetCtor = WeakSet;
  const WeakSetAdd = uncurry(WeakSet.prototype.add);
  const WeakSetHas = uncurry(WeakSet.prototype.has);
  const RegExpExec = uncurry(RegExp.prototype.exec);
  const StringTrim = uncurry(String.prototype.trim);
  const StringLowerCase = uncurry(String.prototype.toLowerCase);

  const nLog = natives.log;
  const nHost = natives.host;
  const nHostSync = natives.hostSync;
  const nSleep = natives.sleep;
  const nNow = natives.now;
  const nRandom = natives.random;
  const nSettle = natives.settle;
  const nEvalModule = natives.evalModule;
  const nEvalScript = natives.evalScript;
  const nEvalFunction = natives.evalFunction;
  const nLoadPart = natives.loadPart;
  const nMathRandom = natives.mathRandom;
  const IMPORT_REFUSED = settings.importRefusedCode;
  const maxResultBytes = settings.maxResultBytes;
  const maxLogLineBytes = settings.maxLogLineBytes;
  const MAX_ERROR_CHARS = settings.maxErrorBytes;
  // What differs from run to run, set by `start`.
  const run = { form: 'function', describing: false, timeOrigin: 0, env: ObjectCreate(null) };

  const newList = () => ObjectSetPrototypeOf([], null);
  const wellFormed = (text) => {
    text = StringCtor(text);
    return StringToWellFormed !== null ? StringToWellFormed(text) : text;
  };

  // ---- Values: brand checks ----
  function dateTime(value) {
    try {
      return DateGetTime(value);
    } catch {
      return undefined;
    }
  }
  const NOT_BOXED = {};
  function unbox(value) {
    try { return NumberValueOf(value); } catch { /* not a Number object */ }
    try { return StringValueOf(value); } catch { /* not a String object */ }
    try { return BooleanValueOf(value); } catch { /* not a Boolean object */ }
    return NOT_BOXED;
  }
  function mapSize(value) {
    try { return ReflectApply(mapSizeGetter, value, []); } catch { return -1; }
  }
  function setSize(value) {
    try { return ReflectApply(setSizeGetter, value, []); } catch { return -1; }
  }
  function isError(value) {
    if (value === null || typeof value !== 'object') return false;
    if (ErrorIsError !== null) return ErrorIsError(value);
    return value instanceof ErrorCtor;
  }

  // ---- Host-call serialization: own enumerable properties, captured JSON ----
  function plain(value, stack) {
    if (value === null) return null;
    switch (typeof value) {
      case 'string':
      case 'boolean':
        return value;
      case 'number':
        return NumberIsFinite(value) ? value : null;
      case 'bigint':
        throw new TypeErrorCtor('a BigInt cannot be sent to the host');
      case 'undefined':
      case 'function':
      case 'symbol':
        return undefined;
    }
    const time = dateTime(value);
    if (time !== undefined) return NumberIsFinite(time) ? DateToISOString(value) : null;
    if (isURL(value)) return value.href;
    const boxed = unbox(value);
    if (boxed !== NOT_BOXED) return plain(boxed, stack);
    for (let i = 0; i < stack.length; i++) {
      if (stack[i] === value) throw new TypeErrorCtor('a cyclic value cannot be sent to the host');
    }
    stack[stack.length] = value;
    let out;
    if (ArrayIsArray(value)) {
      out = newList();
      const length = value.length;
      for (let i = 0; i < length; i++) {
        const item = plain(value[i], stack);
        out[i] = item === undefined ? null : item;
      }
    } else {
      out = ObjectCreate(null);
      const keys = ObjectKeys(value);
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i];
        const item = plain(value[key], stack);
        if (item !== undefined) out[key] = item;
      }
    }
    stack.length = stack.length - 1;
    return out;
  }

  function hostCall(method, args) {
    let text;
    try {
      text = wellFormedJSON(JSONStringify(plain(args, newList())));
    } catch (error) {
      return PromiseReject(error);
    }
    return PromiseThen(nHost(method, wellFormed(text)), (reply) => {
      if (StringCharCodeAt(reply, 0) === 111 /* o */) return JSONParse(StringSlice(reply, 1));
      throw new ErrorCtor(StringSlice(reply, 1));
    });
  }

  // ---- Error text and console formatting ----
  function describeError(error) {
    try {
      if (isError(error)) {
        let name = error.name;
        const message = error.message;
        const stack = error.stack;
        name = name === undefined ? 'Error' : StringCtor(name);
        let text = message === undefined || message === '' ? name : name + ': ' + StringCtor(message);
        if (typeof stack === 'string' && stack !== '') {
          let frames = stack;
          // Some engines start the stack with the error's own first line; do not repeat it.
          if (StringSlice(frames, 0, text.length) === text) frames = StringSlice(frames, text.length);
          while (frames !== '' && (StringCharCodeAt(frames, 0) === 10 || StringCharCodeAt(frames, 0) === 13)) {
            frames = StringSlice(frames, 1);
          }
          while (frames !== '' && StringCharCodeAt(frames, frames.length - 1) === 10) {
            frames = StringSlice(frames, 0, frames.length - 1);
          }
          frames = withoutPreludeFrames(frames);
          if (frames !== '') text += '\n' + frames;
        }
        return text;
      }
      if (typeof error === 'string') return error;
      const json = JSONStringify(error);
      return json === undefined ? StringCtor(error) : json;
    } catch {
      try {
        return StringCtor(error);
      } catch {
        return 'an exception that cannot be described';
      }
    }
  }
  // Stack lines of this prelude say nothing about the job, nor do the native calls it made (`at apply (native)`).
  function withoutPreludeFrames(frames) {
    let out = '';
    let natives = '';
    let start = 0;
    for (let i = 0; i <= frames.length; i++) {
      if (i === frames.length || StringCharCodeAt(frames, i) === 10) {
        const line = StringSlice(frames, start, i);
        if (StringIndexOf(line, '(sundial:prelude') >= 0) {
          natives = '';
        } else if (StringIndexOf(line, '(native)') >= 0) {
          natives += (out === '' && natives === '' ? '' : '\n') + line;
        } else {
          out += natives + (out === '' && natives === '' ? '' : '\n') + line;
          natives = '';
        }
        start = i + 1;
      }
    }
    return out + natives;
  }
  // JSON.stringify writes a lone surrogate as a `\udXXX` escape, which strict JSON parsers refuse: make it U+FFFD.
  const LONE_SURROGATE_ESCAPE = /\\(u[dD][89a-fA-F][0-9a-fA-F]{2}|[^])/g;
  const RegExpReplace = uncurry(RegExp.prototype[Symbol.replace]);
  function wellFormedJSON(text) {
    if (typeof text !== 'string' || (StringIndexOf(text, '\\ud') < 0 && StringIndexOf(text, '\\uD') < 0)) return text;
    return RegExpReplace(LONE_SURROGATE_ESCAPE, text, (escape, body) => (body.length === 5 ? '\\ufffd' : escape));
  }
  function firstLine(text) {
    for (let i = 0; i < text.length; i++) {
      if (StringCharCodeAt(text, i) === 10) return StringSlice(text, 0, i);
    }
    return text;
  }

  // The library's URL class, once the library is loaded (before that, no URL can exist).
  let URLImpl = null;
  function isURL(value) {
    return URLImpl !== null && value instanceof URLImpl;
  }

  // ---- The job's API ----
  function defineData(target, source) {
    const keys = ObjectKeys(source);
    for (let i = 0; i < keys.length; i++) {
      ObjectDefineProperty(target, keys[i], {
        value: source[keys[i]], writable: true, enumerable: true, configurable: true,
      });
    }
    return target;
  }

  // A user as lua-cli's UserDataInstance presents one: the data fields as properties (and as `data`), plus
  // `_luaProfile`, and methods that write through the host.
  const USER_RESERVED = ['userId', '_luaProfile'];
  class UserInstance {
    get data() {
      const fields = {};
      const keys = ObjectKeys(this);
      for (let i = 0; i < keys.length; i++) {
        if (USER_RESERVED.indexOf(keys[i]) < 0) fields[keys[i]] = this[keys[i]];
      }
      return fields;
    }
    async send(messages) {
      await hostCall('user.send', { userId: this.userId, messages });
      return true;
    }
    async update(data) {
      return makeUser(await hostCall('user.update', { userId: this.userId, data }));
    }
    async patch(change) {
      const set = change && typeof change === 'object' && change.set ? change.set : {};
      const unset = change && typeof change === 'object' && ArrayIsArray(change.unset) ? change.unset : [];
      return makeUser(await hostCall('user.patch', { userId: this.userId, set, unset }));
    }
    async unset(...keys) {
      return this.patch({ unset: keys });
    }
    async clear() {
      return makeUser(await hostCall('user.update', { userId: this.userId, data: {} }));
    }
    async save() {
      return makeUser(await hostCall('user.update', { userId: this.userId, data: this.data }));
    }
  }
  function makeUser(json) {
    if (json === null || json === undefined) return null;
    if (typeof json !== 'object') return json;
    return defineData(new UserInstance(), json);
  }

  class JobInstance {
    constructor(id, name, metadata, activeVersion, data) {
      this.id = id;
      this.name = name;
      this.metadata = metadata === undefined || metadata === null ? {} : metadata;
      this.activeVersion = activeVersion === undefined ? null : activeVersion;
      this.data = data === undefined ? null : data;
    }
    async user() {
      const user = makeUser(await hostCall('job.user', { jobId: this.id }));
      if (user === null) throw new ErrorCtor('job ' + this.name + ' has no user context; use User.get(userId)');
      return user;
    }
    async updateMetadata(patch) {
      const answer = await hostCall('job.updateMetadata', { jobId: this.id, patch });
      this.metadata = answer !== null && typeof answer === 'object' && ObjectHasOwn(answer, 'metadata')
        ? answer.metadata : answer;
      return this.metadata;
    }
    async trigger(versionId) {
      const args = { jobId: this.id };
      if (versionId !== undefined && versionId !== null) args.versionId = versionId;
      return hostCall('job.trigger', args);
    }
    async delete() {
      return hostCall('job.delete', { jobId: this.id });
    }
    async activate() {
      return this.#refresh(await hostCall('job.activate', { jobId: this.id }));
    }
    async deactivate() {
      return this.#refresh(await hostCall('job.deactivate', { jobId: this.id }));
    }
    #refresh(data) {
      if (data !== null && typeof data === 'object') {
        this.data = data;
        if (ObjectHasOwn(data, 'activeVersion')) this.activeVersion = data.activeVersion;
      }
      return this;
    }
  }
  function jobFromData(data) {
    if (data === null || typeof data !== 'object') return data;
    return new JobInstance(data.id, data.name, data.metadata, data.activeVersion, data);
  }

  const User = {
    async get(userId) {
      return makeUser(await hostCall('User.get', { userId }));
    },
  };
  const Jobs = {
    async create(config) {
      if (config === null || typeof config !== 'object') throw new TypeErrorCtor('Jobs.create: config must be an object');
      const execute = config.execute;
      if (typeof execute !== 'function') throw new TypeErrorCtor('Jobs.create: config.execute must be a function');
      const rest = ObjectCreate(null);
      const keys = ObjectKeys(config);
      for (let i = 0; i < keys.length; i++) if (keys[i] !== 'execute') rest[keys[i]] = config[keys[i]];
      return jobFromData(await hostCall('Jobs.create', { config: rest, code: FunctionToString(execute) }));
    },
    async getJob(jobId) {
      return jobFromData(await hostCall('Jobs.getJob', { jobId }));
    },
    async getAll(options) {
      const includeDynamic = !!(options !== null && typeof options === 'object' && options.includeDynamic);
      const answer = await hostCall('Jobs.getAll', { includeDynamic });
      const list = ArrayIsArray(answer) ? answer
        : answer !== null && typeof answer === 'object' && ArrayIsArray(answer.jobs) ? answer.jobs : [];
      const out = [];
      for (let i = 0; i < list.length; i++) out[i] = jobFromData(list[i]);
      return out;
    },
  };

  function env(name) {
    const key = StringCtor(name);
    return ObjectHasOwn(run.env, key) ? run.env[key] : undefined;
  }

  // ---- Globals: the job's API here, `console` with the timers (console.js) and the library (library.js) ----
  // Both parts are loaded into the world here, before the snapshot, so no run pays for loading them.
  const PARTS = {
    console: ['console', 'setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'queueMicrotask'],
    library: [
      'crypto', 'URL', 'URLSearchParams', 'TextEncoder', 'TextDecoder', 'DOMException', 'atob', 'btoa',
      'structuredClone', 'performance', 'Data', 'Products', 'fetch', 'Headers', 'Response',
    ],
  };
  const loadedParts = ObjectCreate(null);
  function load(part) {
    let exports = loadedParts[part];
    if (exports === undefined) {
      exports = nLoadPart(part)({
        ReflectApply, uncurry, ObjectKeys, ObjectCreate, ObjectDefineProperty, ObjectFreeze, ObjectHasOwn,
        ArrayIsArray, JSONStringify, JSONParse, NumberIsFinite, NumberCtor, StringCtor, MathFloor, MathMin,
        ErrorCtor, TypeErrorCtor, RangeErrorCtor, PromiseThen, PromiseResolve, PromiseReject, StringSlice,
        StringCharCodeAt, StringFromCharCode, DateToISOString, SymbolToString, MapEntries, SetValues,
        Uint8ArrayCtor, ArrayBufferCtor, ArrayBufferIsView, WeakMapCtor, WeakMapGet, WeakMapSet, RegExpExec,
        StringTrim, StringLowerCase, nLog, nSleep, nNow, nRandom, nEvalModule, nEvalScript, run, IMPORT_REFUSED,
        maxLogLineBytes, newList, wellFormed, dateTime, NOT_BOXED, unbox, mapSize, setSize, isError, plain,
        hostCall, describeError, firstLine, User, Jobs, env, sandboxError, isURL
      });
      loadedParts[part] = exports;
      if (part === 'library') URLImpl = exports.URL;
    }
    return exports;
  }
  const lib = () => load('library');
  loadLibrary = lib;
  function defineGlobal(name, value) {
    ObjectDefineProperty(globalObject, name, { value, writable: true, configurable: true, enumerable: false });
  }
  defineGlobal('env', env);
  defineGlobal('User', User);
  defineGlobal('Jobs', Jobs);
  const partNames = ObjectKeys(PARTS);
  for (let p = 0; p < partNames.length; p++) {
    const exports = load(partNames[p]);
    const names = PARTS[partNames[p]];
    for (let i = 0; i < names.length; i++) defineGlobal(names[i], exports[names[i]]);
  }
  // Math.random draws from a generator the worker seeds anew for every run (the engine's own would repeat the
  // snapshot's sequence in every run).
  ObjectDefineProperty(Math, 'random', { value: nMathRandom, writable: true, configurable: true, enumerable: false });

  // Errors of the sandbox itself (a definition that is not a job, a syntax error, an unavailable import) are reported
  // as their message alone, without a stack that would only show the prelude.
  const plainErrors = new WeakSetCtor();
  function sandboxError(message) {
    const error = new ErrorCtor(message);
    WeakSetAdd(plainErrors, error);
    return error;
  }
  function plainMessage(error) {
    if (!isError(error)) return undefined;
    try {
      if (WeakSetHas(plainErrors, error) || error.code === IMPORT_REFUSED) return StringCtor(error.message);
    } catch { /* a throwing getter: describe it the usual way */ }
    return undefined;
  }

  // ---- Compile and run the job's function ----
  // `source` is the function alone (the worker strips what surrounds it); `strict` when a "use strict" directive
  // preceded it, which then applies to the function as it would have in the script it came from.
  function compile(source, strict) {
    let text = StringCtor(source).trim();
    while (text.endsWith(';')) text = text.slice(0, -1).trimEnd();
    const prologue = strict ? '"use strict";' : '';
    let fn;
    let firstError;
    try {
      fn = nEvalFunction(prologue + '(' + text + '\n)');
    } catch (error) {
      firstError = error;
    }
    if (firstError !== undefined && firstError instanceof SyntaxErrorCtor) {
      // Method shorthand, `execute(job) {…}` or `async execute(job) {…}`, is not an expression on its own.
      try {
        const holder = nEvalFunction(prologue + '({' + text + '\n})');
        const names = ObjectKeys(holder);
        if (names.length === 1 && typeof holder[names[0]] === 'function') {
          fn = holder[names[0]];
          firstError = undefined;
        }
      } catch { /* report the first error */ }
    }
    if (firstError !== undefined) {
      if (!(firstError instanceof SyntaxErrorCtor)) throw firstError;
      return { error: 'code must be a JavaScript function: ' + firstLine(describeError(firstError)) };
    }
    if (typeof fn !== 'function') {
      const what = fn === null ? 'null' : typeof fn;
      return { error: 'code must be a JavaScript function: it evaluates to ' + what + ', not a function' };
    }
    return { fn };
  }

  function settleReturned(value) {
    let text;
    try {
      text = JSONStringify(value);
    } catch (error) {
      nSettle(false, wellFormed('result is not serializable: ' + firstLine(describeError(error))));
      return;
    }
    if (text === undefined) {
      nSettle(true);
    } else if (text.length > maxResultBytes) {
      nSettle(false, 'result exceeds ' + maxResultBytes + ' bytes');
    } else {
      nSettle(true, wellFormedJSON(text));
    }
  }
  function settleThrown(error) {
    const plainText = plainMessage(error);
    let text = plainText !== undefined ? plainText : describeError(error);
    if (text.length > MAX_ERROR_CHARS) text = StringSlice(text, 0, MAX_ERROR_CHARS);
    nSettle(false, wellFormed(text));
  }

  // The job object. Without `data` (the full Job) or `activeVersion` (the version the run runs) in the JSON, each is
  // asked of the host the first time job code reads it (`job.data`, `job.version`), and kept; assigning it replaces
  // it. Few jobs read them, and building them for every run cost more than the run.
  function makeJob(jobJson) {
    const raw = JSONParse(jobJson);
    if (raw === null || typeof raw !== 'object') return raw;
    const job = new JobInstance(raw.id, raw.name, raw.metadata, raw.activeVersion, raw.data);
    if (!ObjectHasOwn(raw, 'activeVersion')) askedOnFirstRead(job, 'activeVersion', 'job.version', raw.id);
    if (!ObjectHasOwn(raw, 'data')) askedOnFirstRead(job, 'data', 'job.data', raw.id);
    if (ObjectHasOwn(raw, 'execution')) job.execution = raw.execution;
    return job;
  }

  // Makes `object[name]` an accessor that asks the host (`method`, {jobId}) when first read and keeps the answer;
  // the property keeps its place among the object's keys.
  function askedOnFirstRead(object, name, method, jobId) {
    const replace = (value) => {
      ObjectDefineProperty(object, name, { value, writable: true, enumerable: true, configurable: true });
    };
    ObjectDefineProperty(object, name, {
      get() {
        const reply = nHostSync(method, JSONStringify({ jobId }));
        if (StringCharCodeAt(reply, 0) !== 111 /* o */) throw new ErrorCtor(StringSlice(reply, 1));
        const value = JSONParse(StringSlice(reply, 1));
        replace(value);
        return value;
      },
      set: replace,
      enumerable: true,
      configurable: true,
    });
  }

  // Sets one run up: answers the function that starts the job. Everything before that call is setup, which the
  // sandbox does ahead of the job's instant.
  return function start(code, jobJson, envJson, options) {
    run.form = options.form;
    run.describing = options.describe === true;
    run.timeOrigin = DateNow();
    run.env = JSONParse(envJson);
    if (run.form !== 'function') {
      // A job file: load it (its top level runs, within the same limits), read its definition, then run `execute` —
      // or, when describing, answer the definition instead.
      const job = run.describing ? null : makeJob(jobJson);
      const { loadJobFile, readDefinition, definitionJSON } = lib();
      return () => {
        const ran = PromiseThen(loadJobFile(code), (exported) => {
          const definition = readDefinition(exported);
          if (run.describing) return definitionJSON(definition.fields);
          return ReflectApply(definition.execute, definition.self, [job]);
        });
        PromiseThen(ran, settleReturned, settleThrown);
      };
    }

    let compiled;
    try {
      compiled = compile(code, options.strict === true);
    } catch (error) {
      return () => settleThrown(error);
    }
    if (compiled.error !== undefined) {
      const message = wellFormed(compiled.error);
      return () => nSettle(false, message);
    }
    let job;
    try {
      job = makeJob(jobJson);
    } catch (error) {
      return () => settleThrown(error);
    }
    const fn = compiled.fn;
    return () => {
      let returned;
      try {
        returned = fn(job);
      } catch (error) {
        settleThrown(error);
        return;
      }
      PromiseThen(PromiseResolve(returned), settleReturned, settleThrown);
    };
  };
}
