// sundial:prelude/console — `console` (with Node-like formatting of what it prints) and the timers
// (`setTimeout`, `setInterval`, `queueMicrotask`, whose callbacks report uncaught errors through the console).
//
// Loaded into the world by the prelude, like the library (see library.js). Its default export takes the prelude's
// kit and answers what it built.
export default function console(kit) {
  const {
    ReflectApply, uncurry, ObjectKeys, ObjectCreate, ArrayIsArray, JSONStringify, NumberIsFinite, NumberCtor,
    StringCtor, MathFloor, MathMin, TypeErrorCtor, PromiseThen, PromiseResolve, StringSlice, StringCharCodeAt,
    DateToISOString, SymbolToString, MapEntries, SetValues, nLog, nSleep, maxLogLineBytes, newList, wellFormed,
    dateTime, NOT_BOXED, unbox, mapSize, setSize, isError, describeError, isURL
  } = kit;

  const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;
  const IdentifierTest = uncurry(RegExp.prototype.test);
  function quote(text) {
    let out = "'";
    for (let i = 0; i < text.length; i++) {
      const c = StringCharCodeAt(text, i);
      if (c === 39) out += "\\'";
      else if (c === 92) out += '\\\\';
      else if (c === 10) out += '\\n';
      else if (c < 32) out += '\\x' + (c < 16 ? '0' : '') + c.toString(16);
      else out += text[i];
      if (out.length > maxLogLineBytes) break;
    }
    return out + "'";
  }
  function key(name) {
    return typeof name === 'string' && IdentifierTest(IDENTIFIER, name) ? name : quote(StringCtor(name));
  }
  function constructorName(value) {
    try {
      let proto = Object.getPrototypeOf(value);
      if (proto === null) return '[Object: null prototype] ';
      const ctor = proto.constructor;
      const name = typeof ctor === 'function' ? ctor.name : '';
      return name === 'Object' || name === '' ? '' : name + ' ';
    } catch {
      return '';
    }
  }
  function inspect(value, depth, seen) {
    switch (typeof value) {
      case 'string':
        return depth === 0 ? value : quote(value);
      case 'number':
        return value === 0 && 1 / value < 0 ? '-0' : StringCtor(value);
      case 'bigint':
        return StringCtor(value) + 'n';
      case 'undefined':
        return 'undefined';
      case 'boolean':
        return value ? 'true' : 'false';
      case 'symbol':
        return SymbolToString(value);
      case 'function': {
        let name = '';
        try { name = value.name; } catch { /* a throwing getter */ }
        return name ? '[Function: ' + name + ']' : '[Function (anonymous)]';
      }
    }
    if (value === null) return 'null';
    if (isError(value)) return describeError(value);
    const time = dateTime(value);
    if (time !== undefined) return NumberIsFinite(time) ? DateToISOString(value) : 'Invalid Date';
    const boxed = unbox(value);
    if (boxed !== NOT_BOXED) return '[' + typeof boxed + ': ' + inspect(boxed, depth + 1, seen) + ']';
    if (isURL(value)) return "URL '" + value.href + "'";
    for (let i = 0; i < seen.length; i++) if (seen[i] === value) return '[Circular]';
    const isArray = ArrayIsArray(value);
    if (depth > 2) return isArray ? '[Array]' : '[Object]';
    seen[seen.length] = value;
    let out;
    const budget = maxLogLineBytes;
    const mSize = mapSize(value);
    const sSize = mSize < 0 ? setSize(value) : -1;
    if (mSize >= 0 || sSize >= 0) {
      const iterator = mSize >= 0 ? MapEntries(value) : SetValues(value);
      out = (mSize >= 0 ? 'Map(' + mSize + ') {' : 'Set(' + sSize + ') {');
      let count = 0;
      for (let step = iterator.next(); !step.done; step = iterator.next()) {
        out += (count === 0 ? ' ' : ', ') + (mSize >= 0
          ? inspect(step.value[0], depth + 1, seen) + ' => ' + inspect(step.value[1], depth + 1, seen)
          : inspect(step.value, depth + 1, seen));
        count++;
        if (out.length > budget) break;
      }
      out += count === 0 ? '}' : ' }';
    } else if (isArray) {
      const length = value.length;
      const shown = MathMin(length, 100);
      out = '[';
      for (let i = 0; i < shown; i++) {
        out += (i === 0 ? ' ' : ', ') + inspect(value[i], depth + 1, seen);
        if (out.length > budget) break;
      }
      if (length > shown) out += ', ... ' + (length - shown) + ' more items';
      out += length === 0 ? ']' : ' ]';
    } else {
      const keys = ObjectKeys(value);
      const shown = MathMin(keys.length, 100);
      out = constructorName(value) + '{';
      for (let i = 0; i < shown; i++) {
        out += (i === 0 ? ' ' : ', ') + key(keys[i]) + ': ' + inspect(value[keys[i]], depth + 1, seen);
        if (out.length > budget) break;
      }
      if (keys.length > shown) out += ', ... ' + (keys.length - shown) + ' more keys';
      out += keys.length === 0 ? '}' : ' }';
    }
    seen.length = seen.length - 1;
    return out;
  }
  function formatArgs(args) {
    let out = '';
    let first = 0;
    if (typeof args[0] === 'string' && args.length > 1) {
      const format = args[0];
      let next = 1;
      out = '';
      for (let i = 0; i < format.length; i++) {
        const c = format[i];
        if (c !== '%' || i + 1 === format.length) {
          out += c;
          continue;
        }
        const spec = format[i + 1];
        if (spec === '%') {
          out += '%';
          i++;
          continue;
        }
        if (next >= args.length || 'sdifjoOc'.indexOf(spec) < 0) {
          out += c;
          continue;
        }
        const arg = args[next++];
        i++;
        if (spec === 's') out += typeof arg === 'string' ? arg : inspect(arg, 1, newList());
        else if (spec === 'd' || spec === 'i') {
          const n = typeof arg === 'bigint' ? arg : NumberCtor(arg);
          out += spec === 'i' && typeof n === 'number' ? StringCtor(MathFloor(n)) : StringCtor(n);
        } else if (spec === 'f') out += StringCtor(NumberCtor(arg));
        else if (spec === 'j') {
          try { out += JSONStringify(arg); } catch { out += '[Circular]'; }
        } else if (spec === 'o' || spec === 'O') out += inspect(arg, 1, newList());
        // %c (CSS) consumes its argument and prints nothing.
        if (out.length > maxLogLineBytes) break;
      }
      first = next;
      for (let i = first; i < args.length; i++) {
        out += ' ' + inspect(args[i], 0, newList());
        if (out.length > maxLogLineBytes) break;
      }
      return out;
    }
    for (let i = first; i < args.length; i++) {
      out += (i === first ? '' : ' ') + inspect(args[i], 0, newList());
      if (out.length > maxLogLineBytes) break;
    }
    return out;
  }
  function emit(level, args) {
    let message = formatArgs(args);
    if (message.length > maxLogLineBytes + 64) message = StringSlice(message, 0, maxLogLineBytes + 64);
    nLog(level, wellFormed(message));
  }
  function reportUncaught(error) {
    nLog('error', wellFormed('Uncaught ' + describeError(error)));
  }
  function runCallback(callback, args) {
    try {
      ReflectApply(callback, undefined, args);
    } catch (error) {
      reportUncaught(error);
    }
  }

  const consoleObject = {
    log: (...args) => emit('log', args),
    info: (...args) => emit('info', args),
    warn: (...args) => emit('warn', args),
    error: (...args) => emit('error', args),
    debug: (...args) => emit('log', args),
    trace: (...args) => emit('log', args),
    dir: (value) => emit('log', [value]),
    table: (value) => emit('log', [value]),
    assert: (condition, ...args) => {
      if (!condition) emit('error', args.length === 0 ? ['Assertion failed'] : ['Assertion failed:', ...args]);
    },
  };

  // ---- Timers (real timers in the worker's event loop) ----
  let nextTimerId = 1;
  const activeTimers = ObjectCreate(null);
  function delayOf(delay) {
    const ms = NumberCtor(delay);
    if (!(ms > 0)) return 0;
    if (ms > 2147483647) return 1;
    return MathFloor(ms);
  }
  function requireCallback(name, callback) {
    if (typeof callback !== 'function') throw new TypeErrorCtor(name + ': the callback must be a function');
  }
  function setTimeout(callback, delay, ...args) {
    requireCallback('setTimeout', callback);
    const id = nextTimerId++;
    activeTimers[id] = true;
    PromiseThen(nSleep(delayOf(delay)), () => {
      if (activeTimers[id] !== true) return;
      delete activeTimers[id];
      runCallback(callback, args);
    });
    return id;
  }
  function setInterval(callback, delay, ...args) {
    requireCallback('setInterval', callback);
    const id = nextTimerId++;
    const ms = delayOf(delay) || 1;
    activeTimers[id] = true;
    const tick = () => {
      if (activeTimers[id] !== true) return;
      runCallback(callback, args);
      if (activeTimers[id] === true) PromiseThen(nSleep(ms), tick);
    };
    PromiseThen(nSleep(ms), tick);
    return id;
  }
  function clearTimer(id) {
    if (typeof id === 'number') delete activeTimers[id];
  }
  function queueMicrotask(callback) {
    requireCallback('queueMicrotask', callback);
    PromiseThen(PromiseResolve(undefined), () => runCallback(callback, []));
  }

  return {
    console: consoleObject,
    setTimeout,
    clearTimeout: clearTimer,
    setInterval,
    clearInterval: clearTimer,
    queueMicrotask,
  };
}
