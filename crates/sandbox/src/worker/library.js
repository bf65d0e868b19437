// sundial:prelude/library — the part of the job's world most runs never touch: crypto, base64,
// TextEncoder/TextDecoder, URL, Data, Products, fetch, performance, structuredClone, and what a job file needs
// (LuaJob, defineJob, the built-in module, require, reading a definition). `console` and the timers are a part of
// their own (console.js).
//
// Loaded into the world by the prelude, before the worker's snapshot. Its default export takes the prelude's kit
// (the intrinsics the prelude captured before any job code ran, its natives, its helpers, and `run`, what differs
// from run to run) and answers what it built. Every intrinsic it uses comes from the kit, so job code that replaces
// a built-in cannot change what the library does with it.
export default function library(kit) {
  const {
    ReflectApply, ObjectKeys, ObjectCreate, ObjectDefineProperty, ObjectFreeze, ObjectHasOwn, ArrayIsArray,
    JSONStringify, JSONParse, NumberCtor, StringCtor, MathMin, ErrorCtor, TypeErrorCtor, RangeErrorCtor,
    PromiseThen, PromiseResolve, PromiseReject, StringSlice, StringCharCodeAt, StringFromCharCode, Uint8ArrayCtor,
    ArrayBufferCtor, ArrayBufferIsView, WeakMapCtor, WeakMapGet, WeakMapSet, RegExpExec, StringTrim,
    StringLowerCase, nNow, nRandom, nEvalModule, nEvalScript, run, IMPORT_REFUSED, newList, isError, plain,
    hostCall, describeError, firstLine, User, Jobs, env, sandboxError
  } = kit;

  // ---- DOMException, crypto, base64, UTF-8 ----
  class DOMException extends ErrorCtor {
    constructor(message = '', name = 'Error') {
      super(message);
      ObjectDefineProperty(this, 'name', { value: StringCtor(name), writable: true, configurable: true });
    }
  }

  const HEX = '0123456789abcdef';
  function randomBytes(count) {
    return new Uint8ArrayCtor(nRandom(count));
  }
  const cryptoObject = {
    randomUUID() {
      const b = randomBytes(16);
      b[6] = (b[6] & 0x0f) | 0x40;
      b[8] = (b[8] & 0x3f) | 0x80;
      let out = '';
      for (let i = 0; i < 16; i++) {
        if (i === 4 || i === 6 || i === 8 || i === 10) out += '-';
        out += HEX[b[i] >> 4] + HEX[b[i] & 15];
      }
      return out;
    },
    getRandomValues(array) {
      if (!ArrayBufferIsView(array) || array instanceof Float32Array || array instanceof Float64Array ||
          array instanceof DataView) {
        throw new TypeErrorCtor('crypto.getRandomValues: expected an integer typed array');
      }
      if (array.byteLength > 65536) {
        throw new DOMException('crypto.getRandomValues: at most 65536 bytes at once', 'QuotaExceededError');
      }
      new Uint8ArrayCtor(array.buffer, array.byteOffset, array.byteLength).set(randomBytes(array.byteLength));
      return array;
    },
  };

  const BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  function btoa(input) {
    if (arguments.length === 0) throw new TypeErrorCtor('btoa: 1 argument required');
    const text = StringCtor(input);
    let out = '';
    for (let i = 0; i < text.length; i += 3) {
      const a = StringCharCodeAt(text, i);
      const b = i + 1 < text.length ? StringCharCodeAt(text, i + 1) : 0;
      const c = i + 2 < text.length ? StringCharCodeAt(text, i + 2) : 0;
      if (a > 255 || b > 255 || c > 255) {
        throw new DOMException('btoa: the string contains characters outside of the Latin1 range', 'InvalidCharacterError');
      }
      const n = (a << 16) | (b << 8) | c;
      out += BASE64[(n >> 18) & 63] + BASE64[(n >> 12) & 63];
      out += i + 1 < text.length ? BASE64[(n >> 6) & 63] : '=';
      out += i + 2 < text.length ? BASE64[n & 63] : '=';
    }
    return out;
  }
  function atob(input) {
    if (arguments.length === 0) throw new TypeErrorCtor('atob: 1 argument required');
    let text = '';
    const raw = StringCtor(input);
    for (let i = 0; i < raw.length; i++) {
      const c = StringCharCodeAt(raw, i);
      if (c !== 9 && c !== 10 && c !== 12 && c !== 13 && c !== 32) text += raw[i];
    }
    if (text.length % 4 === 0 && text.endsWith('==')) text = StringSlice(text, 0, -2);
    else if (text.length % 4 === 0 && text.endsWith('=')) text = StringSlice(text, 0, -1);
    const invalid = () => new DOMException('atob: the string is not correctly encoded', 'InvalidCharacterError');
    if (text.length % 4 === 1) throw invalid();
    let out = '';
    let buffer = 0;
    let bits = 0;
    for (let i = 0; i < text.length; i++) {
      const v = BASE64.indexOf(text[i]);
      if (v < 0) throw invalid();
      buffer = (buffer << 6) | v;
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        out += StringFromCharCode((buffer >> bits) & 255);
      }
    }
    return out;
  }

  function utf8Encode(input) {
    const text = StringCtor(input);
    const out = new Uint8ArrayCtor(text.length * 3);
    let p = 0;
    for (let i = 0; i < text.length; i++) {
      let c = StringCharCodeAt(text, i);
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
        const d = StringCharCodeAt(text, i + 1);
        if (d >= 0xdc00 && d <= 0xdfff) {
          c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
          i++;
        } else {
          c = 0xfffd;
        }
      } else if (c >= 0xd800 && c <= 0xdfff) {
        c = 0xfffd;
      }
      if (c < 0x80) {
        out[p++] = c;
      } else if (c < 0x800) {
        out[p++] = 0xc0 | (c >> 6);
        out[p++] = 0x80 | (c & 63);
      } else if (c < 0x10000) {
        out[p++] = 0xe0 | (c >> 12);
        out[p++] = 0x80 | ((c >> 6) & 63);
        out[p++] = 0x80 | (c & 63);
      } else {
        out[p++] = 0xf0 | (c >> 18);
        out[p++] = 0x80 | ((c >> 12) & 63);
        out[p++] = 0x80 | ((c >> 6) & 63);
        out[p++] = 0x80 | (c & 63);
      }
    }
    return out.slice(0, p);
  }
  function bytesOf(input) {
    if (input === undefined) return new Uint8ArrayCtor(0);
    if (input instanceof ArrayBufferCtor) return new Uint8ArrayCtor(input);
    if (ArrayBufferIsView(input)) return new Uint8ArrayCtor(input.buffer, input.byteOffset, input.byteLength);
    throw new TypeErrorCtor('expected an ArrayBuffer or an ArrayBuffer view');
  }
  function utf8Decode(bytes, fatal, ignoreBOM) {
    let out = '';
    let chunk = [];
    const push = (unit) => {
      chunk[chunk.length] = unit;
      if (chunk.length >= 4096) {
        out += ReflectApply(StringFromCharCode, null, chunk);
        chunk = [];
      }
    };
    const bad = () => {
      if (fatal) throw new TypeErrorCtor('The encoded data was not valid utf-8');
      push(0xfffd);
    };
    const n = bytes.length;
    let i = 0;
    if (!ignoreBOM && n >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) i = 3;
    while (i < n) {
      const b = bytes[i];
      if (b < 0x80) {
        push(b);
        i++;
        continue;
      }
      let need;
      let cp;
      let lower = 0x80;
      let upper = 0xbf;
      if (b >= 0xc2 && b <= 0xdf) {
        need = 1;
        cp = b & 0x1f;
      } else if (b >= 0xe0 && b <= 0xef) {
        need = 2;
        cp = b & 0xf;
        if (b === 0xe0) lower = 0xa0;
        if (b === 0xed) upper = 0x9f;
      } else if (b >= 0xf0 && b <= 0xf4) {
        need = 3;
        cp = b & 7;
        if (b === 0xf0) lower = 0x90;
        if (b === 0xf4) upper = 0x8f;
      } else {
        bad();
        i++;
        continue;
      }
      let j = i + 1;
      let ok = true;
      for (let k = 0; k < need; k++, j++) {
        const c = j < n ? bytes[j] : -1;
        if (c < lower || c > upper) {
          ok = false;
          break;
        }
        lower = 0x80;
        upper = 0xbf;
        cp = (cp << 6) | (c & 0x3f);
      }
      if (!ok) {
        bad();
        i = j;
        continue;
      }
      if (cp >= 0x10000) {
        cp -= 0x10000;
        push(0xd800 + (cp >> 10));
        push(0xdc00 + (cp & 0x3ff));
      } else {
        push(cp);
      }
      i = j;
    }
    if (chunk.length > 0) out += ReflectApply(StringFromCharCode, null, chunk);
    return out;
  }
  function utf8Label(label) {
    const name = StringCtor(label).trim().toLowerCase();
    if (name !== 'utf-8' && name !== 'utf8' && name !== 'unicode-1-1-utf-8') {
      throw new RangeErrorCtor('TextDecoder: only utf-8 is supported, not "' + label + '"');
    }
    return 'utf-8';
  }
  class TextEncoder {
    get encoding() { return 'utf-8'; }
    encode(input = '') { return utf8Encode(input); }
    encodeInto(input, destination) {
      const bytes = utf8Encode(input);
      const written = MathMin(bytes.length, destination.length);
      // Do not split a character across the end of the destination.
      let end = written;
      while (end > 0 && end < bytes.length && (bytes[end] & 0xc0) === 0x80) end--;
      destination.set(bytes.subarray(0, end));
      return { read: utf8Decode(bytes.subarray(0, end), false, true).length, written: end };
    }
  }
  class TextDecoder {
    #fatal;
    #ignoreBOM;
    constructor(label = 'utf-8', options = {}) {
      utf8Label(label);
      this.#fatal = !!(options && options.fatal);
      this.#ignoreBOM = !!(options && options.ignoreBOM);
    }
    get encoding() { return 'utf-8'; }
    get fatal() { return this.#fatal; }
    get ignoreBOM() { return this.#ignoreBOM; }
    decode(input) { return utf8Decode(bytesOf(input), this.#fatal, this.#ignoreBOM); }
  }

  // ---- URL and URLSearchParams (WHATWG-like; IDNA/punycode hosts are kept as given, lowercased) ----
  const SPECIAL_PORTS = { 'ftp:': '21', 'file:': '', 'http:': '80', 'https:': '443', 'ws:': '80', 'wss:': '443' };
  const isSpecial = (scheme) => ObjectHasOwn(SPECIAL_PORTS, scheme);
  function percentEncode(text, shouldEncode) {
    let out = '';
    for (let i = 0; i < text.length; i++) {
      const c = StringCharCodeAt(text, i);
      if (c < 0x80 && !shouldEncode(c)) {
        out += text[i];
        continue;
      }
      let bytes;
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
        bytes = utf8Encode(text[i] + text[i + 1]);
        const d = StringCharCodeAt(text, i + 1);
        if (d >= 0xdc00 && d <= 0xdfff) i++;
        else bytes = utf8Encode(text[i]);
      } else {
        bytes = utf8Encode(text[i]);
      }
      for (let k = 0; k < bytes.length; k++) out += '%' + HEX[bytes[k] >> 4].toUpperCase() + HEX[bytes[k] & 15].toUpperCase();
    }
    return out;
  }
  const c0 = (c) => c < 0x20 || c === 0x7f;
  const fragmentSet = (c) => c0(c) || c === 0x20 || c === 0x22 || c === 0x3c || c === 0x3e || c === 0x60;
  const querySet = (c) => c0(c) || c === 0x20 || c === 0x22 || c === 0x23 || c === 0x3c || c === 0x3e;
  const specialQuerySet = (c) => querySet(c) || c === 0x27;
  const pathSet = (c) => querySet(c) || c === 0x3f || c === 0x60 || c === 0x7b || c === 0x7d;
  const userinfoSet = (c) => pathSet(c) || c === 0x2f || c === 0x3a || c === 0x3b || c === 0x3d || c === 0x40 ||
    (c >= 0x5b && c <= 0x5e) || c === 0x7c;
  const formSet = (c) => !((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) ||
    c === 0x2a || c === 0x2d || c === 0x2e || c === 0x5f);
  const hexValue = (b) => (b >= 0x30 && b <= 0x39 ? b - 0x30 : b >= 0x41 && b <= 0x46 ? b - 0x37
    : b >= 0x61 && b <= 0x66 ? b - 0x57 : -1);
  function percentDecode(text) {
    const bytes = utf8Encode(text);
    const out = new Uint8ArrayCtor(bytes.length);
    let p = 0;
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i];
      if (b === 0x25 && i + 2 < bytes.length && hexValue(bytes[i + 1]) >= 0 && hexValue(bytes[i + 2]) >= 0) {
        out[p++] = hexValue(bytes[i + 1]) * 16 + hexValue(bytes[i + 2]);
        i += 2;
      } else {
        out[p++] = b;
      }
    }
    return utf8Decode(out.subarray(0, p), false, true);
  }
  function invalidURL(input) {
    return new TypeErrorCtor('Invalid URL: ' + StringCtor(input));
  }
  function parseHost(text, special, input) {
    if (text === '') {
      if (special) throw invalidURL(input);
      return '';
    }
    if (text[0] === '[') {
      if (text[text.length - 1] !== ']' || !/^\[[0-9A-Fa-f:.]+\]$/.test(text)) throw invalidURL(input);
      return text.toLowerCase();
    }
    const host = special ? percentDecode(text).toLowerCase() : text;
    if (/[\u0000-\u0020#%/:<>?@[\\\]^|]/.test(host) && special) throw invalidURL(input);
    if (!special && /[\u0000-\u0020#/<>?@[\\\]^|]/.test(host)) throw invalidURL(input);
    return special ? host : percentEncode(host, c0);
  }
  function normalizePath(segments, special) {
    const out = [];
    for (let i = 0; i < segments.length; i++) {
      const segment = segments[i];
      const lower = segment.toLowerCase();
      const last = i === segments.length - 1;
      if (lower === '..' || lower === '.%2e' || lower === '%2e.' || lower === '%2e%2e') {
        if (out.length > 0) out.pop();
        if (last) out.push('');
      } else if (lower === '.' || lower === '%2e') {
        if (last) out.push('');
      } else {
        out.push(percentEncode(segment, pathSet));
      }
    }
    return '/' + out.join('/');
  }
  function splitPath(path, special) {
    return (special ? path.replace(/\\/g, '/') : path).split('/');
  }
  // Splits `rest` (after the authority) into path, query and fragment.
  function splitTail(rest) {
    let fragment = null;
    let query = null;
    const hash = rest.indexOf('#');
    if (hash >= 0) {
      fragment = rest.slice(hash + 1);
      rest = rest.slice(0, hash);
    }
    const question = rest.indexOf('?');
    if (question >= 0) {
      query = rest.slice(question + 1);
      rest = rest.slice(0, question);
    }
    return { path: rest, query, fragment };
  }
  function parseURL(input, base) {
    let text = StringCtor(input).replace(/^[\u0000-\u0020]+|[\u0000-\u0020]+$/g, '').replace(/[\t\n\r]/g, '');
    const record = { scheme: '', username: '', password: '', host: null, port: '', path: '', opaque: false,
      query: null, fragment: null };
    const schemeMatch = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(text);
    let rest;
    let authority = false;
    if (schemeMatch) {
      record.scheme = schemeMatch[1].toLowerCase() + ':';
      rest = text.slice(schemeMatch[0].length);
      const special = isSpecial(record.scheme);
      if (special && base && base.scheme === record.scheme && !/^[/\\]/.test(rest)) {
        return resolveRelative(rest, base, input);
      }
      if (record.scheme === 'file:') {
        // file:///path has an empty host; file://host/path names one.
        if (/^[/\\]{2}/.test(rest)) {
          rest = rest.slice(2);
          authority = true;
        } else {
          record.host = '';
        }
      } else if (special) {
        rest = rest.replace(/^[/\\]*/, '');
        authority = true;
      } else if (rest.startsWith('//')) {
        rest = rest.slice(2);
        authority = true;
      } else if (rest.startsWith('/')) {
        record.host = null;
      } else {
        const tail = splitTail(rest);
        record.opaque = true;
        record.path = percentEncode(tail.path, c0);
        record.query = tail.query === null ? null : percentEncode(tail.query, querySet);
        record.fragment = tail.fragment === null ? null : percentEncode(tail.fragment, fragmentSet);
        return record;
      }
    } else {
      if (!base) throw invalidURL(input);
      return resolveRelative(text, base, input);
    }
    return finishParse(record, rest, authority, input);
  }
  function finishParse(record, rest, authority, input) {
    const special = isSpecial(record.scheme);
    if (authority) {
      const end = rest.search(special ? /[/\\?#]/ : /[/?#]/);
      const auth = end < 0 ? rest : rest.slice(0, end);
      rest = end < 0 ? '' : rest.slice(end);
      let hostPort = auth;
      const at = auth.lastIndexOf('@');
      if (at >= 0) {
        const userinfo = auth.slice(0, at);
        hostPort = auth.slice(at + 1);
        const colon = userinfo.indexOf(':');
        record.username = percentEncode(colon < 0 ? userinfo : userinfo.slice(0, colon), userinfoSet);
        record.password = colon < 0 ? '' : percentEncode(userinfo.slice(colon + 1), userinfoSet);
      }
      const portMatch = /:(\d*)$/.exec(hostPort);
      let hostText = hostPort;
      if (portMatch && !(hostPort[0] === '[' && !hostPort.slice(0, portMatch.index).endsWith(']'))) {
        hostText = hostPort.slice(0, portMatch.index);
        if (portMatch[1] !== '') {
          const port = NumberCtor(portMatch[1]);
          if (port > 65535) throw invalidURL(input);
          record.port = StringCtor(port) === SPECIAL_PORTS[record.scheme] ? '' : StringCtor(port);
        }
      }
      if (record.scheme === 'file:') {
        record.host = hostText === 'localhost' ? '' : parseHost(hostText, false, input);
      } else {
        record.host = parseHost(hostText, special, input);
      }
    }
    const tail = splitTail(rest);
    if (tail.path === '') {
      record.path = special ? '/' : '';
    } else {
      const leadingSlash = tail.path[0] === '/' || (special && tail.path[0] === '\\');
      record.path = normalizePath(splitPath(leadingSlash ? tail.path.slice(1) : tail.path, special), special);
    }
    record.query = tail.query === null ? null : percentEncode(tail.query, special ? specialQuerySet : querySet);
    record.fragment = tail.fragment === null ? null : percentEncode(tail.fragment, fragmentSet);
    return record;
  }
  function resolveRelative(text, base, input) {
    const special = isSpecial(base.scheme);
    const record = { scheme: base.scheme, username: base.username, password: base.password, host: base.host,
      port: base.port, path: base.path, opaque: false, query: base.query, fragment: null };
    if (base.opaque) {
      if (text.startsWith('#')) {
        record.opaque = true;
        record.fragment = percentEncode(text.slice(1), fragmentSet);
        return record;
      }
      throw invalidURL(input);
    }
    if (text.startsWith('//') || (special && /^[/\\]{2}/.test(text))) {
      record.username = '';
      record.password = '';
      record.port = '';
      return finishParse(record, text.slice(2), true, input);
    }
    if (text === '') return record;
    if (text.startsWith('#')) {
      record.fragment = percentEncode(text.slice(1), fragmentSet);
      return record;
    }
    if (text.startsWith('?')) {
      const tail = splitTail(text);
      record.query = percentEncode(tail.query, special ? specialQuerySet : querySet);
      record.fragment = tail.fragment === null ? null : percentEncode(tail.fragment, fragmentSet);
      return record;
    }
    const tail = splitTail(text);
    let segments;
    if (tail.path.startsWith('/') || (special && tail.path.startsWith('\\'))) {
      segments = splitPath(tail.path.slice(1), special);
    } else {
      const baseSegments = base.path.split('/').slice(1);
      baseSegments.pop();
      segments = baseSegments.concat(splitPath(tail.path, special));
    }
    record.path = normalizePath(segments, special);
    record.query = tail.query === null ? null : percentEncode(tail.query, special ? specialQuerySet : querySet);
    record.fragment = tail.fragment === null ? null : percentEncode(tail.fragment, fragmentSet);
    return record;
  }
  function serializeURL(r, withFragment = true) {
    let out = r.scheme;
    if (r.host !== null) {
      out += '//';
      if (r.username !== '' || r.password !== '') {
        out += r.username + (r.password !== '' ? ':' + r.password : '') + '@';
      }
      out += r.host + (r.port !== '' ? ':' + r.port : '');
    }
    out += r.path;
    if (r.query !== null) out += '?' + r.query;
    if (withFragment && r.fragment !== null) out += '#' + r.fragment;
    return out;
  }

  function formEncode(text) {
    return percentEncode(StringCtor(text), formSet).replace(/%20/g, '+');
  }
  function formDecode(text) {
    return percentDecode(text.replace(/\+/g, ' '));
  }
  function parseForm(text) {
    const list = [];
    if (text.startsWith('?')) text = text.slice(1);
    const parts = text.split('&');
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i];
      if (part === '') continue;
      const eq = part.indexOf('=');
      list.push(eq < 0 ? [formDecode(part), ''] : [formDecode(part.slice(0, eq)), formDecode(part.slice(eq + 1))]);
    }
    return list;
  }

  const paramsList = Symbol('list');
  const paramsOwner = Symbol('owner');
  const paramsUpdate = Symbol('update');
  class URLSearchParams {
    constructor(init = '') {
      ObjectDefineProperty(this, paramsList, { value: [], writable: true });
      ObjectDefineProperty(this, paramsOwner, { value: null, writable: true });
      if (init instanceof URLSearchParams) {
        this[paramsList] = init[paramsList].map((pair) => [pair[0], pair[1]]);
      } else if (init !== null && typeof init === 'object' && typeof init[Symbol.iterator] === 'function') {
        for (const pair of init) {
          const items = [...pair];
          if (items.length !== 2) throw new TypeErrorCtor('URLSearchParams: each pair must have two items');
          this[paramsList].push([StringCtor(items[0]), StringCtor(items[1])]);
        }
      } else if (init !== null && typeof init === 'object') {
        const keys = ObjectKeys(init);
        for (let i = 0; i < keys.length; i++) this[paramsList].push([keys[i], StringCtor(init[keys[i]])]);
      } else {
        this[paramsList] = parseForm(StringCtor(init));
      }
    }
    [paramsUpdate]() {
      const owner = this[paramsOwner];
      if (owner !== null) {
        const text = this.toString();
        owner.query = text === '' ? null : text;
      }
    }
    get size() { return this[paramsList].length; }
    append(name, value) {
      this[paramsList].push([StringCtor(name), StringCtor(value)]);
      this[paramsUpdate]();
    }
    delete(name, value) {
      name = StringCtor(name);
      this[paramsList] = this[paramsList].filter((pair) => !(pair[0] === name &&
        (value === undefined || pair[1] === StringCtor(value))));
      this[paramsUpdate]();
    }
    get(name) {
      name = StringCtor(name);
      const pair = this[paramsList].find((p) => p[0] === name);
      return pair === undefined ? null : pair[1];
    }
    getAll(name) {
      name = StringCtor(name);
      return this[paramsList].filter((p) => p[0] === name).map((p) => p[1]);
    }
    has(name, value) {
      name = StringCtor(name);
      return this[paramsList].some((p) => p[0] === name && (value === undefined || p[1] === StringCtor(value)));
    }
    set(name, value) {
      name = StringCtor(name);
      value = StringCtor(value);
      const list = this[paramsList];
      const index = list.findIndex((p) => p[0] === name);
      if (index < 0) {
        list.push([name, value]);
      } else {
        list[index][1] = value;
        this[paramsList] = list.filter((p, i) => i <= index || p[0] !== name);
      }
      this[paramsUpdate]();
    }
    sort() {
      const list = this[paramsList].map((pair, index) => [pair, index]);
      list.sort((a, b) => (a[0][0] < b[0][0] ? -1 : a[0][0] > b[0][0] ? 1 : a[1] - b[1]));
      this[paramsList] = list.map((entry) => entry[0]);
      this[paramsUpdate]();
    }
    forEach(callback, thisArg) {
      const list = this[paramsList];
      for (let i = 0; i < list.length; i++) ReflectApply(callback, thisArg, [list[i][1], list[i][0], this]);
    }
    *keys() { for (const pair of this[paramsList]) yield pair[0]; }
    *values() { for (const pair of this[paramsList]) yield pair[1]; }
    *entries() { for (const pair of this[paramsList]) yield [pair[0], pair[1]]; }
    [Symbol.iterator]() { return this.entries(); }
    toString() {
      return this[paramsList].map((pair) => formEncode(pair[0]) + '=' + formEncode(pair[1])).join('&');
    }
  }

  const urlRecord = Symbol('record');
  const urlParams = Symbol('params');
  class URL {
    constructor(url, base) {
      let baseRecord = null;
      if (base !== undefined) baseRecord = parseURL(base instanceof URL ? base.href : base, null);
      const record = parseURL(url instanceof URL ? url.href : url, baseRecord);
      ObjectDefineProperty(this, urlRecord, { value: record, writable: true });
      const params = new URLSearchParams(record.query === null ? '' : record.query);
      params[paramsOwner] = record;
      ObjectDefineProperty(this, urlParams, { value: params, writable: true });
    }
    static canParse(url, base) {
      try {
        new URL(url, base);
        return true;
      } catch {
        return false;
      }
    }
    static parse(url, base) {
      try {
        return new URL(url, base);
      } catch {
        return null;
      }
    }
    #reparse(href) {
      const record = parseURL(href, null);
      this[urlRecord] = record;
      const params = this[urlParams];
      params[paramsList] = parseForm(record.query === null ? '' : record.query);
      params[paramsOwner] = record;
    }
    get href() { return serializeURL(this[urlRecord]); }
    set href(value) { this.#reparse(StringCtor(value)); }
    get origin() {
      const r = this[urlRecord];
      if (isSpecial(r.scheme) && r.scheme !== 'file:') return r.scheme + '//' + r.host + (r.port !== '' ? ':' + r.port : '');
      return 'null';
    }
    get protocol() { return this[urlRecord].scheme; }
    set protocol(value) {
      const scheme = StringCtor(value).replace(/:.*$/, '').toLowerCase() + ':';
      const r = this[urlRecord];
      if (!/^[a-z][a-z0-9+.-]*:$/.test(scheme) || isSpecial(scheme) !== isSpecial(r.scheme)) return;
      r.scheme = scheme;
      if (r.port === SPECIAL_PORTS[scheme]) r.port = '';
    }
    get username() { return this[urlRecord].username; }
    set username(value) {
      if (this[urlRecord].host) this[urlRecord].username = percentEncode(StringCtor(value), userinfoSet);
    }
    get password() { return this[urlRecord].password; }
    set password(value) {
      if (this[urlRecord].host) this[urlRecord].password = percentEncode(StringCtor(value), userinfoSet);
    }
    get host() {
      const r = this[urlRecord];
      return r.host === null ? '' : r.host + (r.port !== '' ? ':' + r.port : '');
    }
    set host(value) {
      const r = this[urlRecord];
      if (r.opaque) return;
      try {
        const parsed = parseURL(r.scheme + '//' + StringCtor(value), null);
        r.host = parsed.host;
        r.port = parsed.port;
      } catch { /* an invalid host leaves the URL as it was */ }
    }
    get hostname() { return this[urlRecord].host === null ? '' : this[urlRecord].host; }
    set hostname(value) {
      const r = this[urlRecord];
      if (r.opaque) return;
      try {
        r.host = parseURL(r.scheme + '//' + StringCtor(value).replace(/:.*$/, ''), null).host;
      } catch { /* unchanged */ }
    }
    get port() { return this[urlRecord].port; }
    set port(value) {
      const r = this[urlRecord];
      const text = StringCtor(value);
      if (text === '') {
        r.port = '';
        return;
      }
      const match = /^\d+/.exec(text);
      if (!match || NumberCtor(match[0]) > 65535) return;
      const port = StringCtor(NumberCtor(match[0]));
      r.port = port === SPECIAL_PORTS[r.scheme] ? '' : port;
    }
    get pathname() { return this[urlRecord].path; }
    set pathname(value) {
      const r = this[urlRecord];
      if (r.opaque) return;
      const special = isSpecial(r.scheme);
      const text = StringCtor(value);
      r.path = normalizePath(splitPath(text.replace(special ? /^[/\\]/ : /^\//, ''), special), special);
    }
    get search() {
      const q = this[urlRecord].query;
      return q === null || q === '' ? '' : '?' + q;
    }
    set search(value) {
      const r = this[urlRecord];
      let text = StringCtor(value);
      if (text.startsWith('?')) text = text.slice(1);
      r.query = text === '' ? null : percentEncode(text, isSpecial(r.scheme) ? specialQuerySet : querySet);
      this[urlParams][paramsList] = parseForm(text);
    }
    get searchParams() { return this[urlParams]; }
    get hash() {
      const f = this[urlRecord].fragment;
      return f === null || f === '' ? '' : '#' + f;
    }
    set hash(value) {
      let text = StringCtor(value);
      if (text.startsWith('#')) text = text.slice(1);
      this[urlRecord].fragment = text === '' ? null : percentEncode(text, fragmentSet);
    }
    toString() { return this.href; }
    toJSON() { return this.href; }
  }
  const URLImpl = URL;

  // A list answer becomes an array that also answers `.data` (the same array), so both the seed's
  // `tickets.data[0]` and lua-cli's `tickets[0]` work. `{data: [...], ...}` answers are unwrapped the same way, their
  // other fields (pagination) kept as non-enumerable properties.
  function listResult(answer) {
    let list = answer;
    if (!ArrayIsArray(list)) {
      if (answer === null || typeof answer !== 'object' || !ArrayIsArray(answer.data)) return answer;
      list = answer.data;
      const keys = ObjectKeys(answer);
      for (let i = 0; i < keys.length; i++) {
        if (keys[i] !== 'data' && keys[i] !== 'length' && !ObjectHasOwn(list, keys[i])) {
          ObjectDefineProperty(list, keys[i], { value: answer[keys[i]], writable: true, configurable: true });
        }
      }
    }
    ObjectDefineProperty(list, 'data', { value: list, writable: true, configurable: true });
    return list;
  }
  const LIST_METHODS = ['Data.get', 'Data.search', 'Products.get', 'Products.search'];
  function forwarder(prefix, names) {
    const target = {};
    for (let i = 0; i < names.length; i++) {
      const method = prefix + '.' + names[i];
      const shapesList = LIST_METHODS.indexOf(method) >= 0;
      target[names[i]] = (...args) => {
        while (args.length > 0 && args[args.length - 1] === undefined) args.length--;
        const answer = hostCall(method, { args });
        return shapesList ? PromiseThen(answer, listResult) : answer;
      };
    }
    return target;
  }
  const Data = forwarder('Data', ['create', 'get', 'getEntry', 'update', 'search', 'delete']);
  const Products = forwarder('Products', ['get', 'getById', 'create', 'update', 'delete', 'search']);
  // `fetch` as on the web: the server makes the request (allow-list, public addresses only) and answers
  // {url, status, statusText, headers: [[name, value]…], body, redirected}; job code gets a Response-like object.
  class Headers {
    #list;
    constructor(pairs) {
      this.#list = newList();
      if (ArrayIsArray(pairs)) {
        for (let i = 0; i < pairs.length; i++) {
          this.#list[this.#list.length] = [StringLowerCase(StringCtor(pairs[i][0])), StringCtor(pairs[i][1])];
        }
      }
    }
    get(name) {
      const key = StringLowerCase(StringCtor(name));
      let found = null;
      for (let i = 0; i < this.#list.length; i++) {
        if (this.#list[i][0] === key) found = found === null ? this.#list[i][1] : found + ', ' + this.#list[i][1];
      }
      return found;
    }
    has(name) { return this.get(name) !== null; }
    forEach(callback) {
      for (let i = 0; i < this.#list.length; i++) callback(this.#list[i][1], this.#list[i][0], this);
    }
    *entries() { for (let i = 0; i < this.#list.length; i++) yield [this.#list[i][0], this.#list[i][1]]; }
    *keys() { for (let i = 0; i < this.#list.length; i++) yield this.#list[i][0]; }
    *values() { for (let i = 0; i < this.#list.length; i++) yield this.#list[i][1]; }
    [Symbol.iterator]() { return this.entries(); }
  }
  class Response {
    #body;
    #used = false;
    constructor(answer) {
      this.#body = StringCtor(answer.body === undefined || answer.body === null ? '' : answer.body);
      this.status = NumberCtor(answer.status);
      this.statusText = StringCtor(answer.statusText || '');
      this.ok = this.status >= 200 && this.status < 300;
      this.url = StringCtor(answer.url || '');
      this.redirected = answer.redirected === true;
      this.headers = new Headers(answer.headers);
    }
    get bodyUsed() { return this.#used; }
    #take() {
      if (this.#used) return PromiseReject(new TypeErrorCtor('fetch: the response body was already read'));
      this.#used = true;
      return PromiseResolve(this.#body);
    }
    text() { return this.#take(); }
    json() { return PromiseThen(this.#take(), (text) => JSONParse(text)); }
    arrayBuffer() { return PromiseThen(this.#take(), (text) => new TextEncoder().encode(text).buffer); }
  }
  const fetch = (...args) => {
    while (args.length > 0 && args[args.length - 1] === undefined) args.length--;
    if (args.length > 0 && typeof args[0] === 'object' && args[0] !== null && typeof args[0].href === 'string') {
      args[0] = args[0].href;
    }
    const init = args[1];
    if (init !== null && typeof init === 'object' && init.headers instanceof Headers) {
      const pairs = newList();
      init.headers.forEach((value, name) => { pairs[pairs.length] = [name, value]; });
      args[1] = { ...init, headers: pairs };
    }
    return PromiseThen(hostCall('fetch', { args }), (answer) => new Response(answer));
  };

  const performanceObject = {
    now: () => nNow(),
    get timeOrigin() { return run.timeOrigin; },
    toJSON() { return { timeOrigin: run.timeOrigin }; },
  };
  function structuredClone(value) {
    if (value === undefined) return undefined;
    const text = JSONStringify(value);
    return text === undefined ? undefined : JSONParse(text);
  }

  // ---- Pre-defined jobs: lua-cli's LuaJob and defineJob, the built-in module, require ----
  // A LuaJob keeps a copy of its configuration (as lua-cli's private fields do); validation happens when the sandbox
  // reads the definition, so every form of job file fails with the same messages.
  const luaJobConfigs = new WeakMapCtor();
  function luaJobConfig(self) {
    const config = WeakMapGet(luaJobConfigs, self);
    if (config === undefined) throw new TypeErrorCtor('LuaJob: not a LuaJob');
    return config;
  }
  class LuaJob {
    constructor(config) {
      if (config === null || typeof config !== 'object') {
        throw new TypeErrorCtor('LuaJob: the configuration must be an object');
      }
      WeakMapSet(luaJobConfigs, this, {
        name: config.name,
        description: config.description,
        schedule: config.schedule,
        timeout: config.timeout,
        retry: config.retry,
        metadata: config.metadata,
        execute: config.execute,
      });
    }
    getName() { return luaJobConfig(this).name; }
    getDescription() { return luaJobConfig(this).description; }
    getSchedule() { return luaJobConfig(this).schedule; }
    getTimeout() { return luaJobConfig(this).timeout; }
    getRetry() { return luaJobConfig(this).retry; }
    getMetadata() { return luaJobConfig(this).metadata; }
    execute(job) {
      const execute = luaJobConfig(this).execute;
      if (typeof execute !== 'function') throw new TypeErrorCtor('LuaJob: execute is not a function');
      return ReflectApply(execute, this, [job]);
    }
  }
  const LuaJobExecute = LuaJob.prototype.execute;
  function defineJob(config) {
    return config;
  }
  const jobLibrary = ObjectFreeze({ LuaJob, defineJob, User, Data, Products, Jobs, env, fetch });

  function refusedImport(message) {
    const error = new ErrorCtor(message);
    error.code = IMPORT_REFUSED;
    return error;
  }
  function requireBuiltin(name) {
    const specifier = StringCtor(name);
    if (specifier === 'lua-cli' || specifier === 'lua-cli/skill' || specifier === 'sundial' || specifier === '@sundial/jobs') {
      return jobLibrary;
    }
    throw refusedImport('require of ' + JSONStringify(specifier) + ' is not available in jobs');
  }
  // A parse error's stack is its position alone: `    at job.js:3:5`.
  const PARSE_POSITION = /^\s*at job\.js:(\d+):(\d+)\s*$/;
  function compileError(error, firstLineShift) {
    if (!isError(error) || error.name !== 'SyntaxError' || typeof error.stack !== 'string') return error;
    const position = RegExpExec(PARSE_POSITION, firstLine(StringSlice(error.stack, 0, 200)));
    if (position === null) return error;
    const line = NumberCtor(position[1]);
    let column = NumberCtor(position[2]);
    if (line === 1) column = column > firstLineShift ? column - firstLineShift : 1;
    return sandboxError('SyntaxError: ' + StringCtor(error.message) + ' (line ' + line + ', column ' + column + ')');
  }

  const CJS_PREFIX = '(function (exports, require, module, __filename, __dirname) {';
  // Evaluates the job file; resolves with what it exports as its job definition.
  function loadJobFile(source) {
    if (run.form === 'esm') {
      let loaded;
      try {
        loaded = nEvalModule(source);
      } catch (error) {
        return PromiseReject(compileError(error, 0));
      }
      const namespace = loaded.namespace;
      return PromiseThen(loaded.evaluated, () => {
        if (!ObjectHasOwn(namespace, 'default')) {
          throw sandboxError('the module has no default export (expected export default {name, schedule, execute})');
        }
        return namespace.default;
      });
    }
    // CommonJS, as esbuild writes it: `module.exports.default = …` (lua-cli's artifact) or `module.exports = …`.
    let text = StringCtor(source);
    if (StringSlice(text, 0, 2) === '#!') text = '//' + text;
    let wrapper;
    try {
      wrapper = nEvalScript(CJS_PREFIX + text + '\n})');
    } catch (error) {
      return PromiseReject(compileError(error, CJS_PREFIX.length));
    }
    const module = { exports: {} };
    try {
      ReflectApply(wrapper, module.exports, [module.exports, requireBuiltin, module, '/index.js', '/']);
      const exported = module.exports;
      const isObject = exported !== null && (typeof exported === 'object' || typeof exported === 'function');
      return PromiseResolve(isObject && exported.default !== undefined ? exported.default : exported);
    } catch (error) {
      return PromiseReject(error);
    }
  }

  const NOT_A_DEFINITION = 'the default export is not a job definition (expected {name, schedule, execute})';
  function isObjectLike(value) {
    return value !== null && (typeof value === 'object' || typeof value === 'function');
  }
  function getter(target, name) {
    const read = target[name];
    return typeof read === 'function' ? ReflectApply(read, target, []) : undefined;
  }
  // Reads the definition once: `{fields, execute, self}`, `execute` to be called with `this` = `self`. Accepts a plain
  // object (or defineJob's), a LuaJob (or anything with lua-cli's getters), and lua-cli's compiled artifact
  // `{__lua_primitive__, primitive}`.
  function readDefinition(exported) {
    let value = exported;
    if (isObjectLike(value) && isObjectLike(value.__lua_primitive__)) {
      const kind = value.__lua_primitive__.kind;
      if (kind !== undefined && kind !== 'job') {
        throw sandboxError('the module is a lua-cli ' + StringCtor(kind) + ', not a job');
      }
      value = value.primitive;
    }
    const luaJob = isObjectLike(value) ? WeakMapGet(luaJobConfigs, value) : undefined;
    // A function (its own `execute`, or a class) is not a definition, whatever its `name`.
    if (!isObjectLike(value) || (typeof value === 'function' && luaJob === undefined)) {
      throw sandboxError(NOT_A_DEFINITION);
    }
    const fields = ObjectCreate(null);
    let execute;
    if (luaJob !== undefined || typeof value.getName === 'function') {
      fields.name = getter(value, 'getName');
      fields.description = getter(value, 'getDescription');
      fields.schedule = getter(value, 'getSchedule');
      fields.timeout = getter(value, 'getTimeout');
      fields.retry = getter(value, 'getRetry');
      fields.metadata = getter(value, 'getMetadata');
      execute = value.execute;
      if (execute === LuaJobExecute && luaJob !== undefined && typeof luaJob.execute !== 'function') {
        execute = luaJob.execute;
      }
    } else {
      fields.name = value.name;
      fields.description = value.description;
      fields.schedule = value.schedule;
      fields.timeout = value.timeout;
      fields.retry = value.retry;
      fields.metadata = value.metadata;
      execute = value.execute;
      if (fields.name === undefined && fields.schedule === undefined && execute === undefined) {
        throw sandboxError(NOT_A_DEFINITION);
      }
    }
    if (typeof fields.name !== 'string' || StringTrim(fields.name) === '') {
      throw sandboxError("the job's name is missing or empty");
    }
    const schedule = fields.schedule;
    if (schedule === null || typeof schedule !== 'object' || ArrayIsArray(schedule)) {
      throw sandboxError("the job's schedule is missing or not an object " +
        "(expected {type: 'cron' | 'once' | 'interval', …})");
    }
    if (typeof execute !== 'function') throw sandboxError("the job's execute is not a function");
    return { fields, execute, self: value };
  }
  // The definition without `execute`, as JSON values (Dates as ISO strings); missing optional fields are left out.
  const DEFINITION_FIELDS = ['name', 'description', 'schedule', 'timeout', 'retry', 'metadata'];
  function definitionJSON(fields) {
    const out = ObjectCreate(null);
    for (let i = 0; i < DEFINITION_FIELDS.length; i++) {
      const name = DEFINITION_FIELDS[i];
      let value;
      try {
        value = plain(fields[name], newList());
      } catch (error) {
        throw sandboxError("the job's " + name + ' cannot be read as JSON: ' + firstLine(describeError(error)));
      }
      if (value !== undefined) out[name] = value;
    }
    return out;
  }

  return {
    crypto: cryptoObject,
    URL,
    URLSearchParams,
    TextEncoder,
    TextDecoder,
    DOMException,
    atob,
    btoa,
    structuredClone,
    performance: performanceObject,
    Data,
    Products,
    fetch,
    Headers,
    Response,
    jobLibrary,
    loadJobFile,
    readDefinition,
    definitionJSON,
  };
}
